/// A response whose body is produced after its head is sent, in pieces: for bodies too large to hold or
/// not known up front. Sent with chunked transfer coding (to HTTP/1.0 clients: delimited by the connection's
/// close). The head is out before `writeBody` runs, so an error thrown from it can no longer become a 500:
/// the connection is closed without the terminating chunk, which the client sees as a truncated body.
public struct StreamingResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    /// Not run for HEAD requests.
    public var writeBody: @Sendable (ResponseBodyWriter) async throws -> Void

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(),
                writeBody: @escaping @Sendable (ResponseBodyWriter) async throws -> Void) {
        self.status = status
        self.headers = headers
        self.writeBody = writeBody
    }
}

/// Sends the pieces of a `StreamingResponse` body.
public struct ResponseBodyWriter: Sendable {
    let connection: Connection

    /// Queues a piece for sending. Returns once the unsent bytes are below a bound, so a producer faster
    /// than the client waits instead of filling memory; throws `ConnectionClosedError` once the client is gone.
    public func write(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }  // an empty chunk would end a chunked body
        try await withCheckedThrowingContinuation { continuation in
            connection.queue.async { connection.writeBodyPiece(bytes, then: continuation) }
        }
    }
}

/// The connection of a streamed response closed (peer gone, write timeout, or forced shutdown).
public struct ConnectionClosedError: Error, Sendable {}
