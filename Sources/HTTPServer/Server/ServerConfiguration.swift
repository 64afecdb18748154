import Glibc

/// Where the server listens and every bound it puts on a peer. The defaults are safe for a service that
/// sits behind a reverse proxy; tests shorten the timeouts.
public struct ServerConfiguration: Sendable {
    /// A numeric IPv4 or IPv6 address: "127.0.0.1", "0.0.0.0", "::1", "::" (on Linux "::" also takes IPv4).
    public var host: String
    /// 0 lets the system choose; `HTTPServer.start()` returns the port actually bound.
    public var port: Int
    public var listenBacklog: Int32 = 512
    /// Sizes of the request line, header section and body (414, 431, 413).
    public var limits = HTTPLimits()
    /// Open connections beyond this are accepted, answered 503 with `Connection: close`, and closed, so a
    /// client learns why instead of waiting in the listen backlog.
    public var maxConnections = 1024
    /// The whole header section must arrive within this, counted from the connection's accept or from the
    /// first byte of a later request (slowloris); then 408 and close.
    public var headerTimeout: Duration = .seconds(10)
    /// The longest wait for the next piece of a body; then 408 and close.
    public var bodyTimeout: Duration = .seconds(30)
    /// The whole body must have arrived within this of its head; then 408 and close.
    public var bodyDeadline: Duration = .seconds(300)
    /// After a first `bodyTimeout`, a body must average at least this many bytes per second since its head
    /// (0: no such rule); then 408 and close. Without it a byte every `bodyTimeout` keeps a body open.
    public var bodyMinimumBytesPerSecond = 16 * 1024
    /// A keep-alive connection with no request in progress is closed after this. Longer than nginx's
    /// upstream `keepalive_timeout` (60 s) so that the proxy, not us, closes idle connections: otherwise it
    /// may send a request on a connection we are closing.
    public var idleTimeout: Duration = .seconds(75)
    /// The longest a response may make no progress towards a peer that does not read; then the connection is closed.
    public var writeTimeout: Duration = .seconds(30)
    /// On shutdown, how long requests in progress may take to finish before their connections are closed.
    public var drainTimeout: Duration = .seconds(25)
    /// After a final response on a connection whose request was not read to its end, how long unread input
    /// is discarded before closing: closing with unread input sends a reset that can destroy the response.
    public var lingerTimeout: Duration = .seconds(2)
    /// The `Server` field of every response; nil leaves it out.
    public var serverName: String? = "MIM-OOD"
    /// Compressible bodies from this size on are gzip-encoded for clients that accept it.
    public var gzipMinimumBytes = 1024
    /// HTTPS: the certificate, key and client verification; nil serves plain HTTP.
    public var tls: TLSConfiguration?
    /// HTTP/2 beside HTTP/1.1: chosen by ALPN over TLS (preferred to http/1.1), and in cleartext by a client
    /// that opens with the HTTP/2 preface (prior knowledge). nil serves HTTP/1.1 only.
    public var http2: HTTP2Configuration? = HTTP2Configuration()
    /// Serial queues that connections are spread over; one per core by default.
    public var ioQueueCount = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    public init(host: String = "127.0.0.1", port: Int = 8080) {
        self.host = host
        self.port = port
    }
}
