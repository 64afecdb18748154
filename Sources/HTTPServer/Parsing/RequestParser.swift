/// What the parser hands out, in order: one `.head`, zero or more `.body` pieces, one `.end` per request.
public enum ParseEvent: Sendable, Equatable {
    /// The complete, validated header section; no body byte has been consumed yet.
    case head(RequestHead)
    /// A piece of the body, de-chunked. Pieces follow the received bytes, so their sizes vary.
    case body([UInt8])
    /// The request is complete. Trailer fields of a chunked body were validated and discarded.
    case end
}

/// A pure, incremental HTTP/1.1 request parser (RFC 9112): bytes in with `feed`, events out with `next`.
/// It does no I/O; it works on any split of the input and on pipelined requests. After an error it stays
/// failed: every `next()` throws that error again, and the connection should be answered and closed.
public struct RequestParser: Sendable {
    /// Where in a request the parser stands. Body states carry the count of body bytes so far, which the
    /// chunked states check against `maxBodyBytes`.
    private enum State: Sendable {
        case requestLine(skippedEmptyLines: Int)
        /// The request line is in `pendingRequestLine`, the fields so far in `pendingHeaders`.
        case headerFields(sectionBytes: Int)
        case fixedLengthBody(remaining: Int)
        case chunkSizeLine(bodyBytes: Int)
        case chunkData(remaining: Int, bodyBytes: Int)
        case chunkDataCRLF(bodyBytes: Int)
        case trailerFields(sectionBytes: Int, fieldCount: Int)
        case failed(HTTPParseError)
    }

    private let limits: HTTPLimits
    private var state = State.requestLine(skippedEmptyLines: 0)
    /// Received bytes; those before `readIndex` are consumed and dropped in `feed`, not per event.
    private var buffer: [UInt8] = []
    private var readIndex = 0
    /// Bytes after `readIndex` already searched for LF, so a line arriving in pieces is scanned once.
    private var scannedWithoutLineEnd = 0
    // Kept outside `state` so that appending a field mutates in place instead of copying an associated value.
    private var pendingRequestLine: RequestLine?
    private var pendingHeaders = HTTPHeaders()

    /// The Content-Length of the current request once its `.head` is out; nil when chunked or when the request
    /// has no Content-Length (and so no body).
    public private(set) var expectedBodyLength: Int?
    /// Whether the current request, once its `.head` is out, has a chunked body.
    public private(set) var isChunked = false

