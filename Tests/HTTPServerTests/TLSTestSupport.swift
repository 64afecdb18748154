import COpenSSL
import Foundation
import HTTPServer
import XCTest

/// Certificates for the TLS tests, made once per test process by `openssl req` (and signed by `openssl
/// x509`): a CA, server certificates for 127.0.0.1 and localhost ("server", "server2" for reloads), a client
/// certificate from the CA and one ("stranger") from another CA.
enum TestCertificates {
    static let directory: String = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("server-tests-pki-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func openssl(_ arguments: [String]) {
            let result = try! runTool("openssl", arguments)
            precondition(result.status == 0, "openssl \(arguments): \(result.errors)")
        }
        let newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for (ca, subject) in [("ca", "/CN=Test CA"), ("other_ca", "/CN=Another CA")] {
            openssl(["req", "-x509"] + newKey + ["-days", "2", "-subj", subject, "-keyout", "\(directory)/\(ca).key", "-out", "\(directory)/\(ca).pem"])
        }
        let san = "\(directory)/san.ext"
        try! "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: san, atomically: true, encoding: .utf8)
        for (name, subject, ca, extensions) in [("server", "/CN=first", "ca", san), ("server2", "/CN=reloaded", "ca", san),
                                                ("client", "/O=Radiology/CN=pacs-gateway", "ca", nil),
                                                ("stranger", "/CN=stranger", "other_ca", nil)] {
            openssl(["req", "-new"] + newKey + ["-subj", subject, "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).csr"])
            openssl(["x509", "-req", "-in", "\(directory)/\(name).csr", "-CA", "\(directory)/\(ca).pem", "-CAkey", "\(directory)/\(ca).key",
                     "-CAcreateserial", "-days", "2", "-out", "\(directory)/\(name).pem"] + (extensions.map { ["-extfile", $0] } ?? []))
        }
        return directory
    }()

    static func path(_ file: String) -> String { "\(directory)/\(file)" }

    static func server(_ name: String = "server") -> TLSConfiguration {
        TLSConfiguration(certificateChainFile: path("\(name).pem"), privateKeyFile: path("\(name).key"))
    }
}

/// What a test's TLS client offers and presents.
struct TLSClientOptions {
    var certificate: String?
    var alpn = ["http/1.1"]
    /// nil: OpenSSL's defaults (TLS 1.2 and 1.3 here).
    var versions: (minimum: Int32, maximum: Int32)?
}

/// A blocking TLS client session over a connected socket; the handshake is done in `init`.
final class TLSClientSession {
    private let context: OpaquePointer
    private let ssl: OpaquePointer

    init(descriptor: Int32, options: TLSClientOptions) throws {
        context = SSL_CTX_new(TLS_client_method())!
        SSL_CTX_load_verify_file(context, TestCertificates.path("ca.pem"))
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        if let (minimum, maximum) = options.versions {
            // Old versions need the lowest security level to be offered at all.
            SSL_CTX_set_cipher_list(context, "DEFAULT:@SECLEVEL=0")
            _ = CSSL_CTX_set_protocol_range(context, minimum, maximum)
        }
        ssl = SSL_new(context)!
        if let certificate = options.certificate {
            SSL_use_certificate_chain_file(ssl, TestCertificates.path("\(certificate).pem"))
            SSL_use_PrivateKey_file(ssl, TestCertificates.path("\(certificate).key"), SSL_FILETYPE_PEM)
        }
        let alpn = options.alpn.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        if !alpn.isEmpty { SSL_set_alpn_protos(ssl, alpn, UInt32(alpn.count)) }
        SSL_set_fd(ssl, descriptor)
        ERR_clear_error()
        guard SSL_connect(ssl) == 1 else {
            throw ClientError(description: "TLS handshake failed: \(Self.errors())")
        }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
    }

    private static func errors() -> String {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            reasons.append(ERR_reason_error_string(code).map { String(cString: $0) } ?? "\(code)")
        }
        return reasons.joined(separator: "; ")
    }

    var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    var applicationProtocol: String? {
        var name: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &name, &length)
        return name.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(length)), as: UTF8.self) }
    }

    var serverCommonName: String? {
        guard let certificate = SSL_get0_peer_certificate(ssl) else { return nil }
        var buffer = [CChar](repeating: 0, count: 256)
        X509_NAME_oneline(X509_get_subject_name(certificate), &buffer, Int32(buffer.count))
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.components(separatedBy: "CN=").last
    }

    func send(_ bytes: UnsafeRawBufferPointer) -> Int {
        ERR_clear_error()
        return Int(SSL_write(ssl, bytes.baseAddress, Int32(bytes.count)))
    }

    /// Bytes read; 0 at the end of the stream (close_notify or a closed socket); -1 on an error or the receive timeout.
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        ERR_clear_error()
        let count = SSL_read(ssl, buffer.baseAddress, Int32(buffer.count))
        if count > 0 { return Int(count) }
        switch SSL_get_error(ssl, count) {
        case SSL_ERROR_ZERO_RETURN: return 0
        case SSL_ERROR_SYSCALL where errno == 0 || errno == ECONNRESET: return 0
        default: return -1
        }
    }
}
