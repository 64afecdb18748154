import Threading

/// Every decision of one HTTP/2 connection, as `ConnectionStateMachine` is for HTTP/1.1: events go in
/// (bytes read, a handler's response, a write done, the timer, the drain) with the time they happened, and
/// actions come out for `Connection` to perform. No I/O, no Dispatch, no clock; the frames are its
/// `HTTP2Session`'s. Each stream is one request, routed, admitted, limited and answered as HTTP/1.1 does
/// (the same router, body allowance, body pace, request ids and response preparation), many at once.
struct HTTP2ConnectionMachine {
    typealias Instant = ContinuousClock.Instant

    enum Event {
        /// The connection is ready: the server's SETTINGS go out, and the first request is due within the
        /// header timeout of the accept.
        case started
        case bytesRead([UInt8])
        case handlerFinished(stream: Int32, Result<HTTPResponse, any Error>)
        case writeBlocked
        case writeCompleted
        case timerFired
        case drainBegan
        case drainTimedOut
        /// Reading found the end of the input or an error, or a write failed.
        case peerClosed
    }

    enum Action {
        case write([UInt8])
        /// Fire `timerFired` at this time, or earlier (then the machine arms again).
        case armTimer(Instant)
        case runHandler(stream: Int32, HTTPHandler, HTTPRequest)
        /// The client reset the stream, or the connection ends: the handler's work is not wanted.
        case cancelHandler(stream: Int32)
        case observe(ResponseRecord)
        case close
    }

    private struct Stream {
        enum Phase {
            /// Its header block is arriving (HEADERS, then CONTINUATION frames).
            case receivingHead
            case readingBody(RequestHead, BodyDestination)
            case handling(RequestHead)
            /// The final response is submitted; the stream closes once it is sent.
            case responding
        }

        var phase = Phase.receivingHead
        let started: Instant
        var head: RequestHead?
        var route: String?
        var declaredBodyLength: Int?
        var body = RequestBody()
        var bodyStarted: Instant
        var bodyReceived = 0
        /// The size of the body the handler got, for the response record.
        var handledBodyBytes = 0

        init(started: Instant) {
            self.started = started
            bodyStarted = started
        }
    }

    /// Output is taken from the session in pieces of about this size, each once the last is written.
    private static let outputPiece = 64 * 1024

    private let configuration: ServerConfiguration
    private let router: Router
    private let session: HTTP2Session
    private let encoder: ResponseEncoder
    private let bodyPace: BodyPace
    private var streams: [Int32: Stream] = [:]
    private var now: Instant
    private var actions: [Action] = []
    private var isClosed = false
    private var isDraining = false
    /// A connection error: what the session has left to send (its GOAWAY) goes out, then the close.
    private var isEnding = false
    /// A write action is not yet reported complete.
    private var isWriting = false
    private var isWriteBlocked = false
    private var writeDeadline: Instant?
    /// When the connection last had no stream: the idle timeout runs from there.
    private var idleSince: Instant
    /// When output was last handed over: a response that flow control keeps from going out times out from here.
    private var lastOutput: Instant
    private var hasServedStream = false
    private var armedDeadline: Instant?
    private var resetAllowance: TokenBucket

    /// nil when the library could not make a session (out of memory). `acceptedAt`: the first request's
    /// header block is due within the header timeout of it.
    init?(configuration: ServerConfiguration, http2: HTTP2Configuration, router: Router, acceptedAt: Instant) {
        guard let session = HTTP2Session(configuration: http2, limits: configuration.limits) else { return nil }
        self.session = session
        self.configuration = configuration
        self.router = router
        encoder = ResponseEncoder(serverName: configuration.serverName, gzipMinimumBytes: configuration.gzipMinimumBytes)
        bodyPace = BodyPace(timeout: configuration.bodyTimeout, deadline: configuration.bodyDeadline,
                            minimumBytesPerSecond: configuration.bodyMinimumBytesPerSecond)
        (now, idleSince, lastOutput) = (acceptedAt, acceptedAt, acceptedAt)
        resetAllowance = TokenBucket(capacity: http2.resetBurst, perSecond: http2.resetsPerSecond, full: acceptedAt)
    }

    /// Takes one event that happened at `now`; returns what to do, in order. A closed connection ignores every event.
    mutating func receive(_ event: Event, at now: Instant) -> [Action] {
        if isClosed { return [] }
        defer { actions = [] }
        self.now = now
        switch event {
        case .started:
            break
        case .bytesRead(let bytes):
            if !session.receive(bytes) { isEnding = true }
            session.takeEvents().forEach { take($0) }
        case .handlerFinished(let stream, let result):
            if case .handling(let head)? = streams[stream]?.phase {
                respond(on: stream, (try? result.get()) ?? ProblemDetails.handlerFailure, to: head)
            }
        case .writeBlocked:
            if !isWriteBlocked { writeDeadline = now + configuration.writeTimeout }
            isWriteBlocked = true
        case .writeCompleted:
            (isWriting, isWriteBlocked, writeDeadline) = (false, false, nil)
        case .timerFired:
            armedDeadline = nil  // the timer may have fired early, for a deadline since moved on
            timerFired()
        case .drainBegan:
            isDraining = true
            session.sendGoAway()
        case .drainTimedOut, .peerClosed:
            close()
        }
        if !isClosed { sendOrClose() }
        if !isClosed, let deadline = nextDeadline(), deadline != armedDeadline {
            armedDeadline = deadline
            actions.append(.armTimer(deadline))
        }
        return actions
    }

