import CNGHTTP2

/// One HTTP/2 connection's framing, through nghttp2's server session on memory buffers: bytes from the
/// peer go in, stream events come out; responses go in, bytes for the peer come out. Framing, HPACK, flow
/// control and the protocol's rules (and several flood guards) are the library's; the socket, the clock
/// and every decision about requests are the caller's. Used only on its connection's queue.
final class HTTP2Session {
    enum StreamEvent {
        /// A request's header block has begun on a new stream.
        case opened(Int32)
        /// Its header block is complete. `refusal`: the fields were over a limit and were dropped (431).
        case headers(Int32, fields: [(name: String, value: String)], refusal: HTTPParseError?, endStream: Bool)
        case data(Int32, [UInt8])
        /// The request's end (END_STREAM, on its body or trailers).
        case requestEnded(Int32)
        /// The client sent RST_STREAM for it (a `closed` follows).
        case resetByPeer(Int32)
        /// The stream is gone: answered, reset by either side, or refused.
        case closed(Int32)
    }

    private let session: OpaquePointer
    private let limits: HTTPLimits
    private let maxHeaderListBytes: Int
    /// Events collected by the callbacks, while receiving and while sending (a stream closes once its
    /// response is out), until taken.
    private var events: [StreamEvent] = []
    /// Header blocks being received, by stream.
    private var headerBlocks: [Int32: HeaderBlock] = [:]
    /// Response bodies being sent, by stream, with how far they are sent.
    private var responseBodies: [Int32: (bytes: [UInt8], sent: Int)] = [:]

    private struct HeaderBlock {
        var fields: [(name: String, value: String)] = []
        var listBytes = 0
        var refusal: HTTPParseError?
    }

