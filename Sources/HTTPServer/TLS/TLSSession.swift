import COpenSSL
import Glibc

/// One connection's TLS state: an SSL object reading and writing the connection's non-blocking socket.
/// OpenSSL's "want read" and "want write" come out as the readiness the caller must wait for, which need
/// not match the call: a read may need the socket writable and a write may need it readable.
/// Used only on its connection's queue.
final class TLSSession {
    /// Keeps the SSL_CTX (and the handshake's settings) alive as long as the session, across reloads.
    private let context: TLSContext
    private let ssl: OpaquePointer
    /// No close_notify may be sent after a fatal error, nor twice.
    private var canSendCloseNotify = false
    /// The verified client certificate's subject (RFC 2253), once the handshake is done.
    private(set) var clientSubject: String?

    init?(context: TLSContext, descriptor: Int32) {
        guard let ssl = SSL_new(context.context) else { return nil }
        self.context = context
        self.ssl = ssl
        guard SSL_set_fd(ssl, descriptor) == 1 else { return nil }
        SSL_set_accept_state(ssl)
    }

    deinit { SSL_free(ssl) }

    enum HandshakeResult {
        case completed
        case wouldBlock(Readiness)
        case failed(reason: String, peerClosed: Bool)
    }

    /// Takes the handshake as far as the socket allows.
    func handshake() -> HandshakeResult {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            canSendCloseNotify = true
            clientSubject = verifiedClientSubject()
            return .completed
        }
        let error = SSL_get_error(ssl, result)
        switch error {
        case SSL_ERROR_WANT_READ: return .wouldBlock(.readable)
        case SSL_ERROR_WANT_WRITE: return .wouldBlock(.writable)
        case SSL_ERROR_SYSCALL where errno == 0, SSL_ERROR_ZERO_RETURN:
            return .failed(reason: "the client closed the connection", peerClosed: true)
        case SSL_ERROR_SYSCALL:
            let reason = String(cString: strerror(errno))
            ERR_clear_error()
            return .failed(reason: reason, peerClosed: true)
        default:
            var reason = TLSContext.openSSLErrors()
            let verification = SSL_get_verify_result(ssl)
            if verification != X509_V_OK, let text = X509_verify_cert_error_string(verification) {
                reason += " (client certificate: \(String(cString: text)))"
            }
            return .failed(reason: reason, peerClosed: false)
        }
    }

    var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    var cipher: String { SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "" }

    /// The ALPN protocol chosen, nil when the client offered none.
    var applicationProtocol: ApplicationProtocol? {
        var name: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &name, &length)
        guard let name, length > 0 else { return nil }
        return ApplicationProtocol(rawValue: String(decoding: UnsafeBufferPointer(start: name, count: Int(length)), as: UTF8.self))
    }

    private func verifiedClientSubject() -> String? {
        guard SSL_get_verify_result(ssl) == X509_V_OK, let certificate = SSL_get0_peer_certificate(ssl),
              let name = X509_get_subject_name(certificate) else { return nil }
        var buffer = [CChar](repeating: 0, count: 1024)
        guard CX509_NAME_rfc2253(name, &buffer, Int32(buffer.count)) >= 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Decrypted input, or what to wait for.
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> TransportResult {
        ERR_clear_error()
        return outcome(SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count)))
    }

    /// Whether decrypted input waits, without taking it: `.transferred` when it does.
    func peek() -> TransportResult {
        ERR_clear_error()
        var byte: UInt8 = 0
        return outcome(SSL_peek(ssl, &byte, 1))
    }

    func send(_ bytes: UnsafeRawBufferPointer) -> TransportResult {
        ERR_clear_error()
        return outcome(SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count)))
    }

    /// Decrypted input OpenSSL holds (the rest of a record a peek or a short read left): the socket will
    /// not signal it. Not SSL_has_pending, which also counts a record's first bytes still waiting for the
    /// rest, and would have the connection spin on a slow peer.
    var hasBufferedInput: Bool { SSL_pending(ssl) > 0 }

    /// Best effort: the close_notify alert, if the socket takes it now.
    func sendCloseNotify() {
        guard canSendCloseNotify else { return }
        canSendCloseNotify = false
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    private func outcome(_ result: Int32) -> TransportResult {
        if result > 0 { return .transferred(Int(result)) }
        let error = SSL_get_error(ssl, result)
        switch error {
        case SSL_ERROR_WANT_READ: return .wouldBlock(.readable)
        case SSL_ERROR_WANT_WRITE: return .wouldBlock(.writable)
        case SSL_ERROR_ZERO_RETURN: return .endOfStream
        default:
            canSendCloseNotify = false
            ERR_clear_error()
            return .failed
        }
    }
}