    // MARK: Streams

    private mutating func take(_ event: HTTP2Session.StreamEvent) {
        switch event {
        case .opened(let stream):
            streams[stream] = Stream(started: now)
            hasServedStream = true
        case .headers(let stream, let fields, let refusal, let endStream):
            if let refusal {
                respond(on: stream, ProblemDetails.response(status: refusal.status, detail: refusal.detail), to: nil)
            } else {
                beginRequest(on: stream, fields: fields, endStream: endStream)
            }
        case .data(let stream, let piece):
            takeBodyPiece(piece, on: stream)
        case .requestEnded(let stream):
            finishRequest(on: stream)
        case .resetByPeer:
            if !resetAllowance.take(at: now) {
                session.terminate(calm: true)
                isEnding = true
            }
        case .closed(let stream):
            // Reset by the client while its handler works: like an HTTP/1.1 client that left.
            if case .handling? = streams.removeValue(forKey: stream)?.phase { actions.append(.cancelHandler(stream: stream)) }
            if streams.isEmpty { idleSince = now }
        }
    }

    private mutating func beginRequest(on stream: Int32, fields: [(name: String, value: String)], endStream: Bool) {
        guard !isEnding else { return }  // what came in the same read as a flood's end is not served
        let head: RequestHead
        do {
            head = try Self.requestHead(fields)
        } catch {
            respond(on: stream, ProblemDetails.response(status: error.status, detail: error.detail), to: nil)
            return
        }
        let route = router.registeredPath(head.path)
        streams[stream]?.head = head
        streams[stream]?.route = route
        // The library has checked that Content-Length is a number and that the DATA frames add up to it.
        let declaredLength = endStream ? 0 : head.headers["content-length"].flatMap { Int($0) }
        streams[stream]?.declaredBodyLength = declaredLength
        if let declaredLength, declaredLength > configuration.limits.maxBodyBytes {
            let tooLarge = HTTPParseError.bodyTooLarge(configuration.limits)
            respond(on: stream, ProblemDetails.response(status: tooLarge.status, detail: tooLarge.detail), to: head)
            return
        }
        let destination: BodyDestination
        switch router.route(head, declaredBodyLength: declaredLength) {
        case .handler(let admitted): destination = .handler(admitted)
        case .problem(let response): destination = .problem(response)
        case .refused(let response):
            respond(on: stream, response, to: head)  // the library resets the rest of the request
            return
        }
        streams[stream]?.phase = .readingBody(head, destination)
        streams[stream]?.bodyStarted = now
        if endStream { finishRequest(on: stream) }
    }

    /// The request head of a header block: pseudo-header fields (which the library has checked: present,
    /// once each, before the others) give the method and target, `:authority` the Host.
    private static func requestHead(_ fields: [(name: String, value: String)]) throws(HTTPParseError) -> RequestHead {
        var (method, target, authority) = ("", "", nil as String?)
        var headers = HTTPHeaders()
        for (name, value) in fields {
            switch name {
            case ":method": method = value
            case ":path": target = value
            case ":authority": authority = value
            case ":scheme", ":protocol": break
            default: headers.add(name, value)
            }
        }
        if let authority, headers["host"] == nil { headers.add("host", authority) }
        guard !target.isEmpty else { throw .badRequest("the request has no :path") }
        let (path, query) = try RequestLine.parseTarget(ArraySlice(target.utf8), method: method)
        return RequestHead(method: method, target: target, path: path, query: query, version: .http2, headers: headers)
    }

    private mutating func takeBodyPiece(_ piece: [UInt8], on stream: Int32) {
        guard let state = streams[stream], case .readingBody(let head, let destination) = state.phase else { return }
        streams[stream]?.bodyReceived += piece.count
        guard state.bodyReceived + piece.count <= configuration.limits.maxBodyBytes else {
            let tooLarge = HTTPParseError.bodyTooLarge(configuration.limits)
            respond(on: stream, ProblemDetails.response(status: tooLarge.status, detail: tooLarge.detail), to: head)
            return
        }
        guard case .handler(let admitted) = destination else { return }  // a body to drop
        let maxBodyBytes = configuration.limits.maxBodyBytes
        if let refusal = streams[stream]?.body.append(piece, declaredLength: state.declaredBodyLength,
                                                      maxBodyBytes: maxBodyBytes, allowance: admitted.bodyAllowance) {
            respond(on: stream, refusal, to: head)
        }
    }

