/// What the server's TLS did, for the service's metrics and logs (`HTTPServer`'s `tlsObserver`).
public enum TLSEvent: Sendable {
    case handshakeCompleted(TLSHandshake)
    case handshakeFailed(TLSHandshakeFailure)
    /// SIGHUP (or `reloadTLS()`) read the certificate, key and CA files again: new handshakes use them.
    case reloaded
    /// The files could not be used: the previous certificate and key stay in use.
    case reloadFailed(TLSConfigurationError)
}

public struct TLSHandshake: Sendable {
    /// "TLSv1.3", "TLSv1.2".
    public let protocolVersion: String
    public let cipher: String
    /// Chosen by ALPN; nil when the client offered none (HTTP/1.1 is then spoken).
    public let applicationProtocol: ApplicationProtocol?
    /// The verified client certificate's subject (RFC 2253, e.g. "CN=pacs-gateway,O=Radiology"), if one was presented.
    public let clientSubject: String?
    /// From the accept to the end of the handshake.
    public let duration: Duration
}

public struct TLSHandshakeFailure: Sendable {
    public enum Kind: String, Sendable {
        /// The client closed or reset the connection before the end of the handshake.
        case closed
        /// A TLS error: an old protocol version, no shared cipher or protocol, a client certificate refused, not TLS at all.
        case refused
        /// The handshake did not finish within the handshake timeout.
        case timedOut = "timed_out"
    }

    public let kind: Kind
    /// OpenSSL's reason ("unsupported protocol", "peer did not return a certificate", …) or the system's.
    public let reason: String
    public let duration: Duration
}
