/// TLS for the server's connections: the certificate and key it presents, and what it asks of clients.
/// Protocols (TLS 1.2 and 1.3), ciphers and ALPN are fixed: see `TLSContext`.
public struct TLSConfiguration: Sendable, Equatable {
    /// Whether clients must present a certificate signed by `clientCAFile` (mutual TLS).
    public enum ClientAuthentication: String, Sendable, CaseIterable {
        /// No certificate is asked for.
        case none
        /// A certificate is asked for; a client without one is served, one with a certificate that does not
        /// verify is refused in the handshake.
        case optional
        /// A client without a verified certificate is refused in the handshake.
        case required
    }

    /// PEM: the server's certificate first, then the intermediates up to (not including) the root.
    public var certificateChainFile: String
    /// PEM: the certificate's private key, unencrypted.
    public var privateKeyFile: String
    /// PEM: the CAs that client certificates must chain to; needed unless `clientAuthentication` is `.none`.
    public var clientCAFile: String?
    public var clientAuthentication = ClientAuthentication.none
    /// A client must complete its handshake within this of its accept; then the connection is closed.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Connections whose handshake is under way at once; more are closed at their accept. Peers that open
    /// connections and never finish (or stall) their handshakes then hold this many of the server's
    /// connections and handshake work, not all of `maxConnections`: connections already set up go on.
    public var maxHandshakesInProgress = 256

    public init(certificateChainFile: String, privateKeyFile: String) {
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
    }
}

/// A TLS setting that could not be used: which file, and why (OpenSSL's reason, or the system's).
public struct TLSConfigurationError: Error, Sendable, CustomStringConvertible {
    public enum Source: Sendable {
        case certificateChain, privateKey, clientCA, library
    }

    public let source: Source
    public let reason: String

    public var description: String { reason }
}
