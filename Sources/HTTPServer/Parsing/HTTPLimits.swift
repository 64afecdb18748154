/// Upper bounds on what one request may make the parser hold or read. Each one turns an unbounded
/// peer into a clear error status instead of unbounded memory or time.
public struct HTTPLimits: Sendable {
    /// Bytes of the request line without its CRLF; more is 414.
    public var maxRequestLineLength: Int
    /// Bytes of the whole header section (every field line with its CRLF, plus the closing empty line),
    /// and separately of a chunked trailer section; more is 431.
    public var maxHeaderBytes: Int
    /// Field lines in the header section, and separately in a trailer section; more is 431.
    public var maxHeaderCount: Int
    /// Body bytes of one request (de-chunked); more is 413.
    public var maxBodyBytes: Int
    /// Bytes of one chunk-size line without its CRLF, extensions included; more is 400.
    public var maxChunkLineLength: Int
    /// Empty lines tolerated before a request line (RFC 9112 §2.2); more is 400.
    public var maxLeadingEmptyLines: Int

    public init(maxRequestLineLength: Int = 8 * 1024,
                maxHeaderBytes: Int = 32 * 1024,
                maxHeaderCount: Int = 100,
                maxBodyBytes: Int = 256 * 1024 * 1024,
                maxChunkLineLength: Int = 1024,
                maxLeadingEmptyLines: Int = 8) {
        self.maxRequestLineLength = maxRequestLineLength
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.maxChunkLineLength = maxChunkLineLength
        self.maxLeadingEmptyLines = maxLeadingEmptyLines
    }
}

/// Why a request was refused: the status to answer with, and a detail that never echoes request bytes,
/// so it is safe to put into a problem+json body. After one, the connection must be closed.
public struct HTTPParseError: Error, Sendable, Equatable {
    public var status: Int
    public var detail: String

    public init(status: Int, detail: String) {
        self.status = status
        self.detail = detail
    }

    static func badRequest(_ detail: String) -> HTTPParseError { HTTPParseError(status: 400, detail: detail) }

    static func bodyTooLarge(_ limits: HTTPLimits) -> HTTPParseError {
        HTTPParseError(status: 413, detail: "the body exceeds \(limits.maxBodyBytes) bytes")
    }
}