    init?(configuration: HTTP2Configuration, limits: HTTPLimits) {
        self.limits = limits
        maxHeaderListBytes = configuration.maxHeaderListBytes
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { return nil }
        defer { nghttp2_session_callbacks_del(callbacks) }
        Self.install(callbacks)
        var options: OpaquePointer?
        guard nghttp2_option_new(&options) == 0, let options else { return nil }
        defer { nghttp2_option_del(options) }
        // Resets are counted by the connection machine, which ends the connection with ENHANCE_YOUR_CALM; the
        // library's own count (INTERNAL_ERROR) stays as a backstop at twice the rate.
        nghttp2_option_set_stream_reset_rate_limit(options, UInt64(2 * configuration.resetBurst), UInt64(2 * configuration.resetsPerSecond))
        nghttp2_option_set_max_continuations(options, configuration.maxContinuations)
        nghttp2_option_set_max_outbound_ack(options, configuration.maxOutboundAcks)
        nghttp2_option_set_max_settings(options, configuration.maxSettingsEntries)
        // Closed streams are kept only for the RFC 7540 priority tree, which is turned off below.
        nghttp2_option_set_no_closed_streams(options, 1)
        var made: OpaquePointer?
        // The session calls back with `self` until it is deleted in deinit.
        let initialized = nghttp2_session_server_new2(&made, callbacks, nil, options)
        guard initialized == 0, let made else { return nil }
        session = made
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                                   value: UInt32(clamping: configuration.maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                   value: UInt32(clamping: min(configuration.initialWindowBytes, Int(Int32.max)))),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(clamping: configuration.maxHeaderListBytes)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES.rawValue), value: 1),
        ]
        // The connection's window (RFC 9113 §6.9.2) opens as far as one stream's: otherwise uploads on every
        // stream together would share the protocol's default 64 KiB.
        guard nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count) == 0,
              nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0,
                                                    Int32(clamping: configuration.initialWindowBytes)) == 0
        else { return nil }  // deinit deletes the session
    }

    deinit { nghttp2_session_del(session) }

    /// Feeds bytes read from the peer; false when the peer broke the protocol or a flood guard of the
    /// library's tripped: what is pending (the GOAWAY) is to be sent, then the connection closed.
    func receive(_ bytes: [UInt8]) -> Bool {
        let consumed = bytes.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, $0.count) }
        guard consumed >= 0 else {
            terminate(calm: consumed == Int(NGHTTP2_ERR_FLOODED.rawValue))  // GOAWAY unless the library sent one
            return false
        }
        return true
    }

    /// The stream events since the last call, in order.
    func takeEvents() -> [StreamEvent] {
        defer { events = [] }
        return events
    }

    /// Bytes for the peer, up to about `limit` (a frame may pass it); empty when nothing is due.
    func pendingOutput(limit: Int) -> [UInt8] {
        var output: [UInt8] = []
        while output.count < limit {
            var chunk: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &chunk)
            guard count > 0, let chunk else { break }
            output.append(contentsOf: UnsafeBufferPointer(start: chunk, count: count))
        }
        return output
    }

    /// False once the session has ended (a GOAWAY sent for an error, or the peer's and ours exchanged)
    /// and everything due is sent: the connection may close.
    var isActive: Bool {
        nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0
    }

    /// Submits a final response on `stream`; its body is sent as flow control allows.
    func respond(on stream: Int32, status: Int, fields: [(name: String, value: String)], body: [UInt8]) {
        let allFields = [(":status", String(status))] + fields.map { ($0.name.lowercased(), $0.value) }
        if !body.isEmpty { responseBodies[stream] = (body, 0) }
        withFieldList(allFields) { fieldList in
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: readResponseBody)
            let submitted = body.isEmpty
                ? nghttp2_submit_response(session, stream, &fieldList, fieldList.count, nil)
                : nghttp2_submit_response(session, stream, &fieldList, fieldList.count, &provider)
            // Fails only for a stream already closed (reset meanwhile): nothing to answer then.
            if submitted != 0 { responseBodies[stream] = nil }
        }
    }

    /// Ends the session with GOAWAY: ENHANCE_YOUR_CALM for a flood (`calm`), else PROTOCOL_ERROR. Once it is
    /// sent, the session is no longer active.
    func terminate(calm: Bool) {
        nghttp2_session_terminate_session(session, calm ? UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue) : UInt32(NGHTTP2_PROTOCOL_ERROR.rawValue))
    }

    /// Graceful shutdown (RFC 9113 §6.8): streams the server has seen are finished, later ones refused.
    func sendGoAway() {
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                              UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
    }

    // MARK: Callbacks

    fileprivate static func session(_ userData: UnsafeMutableRawPointer?) -> HTTP2Session? {
        userData.map { Unmanaged<HTTP2Session>.fromOpaque($0).takeUnretainedValue() }
    }

    /// The request header blocks of a server session (not trailers) are those of category REQUEST.
    private static func isRequestHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Bool {
        frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
    }

    private static func install(_ callbacks: OpaquePointer) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            guard let frame, let session = HTTP2Session.session(userData), HTTP2Session.isRequestHeaders(frame) else { return 0 }
            session.headerBlocks[frame.pointee.hd.stream_id] = HeaderBlock()
            session.events.append(.opened(frame.pointee.hd.stream_id))
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            guard let frame, let name, let value, let session = HTTP2Session.session(userData) else { return 0 }
            session.takeField(stream: frame.pointee.hd.stream_id, UnsafeBufferPointer(start: name, count: nameLength),
                              UnsafeBufferPointer(start: value, count: valueLength))
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            guard let frame, let session = HTTP2Session.session(userData) else { return 0 }
            let stream = frame.pointee.hd.stream_id
            let endsStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            if frame.pointee.hd.type == UInt8(NGHTTP2_RST_STREAM.rawValue) {
                session.events.append(.resetByPeer(stream))
            } else if HTTP2Session.isRequestHeaders(frame), let block = session.headerBlocks.removeValue(forKey: stream) {
                session.events.append(.headers(stream, fields: block.fields, refusal: block.refusal, endStream: endsStream))
            } else if endsStream {
                session.headerBlocks[stream] = nil  // trailers, whose fields are not kept
                session.events.append(.requestEnded(stream))
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, stream, data, length, userData in
            guard let data, let session = HTTP2Session.session(userData) else { return 0 }
            session.events.append(.data(stream, Array(UnsafeBufferPointer(start: data, count: length))))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, stream, _, userData in
            guard let session = HTTP2Session.session(userData) else { return 0 }
            session.headerBlocks[stream] = nil
            session.responseBodies[stream] = nil
            session.events.append(.closed(stream))
            return 0
        }
    }

    /// Keeps a decoded field of a request's header block while the block is within the limits; past them
    /// the fields are dropped (the decoder still runs, to keep HPACK's table in step) and the request is refused.
    private func takeField(stream: Int32, _ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) {
        guard var block = headerBlocks[stream] else { return }  // trailers
        headerBlocks[stream] = nil  // no copy of the block while it changes
        defer { headerBlocks[stream] = block }
        guard block.refusal == nil else { return }
        block.listBytes += name.count + value.count + 32
        if block.listBytes > maxHeaderListBytes {
            block.refusal = HTTPParseError(status: 431, detail: "the header section exceeds \(maxHeaderListBytes) bytes")
        } else if block.fields.count >= limits.maxHeaderCount {
            block.refusal = HTTPParseError(status: 431, detail: "more than \(limits.maxHeaderCount) header fields")
        }
        if block.refusal != nil {
            block.fields = []
            return
        }
        block.fields.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
    }

    fileprivate func readBody(stream: Int32, into buffer: UnsafeMutablePointer<UInt8>, capacity: Int,
                              flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let (bytes, sent) = responseBodies[stream] else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let count = min(capacity, bytes.count - sent)
        bytes.withUnsafeBufferPointer { source in
            guard let base = source.baseAddress else { return }
            buffer.update(from: base + sent, count: count)
        }
        if sent + count == bytes.count {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            responseBodies[stream] = nil
        } else {
            responseBodies[stream]?.sent = sent + count
        }
        return count
    }
}

private let readResponseBody: nghttp2_data_source_read_callback = { _, stream, buffer, capacity, flags, _, userData in
    guard let buffer, let flags, let userData else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
    return Unmanaged<HTTP2Session>.fromOpaque(userData).takeUnretainedValue()
        .readBody(stream: stream, into: buffer, capacity: capacity, flags: flags)
}

/// Calls `body` with `fields` as nghttp2's name-value list, valid during the call only: nghttp2 copies
/// names and values while submitting, so one buffer holds them for that call.
func withFieldList<Result>(_ fields: [(name: String, value: String)], _ body: (inout [nghttp2_nv]) -> Result) -> Result {
    var storage: [UInt8] = []
    var ranges: [(name: Range<Int>, value: Range<Int>)] = []
    for (name, value) in fields {
        let nameStart = storage.count
        storage.append(contentsOf: name.utf8)
        let valueStart = storage.count
        storage.append(contentsOf: value.utf8)
        ranges.append((nameStart..<valueStart, valueStart..<storage.count))
    }
    storage.append(0)  // never empty: the buffer has an address
    return storage.withUnsafeMutableBufferPointer { buffer in
        var list = ranges.map { range in
            nghttp2_nv(name: buffer.baseAddress! + range.name.lowerBound, value: buffer.baseAddress! + range.value.lowerBound,
                       namelen: range.name.count, valuelen: range.value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
        }
        return body(&list)
    }
}
