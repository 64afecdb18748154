import CNGHTTP2
@testable import HTTPServer
import XCTest

/// An HTTP/2 client for the tests: nghttp2's client session, driven step by step from the test. Over a
/// `RawClient` (cleartext by prior knowledge, or TLS after ALPN): submit, then receive until a condition
/// holds, blocking on the test's thread. Or without a socket, its bytes handed to `send` and the peer's
/// given to `feed`, to drive a connection machine directly.
final class HTTP2TestClient {
    struct Response {
        var status: Int?
        var headers: [(name: String, value: String)] = []
        var body: [UInt8] = []
        /// END_STREAM arrived.
        var isComplete = false
        /// The server reset the stream with this code (REFUSED_STREAM is 7).
        var resetCode: UInt32?

        func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
    }

    /// nil without a socket.
    let connection: RawClient?
    private let send: ([UInt8]) throws -> Void
    private var session: OpaquePointer?
    private(set) var responses: [Int32: Response] = [:]
    private(set) var goAway: (lastStreamID: Int32, errorCode: UInt32)?
    private(set) var isClosedByPeer = false
    /// Request bodies being sent, by stream.
    private var requestBodies: [Int32: (bytes: [UInt8], sent: Int)] = [:]

    convenience init(connection: RawClient) throws {
        try self.init(connection: connection, settings: [], send: connection.send)
    }

    /// `settings`: the client's SETTINGS (identifier, value).
    init(connection: RawClient? = nil, settings: [(Int32, UInt32)], send: @escaping ([UInt8]) throws -> Void) throws {
        self.connection = connection
        self.send = send
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            guard let frame, let name, let value else { return 0 }
            let field = (String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self),
                         String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self))
            HTTP2TestClient.client(userData).take(field, stream: frame.pointee.hd.stream_id)
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, stream, data, length, userData in
            guard let data else { return 0 }
            HTTP2TestClient.client(userData).responses[stream, default: Response()].body
                .append(contentsOf: UnsafeBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            guard let frame else { return 0 }
            let client = HTTP2TestClient.client(userData)
            let header = frame.pointee.hd
            if header.type == UInt8(NGHTTP2_GOAWAY.rawValue) {
                client.goAway = (frame.pointee.goaway.last_stream_id, frame.pointee.goaway.error_code)
            } else if header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 {
                client.responses[header.stream_id, default: Response()].isComplete = true
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, stream, errorCode, userData in
            if errorCode != 0 { HTTP2TestClient.client(userData).responses[stream, default: Response()].resetCode = errorCode }
            return 0
        }
        nghttp2_session_client_new(&session, callbacks, Unmanaged.passUnretained(self).toOpaque())
        var entries = settings.map { nghttp2_settings_entry(settings_id: $0.0, value: $0.1) }
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        try flush()
    }

    deinit { nghttp2_session_del(session) }

    private static func client(_ userData: UnsafeMutableRawPointer?) -> HTTP2TestClient {
        Unmanaged<HTTP2TestClient>.fromOpaque(userData!).takeUnretainedValue()
    }

    private func take(_ field: (String, String), stream: Int32) {
        if field.0 == ":status" {
            responses[stream, default: Response()].status = Int(field.1)
        } else {
            responses[stream, default: Response()].headers.append(field)
        }
    }

    /// Submits a request and sends it; returns its stream.
    @discardableResult
    func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) throws -> Int32 {
        let fields = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "test")] + headers
        let stream = withFieldList(fields) { list -> Int32 in
            guard let body else { return nghttp2_submit_request(session, nil, &list, list.count, nil, nil) }
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil)) { _, stream, buffer, capacity, flags, _, userData in
                HTTP2TestClient.client(userData).readBody(stream: stream, into: buffer!, capacity: capacity, flags: flags!)
            }
            let stream = nghttp2_submit_request(session, nil, &list, list.count, &provider, nil)
            if stream > 0 { requestBodies[stream] = (body, 0) }
            return stream
        }
        XCTAssertGreaterThan(stream, 0)
        try flush()
        return stream
    }

    private func readBody(stream: Int32, into buffer: UnsafeMutablePointer<UInt8>, capacity: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let (bytes, sent) = requestBodies[stream] else { return 0 }
        let count = min(capacity, bytes.count - sent)
        for index in 0..<count { buffer[index] = bytes[sent + index] }
        requestBodies[stream]?.sent = sent + count
        if sent + count == bytes.count { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        return count
    }

    /// RST_STREAM (CANCEL), as a client does that no longer wants the answer.
    func reset(_ stream: Int32) throws {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, UInt32(NGHTTP2_CANCEL.rawValue))
        try flush()
    }

    private func flush() throws {
        var pending: [UInt8] = []
        while true {
            var chunk: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &chunk)
            guard count > 0, let chunk else { break }
            pending.append(contentsOf: UnsafeBufferPointer(start: chunk, count: count))
        }
        if !pending.isEmpty { try send(pending) }
    }

    /// Reads and answers (SETTINGS and PING acknowledgements, window updates) until `condition` holds or the
    /// server closes the connection; throws on the receive timeout.
    func receive(until condition: () -> Bool) throws {
        while !condition() && !isClosedByPeer {
            guard let bytes = try connection?.receiveBytes() else {
                isClosedByPeer = true
                break
            }
            try feed(bytes)
        }
    }

    /// Takes bytes from the server and sends what they call for.
    func feed(_ bytes: [UInt8]) throws {
        let consumed = bytes.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, $0.count) }
        guard consumed >= 0 else { throw ClientError(description: "nghttp2: \(String(cString: nghttp2_strerror(Int32(consumed))))") }
        try flush()
    }

    /// Reads until `stream` is answered (or reset); returns its response.
    func response(_ stream: Int32) throws -> Response {
        try receive { responses[stream]?.isComplete == true || responses[stream]?.resetCode != nil }
        return responses[stream] ?? Response()
    }
}
