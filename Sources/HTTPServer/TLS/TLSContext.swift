import COpenSSL
import Glibc

/// The application protocols the server speaks, by their ALPN names.
public enum ApplicationProtocol: String, Sendable, CaseIterable {
    case h2
    case http1_1 = "http/1.1"
}

/// One SSL_CTX made from a `TLSConfiguration`: certificate chain, key, protocols, ciphers, ALPN and client
/// verification. Not changed once made, so connections on any queue make their sessions from it; a reload
/// makes a new one, and each session keeps (retains) the one it was made from.
final class TLSContext: @unchecked Sendable {
    /// Mozilla's "intermediate" TLS 1.2 ciphers (server-side guideline 5.7): forward secret AEADs only.
    /// TLS 1.3's suites are OpenSSL's defaults, which are that profile's (AES-GCM, ChaCha20-Poly1305).
    static let tls12Ciphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")
    /// Key exchange groups of the same profile.
    static let groups = "X25519:prime256v1:secp384r1"

    let context: OpaquePointer
    let configuration: TLSConfiguration
    /// What ALPN selects from, in the server's order of preference.
    let applicationProtocols: [ApplicationProtocol]

    init(_ configuration: TLSConfiguration, applicationProtocols: [ApplicationProtocol]) throws(TLSConfigurationError) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else {
            throw TLSConfigurationError(source: .library, reason: "SSL_CTX_new: \(Self.openSSLErrors())")
        }
        self.context = context
        self.configuration = configuration
        self.applicationProtocols = applicationProtocols
        // From here on, a throw frees the context in deinit.
        func require(_ succeeded: Bool, _ source: TLSConfigurationError.Source, _ what: String) throws(TLSConfigurationError) {
            if !succeeded { throw TLSConfigurationError(source: source, reason: "\(what): \(Self.openSSLErrors())") }
        }
        try require(CSSL_CTX_set_protocol_range(context, TLS1_2_VERSION, TLS1_3_VERSION) == 1, .library, "TLS 1.2–1.3")
        try require(SSL_CTX_set_cipher_list(context, Self.tls12Ciphers) == 1, .library, "the TLS 1.2 cipher list")
        try require(CSSL_CTX_set_groups(context, Self.groups) == 1, .library, "the key exchange groups")
        try require(CSSL_CTX_set_dh_auto(context) == 1, .library, "DHE parameters")
        CSSL_CTX_set_server_options(context)
        CSSL_CTX_set_modes(context)

        let certificate = configuration.certificateChainFile
        try Self.requireReadable(certificate, .certificateChain)
        try require(SSL_CTX_use_certificate_chain_file(context, certificate) == 1, .certificateChain,
                    "\(certificate) is not a PEM certificate chain")
        let key = configuration.privateKeyFile
        try Self.requireReadable(key, .privateKey)
        try require(SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1, .privateKey,
                    "\(key) is not an unencrypted PEM private key")
        try require(SSL_CTX_check_private_key(context) == 1, .privateKey, "\(key) does not match the certificate in \(certificate)")

        if configuration.clientAuthentication != .none {
            guard let caFile = configuration.clientCAFile, !caFile.isEmpty else {
                throw TLSConfigurationError(source: .clientCA, reason:
                    "client authentication '\(configuration.clientAuthentication.rawValue)' needs a CA file to verify client certificates")
            }
            try Self.requireReadable(caFile, .clientCA)
            try require(SSL_CTX_load_verify_file(context, caFile) == 1, .clientCA, "\(caFile) is not a PEM CA bundle")
            // The CA names go to the client in the CertificateRequest, so that it picks a certificate they signed.
            guard let names = SSL_load_client_CA_file(caFile) else {
                throw TLSConfigurationError(source: .clientCA, reason: "\(caFile) holds no CA certificate: \(Self.openSSLErrors())")
            }
            SSL_CTX_set_client_CA_list(context, names)
            let mode = configuration.clientAuthentication == .required ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER
            SSL_CTX_set_verify(context, mode, nil)
        }
        // Sessions are resumed only in the context that verified them (required with client verification).
        let sessionContext = Array("mimood".utf8)
        try require(SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count)) == 1, .library, "the session id context")
        // The callback gets the context back; the SSL_CTX lives no longer than it.
        SSL_CTX_set_alpn_select_cb(context, selectApplicationProtocol, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { SSL_CTX_free(context) }

    private static func requireReadable(_ path: String, _ source: TLSConfigurationError.Source) throws(TLSConfigurationError) {
        guard !path.isEmpty else { throw TLSConfigurationError(source: source, reason: "no file is set") }
        guard let file = fopen(path, "r") else {
            throw TLSConfigurationError(source: source, reason: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        fclose(file)
    }

    /// Takes this thread's OpenSSL error queue, as its reasons ("unsupported protocol"), oldest first.
    static func openSSLErrors() -> String {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            if let reason = ERR_reason_error_string(code) { reasons.append(String(cString: reason)) }
        }
        return reasons.isEmpty ? "unknown OpenSSL error" : reasons.joined(separator: "; ")
    }
}

/// ALPN: the first of our protocols, in our order, that the client offers; a client that offers ALPN but
/// none of ours is refused with the no_application_protocol alert (RFC 7301 §3.2).
private let selectApplicationProtocol: SSL_CTX_alpn_select_cb_func = { _, selected, selectedLength, offered, offeredLength, context in
    guard let selected, let selectedLength, let offered, let context else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    let offers = alpnProtocolNames(UnsafeBufferPointer(start: offered, count: Int(offeredLength)))
    for candidate in Unmanaged<TLSContext>.fromOpaque(context).takeUnretainedValue().applicationProtocols {
        if let offer = offers.first(where: { $0.elementsEqual(candidate.rawValue.utf8) }) {
            selected.pointee = UnsafePointer(offer.baseAddress)
            selectedLength.pointee = UInt8(offer.count)
            return SSL_TLSEXT_ERR_OK
        }
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL
}

/// The names of an ALPN protocol list (each a length byte, then that many bytes), as slices of it; a
/// malformed tail is ignored.
func alpnProtocolNames(_ list: UnsafeBufferPointer<UInt8>) -> [UnsafeBufferPointer<UInt8>] {
    var names: [UnsafeBufferPointer<UInt8>] = []
    var index = 0
    while index < list.count {
        let length = Int(list[index])
        guard length > 0, index + 1 + length <= list.count else { break }
        names.append(UnsafeBufferPointer(rebasing: list[(index + 1)..<(index + 1 + length)]))
        index += 1 + length
    }
    return names
}