    private mutating func finishRequest(on stream: Int32) {
        guard let state = streams[stream], case .readingBody(let head, let destination) = state.phase else { return }
        switch destination {
        case .problem(let response):
            respond(on: stream, response, to: head)
        case .handler(let admitted):
            streams[stream]?.phase = .handling(head)
            streams[stream]?.handledBodyBytes = state.body.bytes.count
            streams[stream]?.body = RequestBody()
            actions.append(.runHandler(stream: stream, admitted.handler, HTTPRequest(head: head, body: state.body.bytes)))
        }
    }

    /// Submits the final response to `head` (nil: the header block was refused) and releases the request:
    /// its body, and with the phase its ticket and allowance.
    private mutating func respond(on stream: Int32, _ response: HTTPResponse, to head: RequestHead?) {
        guard let state = streams[stream] else { return }
        var response = response
        RequestID.stamp(&response, answering: head ?? state.head)
        actions.append(.observe(ResponseRecord(response, answering: head, method: state.head?.method, route: state.route,
                                               duration: now - state.started, requestBodyBytes: state.handledBodyBytes,
                                               applicationProtocol: .h2)))
        let prepared = encoder.prepare(response, for: head.map(ResponseEncoder.RequestContext.init))
        streams[stream]?.phase = .responding
        streams[stream]?.body = RequestBody()
        session.respond(on: stream, status: prepared.status, fields: prepared.fields, body: prepared.body)
    }

    // MARK: Output, timeouts and closing

    /// Hands over the session's next output unless a write is under way; with nothing left to send, closes
    /// a connection that has ended, or one draining without streams.
    private mutating func sendOrClose() {
        guard !isWriting else { return }
        let output = session.pendingOutput(limit: Self.outputPiece)
        session.takeEvents().forEach { take($0) }  // streams whose responses went out
        if !output.isEmpty {
            (isWriting, lastOutput) = (true, now)
            actions.append(.write(output))
        } else if isEnding || !session.isActive || (isDraining && streams.isEmpty) {
            close()
        }
    }

    /// The earliest of: the write timeout while the peer does not read, or while responses wait for a window
    /// the peer does not open; each stream's header or body deadline; and with no stream, the idle timeout
    /// (the header timeout before the first request).
    private func nextDeadline() -> Instant? {
        var deadlines = writeDeadline.map { [$0] } ?? []
        for stream in streams.values {
            switch stream.phase {
            case .receivingHead: deadlines.append(stream.started + configuration.headerTimeout)
            case .readingBody: deadlines.append(now + bodyTimeLeft(stream).0)
            case .responding: deadlines.append(lastOutput + configuration.writeTimeout)
            case .handling: break
            }
        }
        if streams.isEmpty {
            deadlines.append(hasServedStream ? idleSince + configuration.idleTimeout : idleSince + configuration.headerTimeout)
        }
        return deadlines.min()
    }

    private func bodyTimeLeft(_ stream: Stream) -> (Duration, lateness: BodyPace.Lateness) {
        bodyPace.timeLeft(elapsed: now - stream.bodyStarted, received: stream.bodyReceived)
    }

    private mutating func timerFired() {
        if let writeDeadline, now >= writeDeadline { return close() }  // the peer stopped reading
        let isStalled = streams.values.contains { if case .responding = $0.phase { true } else { false } }
        if isStalled && now >= lastOutput + configuration.writeTimeout { return close() }  // nor opens its window
        for (id, stream) in streams {
            switch stream.phase {
            case .receivingHead where now >= stream.started + configuration.headerTimeout:
                return close()  // no other frame may come between a header block's frames
            case .readingBody(let head, _):
                let (left, lateness) = bodyTimeLeft(stream)
                if left <= .zero { respond(on: id, ProblemDetails.response(status: 408, detail: bodyPace.detail(lateness)), to: head) }
            case .receivingHead, .handling, .responding:
                break
            }
        }
        if streams.isEmpty, let deadline = nextDeadline(), now >= deadline {
            // Idle: a GOAWAY tells the client to open a new connection next time instead of retrying here.
            isDraining = true
            session.sendGoAway()
        }
    }

    private mutating func close() {
        for (id, stream) in streams {
            if case .handling = stream.phase { actions.append(.cancelHandler(stream: id)) }
        }
        streams = [:]
        isClosed = true
        actions.append(.close)
    }
}

/// A count that regains `perSecond` tokens each second up to `capacity`; each event takes one.
struct TokenBucket {
    private let capacity: Double
    private let perSecond: Double
    private var tokens: Double
    private var updated: ContinuousClock.Instant

    init(capacity: Int, perSecond: Int, full at: ContinuousClock.Instant) {
        self.capacity = Double(capacity)
        self.perSecond = Double(perSecond)
        tokens = Double(capacity)
        updated = at
    }

    /// Takes a token at `now`; false when none is left.
    mutating func take(at now: ContinuousClock.Instant) -> Bool {
        tokens = min(capacity, tokens + max(0, (now - updated).inSeconds) * perSecond)
        updated = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