    /// Whether bytes are waiting that no event has consumed yet (e.g. a pipelined request after `.end`).
    public var hasBufferedBytes: Bool { readIndex < buffer.count }

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    /// Appends received bytes. Bytes fed after an error are ignored.
    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        if case .failed = state { return }
        dropConsumedBytes()
        buffer.append(contentsOf: bytes)
    }

    /// The next event, or nil when more bytes are needed.
    public mutating func next() throws(HTTPParseError) -> ParseEvent? {
        if case .failed(let error) = state { throw error }
        do {
            return try advance()
        } catch {
            state = .failed(error)
            throw error
        }
    }

    private mutating func advance() throws(HTTPParseError) -> ParseEvent? {
        // Loops over the steps that consume bytes without producing an event (lines of the head, chunk framing).
        while true {
            switch state {
            case .requestLine(let skippedEmptyLines):
                guard let line = try takeLine(.requestLine) else { return nil }
                if line.isEmpty {
                    guard skippedEmptyLines < limits.maxLeadingEmptyLines else {
                        throw .badRequest("too many empty lines before the request line")
                    }
                    state = .requestLine(skippedEmptyLines: skippedEmptyLines + 1)
                } else {
                    pendingRequestLine = try RequestLine(parsing: buffer[line])
                    state = .headerFields(sectionBytes: 0)
                }

            case .headerFields(let sectionBytes):
                guard let line = try takeLine(.headerField(sectionBytes: sectionBytes)) else { return nil }
                if line.isEmpty { return .head(try completeHead()) }
                guard pendingHeaders.fields.count < limits.maxHeaderCount else {
                    throw HTTPParseError(status: 431, detail: "more than \(limits.maxHeaderCount) header fields")
                }
                let field = try FieldLine.parse(buffer[line])
                pendingHeaders.add(field.name, field.value)
                state = .headerFields(sectionBytes: sectionBytes + line.count + 2)

            case .fixedLengthBody(let remaining):
                if remaining == 0 { return completeRequest() }
                guard let piece = takeBodyPiece(upTo: remaining) else { return nil }
                state = .fixedLengthBody(remaining: remaining - piece.count)
                return .body(piece)

            case .chunkSizeLine(let bodyBytes):
                guard let line = try takeLine(.chunkSize) else { return nil }
                let size = try ChunkSizeLine.parseSize(buffer[line])
                guard size <= UInt64(limits.maxBodyBytes - bodyBytes) else { throw .bodyTooLarge(limits) }
                state = size == 0
                    ? .trailerFields(sectionBytes: 0, fieldCount: 0)
                    : .chunkData(remaining: Int(size), bodyBytes: bodyBytes + Int(size))

            case .chunkData(let remaining, let bodyBytes):
                guard let piece = takeBodyPiece(upTo: remaining) else { return nil }
                state = piece.count == remaining
                    ? .chunkDataCRLF(bodyBytes: bodyBytes)
                    : .chunkData(remaining: remaining - piece.count, bodyBytes: bodyBytes)
                return .body(piece)

            case .chunkDataCRLF(let bodyBytes):
                let available = buffer.count - readIndex
                let missing = HTTPParseError.badRequest("chunk data is not followed by CRLF")
                if available >= 1 && buffer[readIndex] != ASCII.cr { throw missing }
                guard available >= 2 else { return nil }
                guard buffer[readIndex + 1] == ASCII.lf else { throw missing }
                readIndex += 2
                state = .chunkSizeLine(bodyBytes: bodyBytes)

            case .trailerFields(let sectionBytes, let fieldCount):
                guard let line = try takeLine(.trailerField(sectionBytes: sectionBytes)) else { return nil }
                if line.isEmpty { return completeRequest() }
                guard fieldCount < limits.maxHeaderCount else {
                    throw HTTPParseError(status: 431, detail: "more than \(limits.maxHeaderCount) trailer fields")
                }
                let field = try FieldLine.parse(buffer[line])
                // Framing and routing fields in a trailer could be merged into the head by some intermediary.
                if ["Content-Length", "Transfer-Encoding", "Host"].contains(where: field.name.equalsIgnoringASCIICase) {
                    throw .badRequest("Content-Length, Transfer-Encoding and Host are not allowed in a trailer section")
                }
                state = .trailerFields(sectionBytes: sectionBytes + line.count + 2, fieldCount: fieldCount + 1)

            case .failed(let error):
                throw error
            }
        }
    }

    /// The kinds of line, each with its own length limit.
    private enum LineKind {
        case requestLine
        case headerField(sectionBytes: Int)
        case chunkSize
        case trailerField(sectionBytes: Int)
    }

    private func maxContentLength(of kind: LineKind) -> Int {
        switch kind {
        case .requestLine: limits.maxRequestLineLength
        case .headerField(let sectionBytes), .trailerField(let sectionBytes):
            limits.maxHeaderBytes - sectionBytes - 2  // the line's CRLF counts toward the section
        case .chunkSize: limits.maxChunkLineLength
        }
    }

    private func lengthError(of kind: LineKind) -> HTTPParseError {
        switch kind {
        case .requestLine:
            HTTPParseError(status: 414, detail: "the request line exceeds \(limits.maxRequestLineLength) bytes")
        case .headerField:
            HTTPParseError(status: 431, detail: "the header section exceeds \(limits.maxHeaderBytes) bytes")
        case .chunkSize: .badRequest("a chunk-size line exceeds \(limits.maxChunkLineLength) bytes")
        case .trailerField:
            HTTPParseError(status: 431, detail: "the trailer section exceeds \(limits.maxHeaderBytes) bytes")
        }
    }

    /// Consumes the next CRLF-terminated line and returns the range of its content in `buffer`, or nil when
    /// it is incomplete. A line is refused with its kind's length error as soon as its content is certain to
    /// exceed the limit, even before its end arrives; a bare LF terminator is refused with 400. The length
    /// is checked first, so that any split of the input gives the same error.
    private mutating func takeLine(_ kind: LineKind) throws(HTTPParseError) -> Range<Int>? {
        let lineFeed = buffer[(readIndex + scannedWithoutLineEnd)...].firstIndex(of: ASCII.lf)
        let lineEnd = lineFeed ?? buffer.count
        let endsInCR = lineEnd > readIndex && buffer[lineEnd - 1] == ASCII.cr
        // A final CR may be (or become) the line's CRLF, so it does not count toward the content.
        if lineEnd - readIndex - (endsInCR ? 1 : 0) > maxContentLength(of: kind) { throw lengthError(of: kind) }
        guard let lineFeed else {
            scannedWithoutLineEnd = buffer.count - readIndex
            return nil
        }
        guard endsInCR else { throw .badRequest("a line ends in a bare LF; CRLF is required") }
        let content = readIndex..<(lineFeed - 1)
        readIndex = lineFeed + 1
        scannedWithoutLineEnd = 0
        return content
    }

    /// Consumes up to `limit` buffered bytes as a body piece; nil when none are buffered.
    private mutating func takeBodyPiece(upTo limit: Int) -> [UInt8]? {
        let count = min(limit, buffer.count - readIndex)
        guard count > 0 else { return nil }
        defer { readIndex += count }
        return Array(buffer[readIndex..<(readIndex + count)])
    }

    private mutating func completeHead() throws(HTTPParseError) -> RequestHead {
        let line = pendingRequestLine!
        let head = RequestHead(method: line.method, target: line.target, path: line.path, query: line.query,
                               version: line.version, headers: pendingHeaders)
        pendingRequestLine = nil
        pendingHeaders = HTTPHeaders()
        let framing = try BodyFraming(head: head, limits: limits)  // throws before `.head` is out, e.g. 413
        switch framing {
        case .none:
            expectedBodyLength = nil
            isChunked = false
            state = .fixedLengthBody(remaining: 0)
        case .length(let length):
            expectedBodyLength = length
            isChunked = false
            state = .fixedLengthBody(remaining: length)
        case .chunked:
            expectedBodyLength = nil
            isChunked = true
            state = .chunkSizeLine(bodyBytes: 0)
        }
        return head
    }

    private mutating func completeRequest() -> ParseEvent {
        state = .requestLine(skippedEmptyLines: 0)
        return .end
    }

    /// Drops consumed bytes when that is cheap relative to what it frees: all of them when nothing is
    /// pending, otherwise only once they are at least half the buffer.
    private mutating func dropConsumedBytes() {
        if readIndex == buffer.count {
            // Keep the storage for the next request, unless a large body made it large.
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 20)
            readIndex = 0
        } else if readIndex >= 4096 && readIndex * 2 >= buffer.count {
            buffer.removeSubrange(..<readIndex)
            readIndex = 0
        }
    }
}
