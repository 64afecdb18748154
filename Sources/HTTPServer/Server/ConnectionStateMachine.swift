/// Every decision of one connection, and nothing else: events go in (bytes read, the timer, a handler's
/// response, a write done, the drain) with the time they happened, and actions come out for `Connection`
/// to perform (read or pause, write, arm the timer, run or cancel a handler, shut down, close). No I/O,
/// no Dispatch, no clock: a value that the table tests drive event by event. It consults the router, and
/// through it a route's admission check and body allowance, which are quick decisions of the service.
///
/// One request at a time: a request's head is read, then its body, then its handler runs and its response
/// is written; only then is the next request read, so pipelined requests wait in the parser's buffer and
/// the socket, and are answered in order.
struct ConnectionStateMachine {
    typealias Instant = ContinuousClock.Instant

    enum Event {
        /// The executor is ready: reading starts, and the first head is due within the header timeout of the accept.
        case started
        /// Bytes read from the socket, while reading.
        case bytesRead([UInt8])
        /// While watching: bytes wait in the socket, of a pipelined request.
        case inputWaiting
        /// While watching: the socket is at its end or failed (the peer closed, reset, or half-closed).
        case peerHungUp
        /// Reading found the end of the input or an error, or a write failed: the connection is unusable.
        case peerClosed
        /// The timer of the last `armTimer` (or an earlier one) went off.
        case timerFired
        /// The handler of the last `runHandler` returned or threw.
        case handlerFinished(Result<HTTPResponse, any Error>)
        /// A write filled the socket's buffer: the rest waits for room. Reported again after each progress.
        case writeBlocked
        /// Every byte handed over so far is written.
        case writeCompleted
        /// Graceful shutdown began.
        case drainBegan
        /// The shutdown's drain timeout passed.
        case drainTimedOut
    }

    enum ReadingMode: Equatable {
        /// Read what arrives and report it: `bytesRead`, or `peerClosed` at the end.
        case reading
        /// Leave what arrives in the socket, but report that it did (`inputWaiting`) or that the peer hung up
        /// (`peerHungUp`): while a handler runs, a peer that leaves cancels it.
        case watching
        /// Watch nothing. Arriving bytes wait in the socket: a client that pipelines faster than we answer
        /// fills its own send buffer.
        case paused
    }

    enum Action {
        case setReading(ReadingMode)
        /// The interim `100 Continue` that invites the body.
        case writeContinue
        /// A final response to `head` (nil when the head could not be read), with the connection kept open or not.
        case writeResponse(HTTPResponse, head: RequestHead?, keepAlive: Bool)
        /// Fire `timerFired` at this time, or earlier (then the machine arms again).
        case armTimer(Instant)
        case runHandler(HTTPHandler, HTTPRequest)
        case cancelHandler
        /// For the server's response observer: one per final response.
        case observe(ResponseRecord)
        /// Shut our side after the final response; reading goes on to discard what the peer still sends.
        case shutDownWriteSide
        case close
    }

    private enum State {
        /// Between requests: no byte of the next one yet. Times out silently (idle, or the header timeout
        /// for a connection that never sent anything).
        case idle
        /// Bytes of a request head have arrived; the whole head must follow before the header deadline.
        case readingHead
        /// The head is parsed; its body is read, for the handler or to be dropped before a problem answer.
        case readingBody(RequestHead, BodyDestination)
        /// The handler runs, as long as it needs; the socket is watched for a peer that leaves.
        case handling(RequestHead)
        /// The final response is handed over; once written, the next request or the lingering close.
        case writingResponse(closeAfter: Bool)
        /// The final response is out and our side shut; unread input is discarded until EOF or the linger timeout.
        case lingering
        case closed
    }

    private let configuration: ServerConfiguration
    private let router: Router
    private let bodyPace: BodyPace
    private var parser: RequestParser
    private var state = State.idle
    private var draining = false
    /// The time of the event being handled.
    private var now: Instant
    /// When the current state's timeout expires; nil while none runs (a handler at work).
    private var deadline: Instant?
    private var reading = ReadingMode.paused
    /// Written bytes wait for room in the socket: any deadline that passes now means the peer stopped reading.
    private var isWriteBlocked = false
    /// The actions of the event being handled.
    private var actions: [Action] = []
    /// Responses fully written; before the first, the header deadline runs from the accept.
    private var answeredRequests = 0

    // The request in progress, for the response observer: when its first byte came (the accept, for the first
    // request), its head once parsed (which also gives the request id to answers sent without it, such as a
    // 408 or 413 mid-body), its route, and its body's size.
    private var requestStarted: Instant
    private var currentHead: RequestHead?
    private var currentRoute: String?
    private var currentBodyBytes = 0

    // Its body: the bytes kept for the handler, when its head was parsed, and its bytes so far (also those
    // of a body being dropped), for `BodyPace`.
    private var requestBody = RequestBody()
    private var bodyStarted: Instant
    private var bodyReceived = 0

