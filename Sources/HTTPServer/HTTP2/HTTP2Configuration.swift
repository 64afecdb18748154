/// HTTP/2's own bounds. The request limits (body size, header and body timeouts, idle timeout) are the
/// server's, applied per stream; these are what HTTP/2 adds: streams, windows, and the flood guards.
public struct HTTP2Configuration: Sendable, Equatable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: requests one connection may have open at once; more are refused
    /// with RST_STREAM (REFUSED_STREAM), which clients retry.
    public var maxConcurrentStreams = 100
    /// SETTINGS_MAX_HEADER_LIST_SIZE, enforced on the decoded fields (name + value + 32 bytes each, as
    /// RFC 9113 §6.5.2 counts them): a larger header section is answered 431 however small its HPACK form.
    public var maxHeaderListBytes = 32 * 1024
    /// SETTINGS_INITIAL_WINDOW_SIZE: body bytes a client may send on a stream before it is acknowledged.
    public var initialWindowBytes = 1024 * 1024

    // Flood guards (the library's counters with its defaults made explicit, but for resets, counted by us).
    /// Rapid reset (CVE-2023-44487): RST_STREAM frames from the client draw on a bucket of this many
    /// tokens, refilled at `resetsPerSecond`; an empty bucket ends the connection with GOAWAY
    /// (ENHANCE_YOUR_CALM).
    public var resetBurst = 1000
    public var resetsPerSecond = 33
    /// CONTINUATION frames after one HEADERS frame; more end the connection (CVE-2024-28182).
    public var maxContinuations = 8
    /// SETTINGS and PING acknowledgements waiting to be sent (a client that floods and does not read);
    /// more end the connection.
    public var maxOutboundAcks = 1000
    /// Entries in one SETTINGS frame; more end the connection.
    public var maxSettingsEntries = 32

    public init() {}
}