    init(configuration: ServerConfiguration, router: Router, acceptedAt: Instant) {
        self.configuration = configuration
        self.router = router
        parser = RequestParser(limits: configuration.limits)
        bodyPace = BodyPace(timeout: configuration.bodyTimeout, deadline: configuration.bodyDeadline,
                            minimumBytesPerSecond: configuration.bodyMinimumBytesPerSecond)
        (now, requestStarted, bodyStarted) = (acceptedAt, acceptedAt, acceptedAt)
    }

    /// Takes one event that happened at `now`; returns what to do, in order. A closed connection ignores every event.
    mutating func receive(_ event: Event, at now: Instant) -> [Action] {
        if isClosed { return [] }
        defer { actions = [] }
        self.now = now
        let (readingBefore, deadlineBefore) = (reading, deadline)
        switch event {
        case .started:
            reading = .reading
            deadline = requestStarted + configuration.headerTimeout
        case .bytesRead(let bytes):
            bytesRead(bytes)
        case .inputWaiting:
            // A pipelined request: it is read once the response is out.
            reading = .paused
        case .peerHungUp:
            if case .handling = state {
                // A peer that leaves while its handler works will never read the answer: the work is cancelled.
                // A client that half-closes after its request (shutdown(SHUT_WR)) looks the same and is taken
                // for gone too; HTTP clients and proxies (curl, nginx) do not do that.
                close()
            } else {
                reading = .paused  // a response is being written: the write will tell whether the peer is gone
            }
        case .peerClosed:
            close()
        case .timerFired:
            timerFired()
        case .handlerFinished(let result):
            if case .handling(let head) = state {
                respond((try? result.get()) ?? ProblemDetails.handlerFailure, to: head, close: false)
            }
        case .writeBlocked:
            isWriteBlocked = true
            deadline = now + configuration.writeTimeout
        case .writeCompleted:
            isWriteBlocked = false
            writeCompleted()
        case .drainBegan:
            draining = true
            if case .idle = state { close() }
        case .drainTimedOut:
            close()
        }
        // The reading mode and the deadline may change several times in one event; only the last counts.
        if !isClosed {
            if reading != readingBefore { actions.append(.setReading(reading)) }
            if let deadline, deadline != deadlineBefore { actions.append(.armTimer(deadline)) }
        }
        return actions
    }

    private var isClosed: Bool {
        if case .closed = state { true } else { false }
    }

    // MARK: Reading

    private mutating func bytesRead(_ bytes: [UInt8]) {
        switch state {
        case .idle: beginHead()
        case .lingering: return  // discarded
        case .readingHead, .readingBody, .handling, .writingResponse, .closed: break
        }
        parser.feed(bytes)
        processInput()
    }

    private mutating func beginHead() {
        state = .readingHead
        // The first request's head is due within the header timeout of the accept, armed at the start.
        if answeredRequests > 0 {
            requestStarted = now
            deadline = now + configuration.headerTimeout
        }
    }

    /// Takes parser events until a request is complete (then its handler runs), more bytes are needed,
    /// or the request is answered.
    private mutating func processInput() {
        while true {
            switch state {
            case .readingHead, .readingBody: break
            case .idle, .handling, .writingResponse, .lingering, .closed: return
            }
            let event: ParseEvent?
            do {
                event = try parser.next()
            } catch {
                respond(ProblemDetails.response(status: error.status, detail: error.detail), to: nil, close: true)
                return
            }
            switch event {
            case nil:
                if case .readingBody = state { armBodyTimer() }
                return
            case .head(let head)?:
                beginRequest(head)
            case .body(let piece)?:
                takeBodyPiece(piece)
            case .end?:
                finishRequest()
            }
        }
    }

    private mutating func beginRequest(_ head: RequestHead) {
        currentHead = head
        currentRoute = router.registeredPath(head.path)
        // RFC 9110 §10.1.1: Expect from an HTTP/1.0 client is ignored.
        let expectation = head.version == .http1_1 ? head.headers["Expect"]?.lowercased() : nil
        if let expectation, expectation != "100-continue" {
            respond(ProblemDetails.response(status: 417, detail: "only the 100-continue expectation is supported"),
                    to: head, close: true)
            return
        }
        let destination: BodyDestination
        switch router.route(head, declaredBodyLength: parser.isChunked ? nil : parser.expectedBodyLength ?? 0) {
        case .handler(let admitted):
            destination = .handler(admitted)
        case .refused(let response):
            // Answered before the body is read, so the connection cannot carry another request.
            respond(response, to: head, close: true)
            return
        case .problem(let response):
            destination = .problem(response)
        }
        if expectation != nil && (parser.isChunked || (parser.expectedBodyLength ?? 0) > 0) {
            switch destination {
            case .handler:
                // A client that has already started sending the body needs no invitation.
                if !parser.hasBufferedBytes { actions.append(.writeContinue) }
            case .problem(let response):
                // Answered before the body is sent, so the connection cannot carry another request.
                respond(response, to: head, close: true)
                return
            }
        }
        requestBody = RequestBody()
        (bodyReceived, bodyStarted) = (0, now)
        state = .readingBody(head, destination)
        armBodyTimer()
    }

    private mutating func takeBodyPiece(_ piece: [UInt8]) {
        bodyReceived += piece.count
        guard case .readingBody(let head, .handler(let admitted)) = state else { return }  // a body to drop
        if let refusal = requestBody.append(piece, declaredLength: parser.isChunked ? nil : parser.expectedBodyLength,
                                            maxBodyBytes: configuration.limits.maxBodyBytes, allowance: admitted.bodyAllowance) {
            respond(refusal, to: head, close: true)
        }
    }

    /// The body's deadline, from its pace: the next wait, the whole-body deadline, or the minimum rate.
    private mutating func armBodyTimer() {
        deadline = now + bodyPace.timeLeft(elapsed: now - bodyStarted, received: bodyReceived).0
    }

    private mutating func finishRequest() {
        guard case .readingBody(let head, let destination) = state else { return }
        currentBodyBytes = requestBody.bytes.count
        deadline = nil
        switch destination {
        case .problem(let response):
            respond(response, to: head, close: false)
        case .handler(let admitted):
            state = .handling(head)
            reading = .watching
            actions.append(.runHandler(admitted.handler, HTTPRequest(head: head, body: requestBody.bytes)))
        }
        requestBody = RequestBody()
    }

    // MARK: Writing

    /// Hands over the final response to `head` (nil: unreadable) and releases the request: its body, and
    /// with the state its ticket and allowance, whether or not its handler ever ran.
    private mutating func respond(_ response: HTTPResponse, to head: RequestHead?, close mustClose: Bool) {
        var response = response
        RequestID.stamp(&response, answering: head ?? currentHead)
        actions.append(.observe(ResponseRecord(response, answering: head, method: currentHead?.method, route: currentRoute,
                                               duration: now - requestStarted, requestBodyBytes: currentBodyBytes,
                                               applicationProtocol: .http1_1)))
        (currentHead, currentRoute, currentBodyBytes) = (nil, nil, 0)
        requestBody = RequestBody()
        let keepAlive = !mustClose && !draining && head.map(Self.wantsKeepAlive) == true
            && response.headers["Connection"]?.lowercased() != "close"
        state = .writingResponse(closeAfter: !keepAlive)
        // What arrives now waits in the socket until the response is out. Watching pauses only once bytes
        // do arrive, which spares the common case a pause and resume per request.
        if reading == .reading { reading = .watching }
        actions.append(.writeResponse(response, head: head, keepAlive: keepAlive))
    }

    /// HTTP/1.1 keeps the connection unless "close" is listed; 1.0 closes unless "keep-alive" is (RFC 9112 §9.3).
    private static func wantsKeepAlive(_ head: RequestHead) -> Bool {
        let options = head.headers.values("Connection").flatMap { $0.split(separator: ",") }
            .map { $0.trimmingSpacesAndTabs().lowercased() }
        return head.version == .http1_1 ? !options.contains("close") : options.contains("keep-alive")
    }

    private mutating func writeCompleted() {
        switch state {
        case .writingResponse(let closeAfter): responseWritten(closeAfter: closeAfter)
        case .readingBody: armBodyTimer()  // a 100 Continue went out
        case .idle, .readingHead, .handling, .lingering, .closed: break
        }
    }

    private mutating func responseWritten(closeAfter: Bool) {
        answeredRequests += 1
        if closeAfter {
            state = .lingering
            actions.append(.shutDownWriteSide)
            deadline = now + configuration.lingerTimeout
            reading = .reading
        } else if draining {
            close()
        } else {
            state = .idle
            deadline = now + configuration.idleTimeout
            reading = .reading
            if parser.hasBufferedBytes {  // a pipelined request
                beginHead()
                processInput()
            }
        }
    }

    // MARK: Timeouts and closing

    private mutating func timerFired() {
        guard let deadline else { return }
        guard now >= deadline else {
            actions.append(.armTimer(deadline))  // the timer was set for an earlier deadline since moved on
            return
        }
        self.deadline = nil
        if isWriteBlocked {
            close()  // the peer stopped reading
            return
        }
        switch state {
        case .idle, .lingering:
            close()
        case .readingHead:
            respond(ProblemDetails.response(status: 408, detail: "the request head did not arrive in time"),
                    to: nil, close: true)
        case .readingBody:
            let lateness = bodyPace.timeLeft(elapsed: now - bodyStarted, received: bodyReceived).1
            respond(ProblemDetails.response(status: 408, detail: bodyPace.detail(lateness)), to: nil, close: true)
        case .handling, .writingResponse, .closed:
            break
        }
    }

    /// Closes at once, cancelling a running handler; the request's ticket and body go with the state.
    private mutating func close() {
        if case .handling = state { actions.append(.cancelHandler) }
        state = .closed
        deadline = nil
        requestBody = RequestBody()
        actions.append(.close)
    }
}
