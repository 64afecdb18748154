import Dispatch
import Threading

/// One accepted socket: reads bytes into the parser, runs one handler at a time, writes responses in
/// request order, and enforces the timeouts of `ServerConfiguration`.
///
/// `@unchecked Sendable`: every mutable property is read and written only on `queue` (a serial queue);
/// the dispatch sources deliver their events there, and handler results hop back onto it.
final class Connection: @unchecked Sendable {
    private enum Phase {
        /// Between requests: no byte of the next one yet. Times out silently (idle, or header timeout
        /// for a connection that never sent anything).
        case awaitingRequest
        /// Bytes of a request head have arrived; the whole head must follow before the header deadline.
        case readingHead
        /// The head is parsed; the body is read into `requestBody` (or discarded, for a problem answer).
        case readingBody(RequestHead, Router.Resolution)
        /// The handler runs. Nothing more is read, so pipelined requests wait in the socket, in order.
        case handling
        case writing(closeAfter: Bool)
        /// The final response is out and our side shut; unread input is discarded until EOF or the linger timeout.
        case lingering
    }

    let queue: DispatchQueue
    private let descriptor: Int32
    private let configuration: ServerConfiguration
    private let router: Router
    private let encoder: ResponseEncoder
    private let onClose: @Sendable (Connection) -> Void
    private let responseObserver: (@Sendable (ResponseRecord) -> Void)?

    private var parser: RequestParser
    private var phase = Phase.awaitingRequest
    private var requestBody: [UInt8] = []
    /// The admitted request's claim on room for its body, and how much of it has been granted.
    private var bodyAllowance: (any BodyAllowance)?
    private var grantedBodyBytes = 0
    /// When the current body's head was parsed, and its bytes so far (also those of a body being discarded).
    private var bodyStarted = ContinuousClock.now
    private var bodyReceived = 0
    private let bodyPace: BodyPace
    private var outbound: [UInt8] = []
    private var outboundSent = 0
    /// Responses fully written; before the first, the header deadline runs from the accept.
    private var answeredRequests = 0
    private var draining = false
    private var isClosed = false
    /// The admitted request's ticket, from its admission check until it goes to the handler with the request.
    private var admissionTicket: (any Sendable)?
    /// The running handler: cancelled when the peer goes away or the connection is closed.
    private var handlerTask: Task<Void, Never>?
    /// The request in progress, for the response observer: when its first byte came (or the accept, for
    /// the first request), its head once parsed, its route, and its body's size.
    private var requestStarted = ContinuousClock.now
    private var currentHead: RequestHead?
    private var currentRoute: String?
    private var currentBodyBytes = 0

    private let readSource: DispatchSourceRead
    private let writeSource: DispatchSourceWrite
    private let timer: DispatchSourceTimer
    // Sources start inactive; resume() activates or un-suspends them, and these track which is in effect.
    private var isReading = false
    private var isWaitingToWrite = false
    /// Sources not yet cancelled; the descriptor is closed when none is left.
    private var openSources = 2
    /// When the current phase's timeout expires; nil while none runs (a handler at work).
    private var deadline: DispatchTime?
    /// When the timer source is set to fire; it never fires after `deadline`, but may before.
    private var timerFireTime = DispatchTime.distantFuture

    init(descriptor: Int32, queue: DispatchQueue, configuration: ServerConfiguration, router: Router,
         responseObserver: (@Sendable (ResponseRecord) -> Void)?, onClose: @escaping @Sendable (Connection) -> Void) {
        self.descriptor = descriptor
        self.queue = queue
        self.configuration = configuration
        self.router = router
        self.responseObserver = responseObserver
        self.onClose = onClose
        encoder = ResponseEncoder(serverName: configuration.serverName, gzipMinimumBytes: configuration.gzipMinimumBytes)
        parser = RequestParser(limits: configuration.limits)
        bodyPace = BodyPace(timeout: configuration.bodyTimeout, deadline: configuration.bodyDeadline,
                            minimumBytesPerSecond: configuration.bodyMinimumBytesPerSecond)
        readSource = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
        writeSource = DispatchSource.makeWriteSource(fileDescriptor: descriptor, queue: queue)
        timer = DispatchSource.makeTimerSource(queue: queue)
    }

    /// Call on `queue`, once.
    func start() {
        dispatchPrecondition(condition: .onQueue(queue))
        readSource.setEventHandler { self.readAvailable() }
        writeSource.setEventHandler { self.flush() }
        timer.setEventHandler { self.timerFired() }
        // The descriptor may be closed only once neither source watches it any more.
        let sourceCancelled = {
            self.openSources -= 1
            if self.openSources == 0 { Socket.close(self.descriptor) }
        }
        readSource.setCancelHandler(handler: sourceCancelled)
        writeSource.setCancelHandler(handler: sourceCancelled)
        timer.activate()
        arm(configuration.headerTimeout)
        resumeReading()
    }

    /// Shutdown has begun: close now if no request is in progress, otherwise after its response.
    func beginDrain() {
        dispatchPrecondition(condition: .onQueue(queue))
        draining = true
        if case .awaitingRequest = phase { close() }
    }

    /// The drain timeout passed: close whatever is in progress.
    func forceClose() {
        dispatchPrecondition(condition: .onQueue(queue))
        close()
    }

    // MARK: Reading

    private func readAvailable() {
        guard !isClosed else { return }
        switch phase {
        case .handling:
            // A peer that closes (or resets) while its handler works will never read the answer: cancel the
            // work. A client that half-closes after its request (shutdown(SHUT_WR)) looks the same and is
            // treated as gone too; HTTP clients and proxies (curl, nginx) do not do that.
            switch Socket.peek(descriptor) {
            case .endOfStream, .failed: close()
            case .transferred: pauseReading()  // a pipelined request: it waits in the socket, as below
            case .wouldBlock: break
            }
            return
        case .writing:
            // One request at a time: what arrives now waits in the socket until the response is out. Pausing
            // only once bytes do arrive spares the common case a suspend and resume per request.
            pauseReading()
            return
        case .awaitingRequest, .readingHead, .readingBody, .lingering:
            break
        }
        let result = withUnsafeTemporaryAllocation(byteCount: 64 * 1024, alignment: 1) { buffer in
            let result = Socket.receive(descriptor, into: buffer)
            if case .transferred(let count) = result, !isLingering {
                parser.feed(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
            }
            return result
        }
        switch result {
        case .wouldBlock:
            return
        case .endOfStream, .failed:
            // Reading is paused while a response is prepared, so a request is never half-answered here.
            close()
            return
        case .transferred:
            break
        }
        switch phase {
        case .awaitingRequest:
            phase = .readingHead
            if answeredRequests > 0 {
                requestStarted = .now
                arm(configuration.headerTimeout)
            }
        default:
            break
        }
        processInput()
    }

    private var isLingering: Bool {
        if case .lingering = phase { return true }
        return false
    }

    /// Takes parser events until a request is complete (then its handler runs), more bytes are needed,
    /// or the request is refused.
    private func processInput() {
        while true {
            switch phase {
            case .awaitingRequest, .readingHead, .readingBody: break
            case .handling, .writing, .lingering: return
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
                if case .readingBody = phase { armBodyTimer() }
                return
            case .head(let head)?:
                beginRequest(head)
            case .body(let piece)?:
                bodyReceived += piece.count
                guard case .readingBody(let head, .route) = phase else { continue }
                guard makeRoomForBody(requestBody.count + piece.count, head) else { return }
                requestBody.append(contentsOf: piece)
            case .end?:
                finishRequest()
            }
        }
    }

    private func beginRequest(_ head: RequestHead) {
        let resolution = router.resolve(method: head.method, path: head.path)
        currentHead = head
        currentRoute = router.registeredPath(head.path)
        // RFC 9110 §10.1.1: Expect from an HTTP/1.0 client is ignored.
        let expectation = head.version == .http1_1 ? head.headers["Expect"]?.lowercased() : nil
        let hasBody = parser.isChunked || (parser.expectedBodyLength ?? 0) > 0
        if let expectation, expectation != "100-continue" {
            respond(ProblemDetails.response(status: 417, detail: "only the 100-continue expectation is supported"),
                    to: head, close: true)
            return
        }
        if case .route(let route) = resolution, let admission = route.admission {
            switch admission(head, parser.isChunked ? nil : parser.expectedBodyLength ?? 0) {
            case .refuse(let response):
                // Answered before the body is read, so the connection cannot carry another request.
                respond(response, to: head, close: true)
                return
            case .admit(let ticket, let allowance):
                admissionTicket = ticket
                bodyAllowance = allowance
            }
        }
        if expectation != nil && hasBody {
            switch resolution {
            case .route:
                // A client that has already started sending the body needs no invitation.
                if !parser.hasBufferedBytes {
                    outbound.append(contentsOf: "HTTP/1.1 100 Continue\r\n\r\n".utf8)
                    flush()
                }
            case .problem(let response):
                // Answered before the body is sent, so the connection cannot carry another request.
                respond(response, to: head, close: true)
                return
            }
        }
        requestBody = []
        (grantedBodyBytes, bodyReceived, bodyStarted) = (0, 0, .now)
        phase = .readingBody(head, resolution)
        armBodyTimer()
    }

    /// Asks the body's allowance (if any) for room for `needed` bytes when they pass what it granted, and
    /// sizes the buffer to the grant, so that what is held is what was granted. False: refused, answered.
    private func makeRoomForBody(_ needed: Int, _ head: RequestHead) -> Bool {
        guard let bodyAllowance, needed > grantedBodyBytes else { return true }
        let target = nextBodyAllowance(needed: needed, granted: grantedBodyBytes,
                                       declaredLength: parser.isChunked ? nil : parser.expectedBodyLength,
                                       maxBodyBytes: configuration.limits.maxBodyBytes)
        if let refusal = bodyAllowance.extend(to: target) {
            respond(refusal, to: head, close: true)
            return false
        }
        grantedBodyBytes = target
        requestBody.reserveCapacity(target)
        return true
    }

    /// The body's timer, from its pace: the next wait, the whole-body deadline, or the minimum rate.
    private func armBodyTimer() {
        arm(bodyPace.timeLeft(elapsed: .now - bodyStarted, received: bodyReceived).0)
    }

    private func finishRequest() {
        guard case .readingBody(let head, let resolution) = phase else { return }
        let request = HTTPRequest(head: head, body: requestBody, admissionTicket: admissionTicket)
        currentBodyBytes = requestBody.count
        requestBody = []
        admissionTicket = nil
        bodyAllowance = nil
        phase = .handling
        disarm()
        switch resolution {
        case .problem(let response):
            respond(response, to: head, close: false)
        case .route(let route):
            // Reading goes on while the handler runs, to notice a peer that goes away (readAvailable).
            resumeReading()
            handlerTask = Task {
                let response: HTTPResponse
                do {
                    response = try await route.handler(request)
                } catch {
                    response = Self.handlerFailure
                }
                self.queue.async { self.respond(response, to: head, close: false) }
            }
        }
    }

    private static let handlerFailure = ProblemDetails.response(status: 500, detail: "the request could not be processed")

    // MARK: Writing

    private func respond(_ response: HTTPResponse, to head: RequestHead?, close mustClose: Bool) {
        guard !isClosed else { return }
        handlerTask = nil
        admissionTicket = nil  // the request is answered, whether or not its handler ever ran
        bodyAllowance = nil
        requestBody = []
        var response = response
        // The request's id comes back on every answer, also on those the HTTP layer gives itself (a 413 or
        // 408 during the body is answered without the head, which is still known here).
        if response.headers[RequestID.header] == nil, let requestID = (head ?? currentHead).flatMap(RequestID.answering) {
            response.headers.add(RequestID.header, requestID)
        }
        observe(status: response.status, responseBodyBytes: head?.method == "HEAD" ? 0 : response.body.count,
                requestID: response.headers[RequestID.header])
        let keepAlive = !mustClose && !draining && head.map(Self.wantsKeepAlive) == true
            && response.headers["Connection"]?.lowercased() != "close"
        outbound.append(contentsOf: encoder.encode(response, for: head.map(ResponseEncoder.RequestContext.init),
                                                   keepAlive: keepAlive, requestVersion: head?.version ?? .http1_1))
        phase = .writing(closeAfter: !keepAlive)
        flush()
    }

    /// Tells the response observer of a final response, and forgets the request it answered.
    private func observe(status: Int, responseBodyBytes: Int, requestID: String?) {
        if let responseObserver {
            responseObserver(ResponseRecord(
                method: currentHead?.method, route: currentRoute, status: status, duration: .now - requestStarted,
                requestBodyBytes: currentBodyBytes, responseBodyBytes: responseBodyBytes, requestID: requestID))
        }
        (currentHead, currentRoute, currentBodyBytes) = (nil, nil, 0)
    }

    /// HTTP/1.1 keeps the connection unless "close" is listed; 1.0 closes unless "keep-alive" is (RFC 9112 §9.3).
    private static func wantsKeepAlive(_ head: RequestHead) -> Bool {
        let options = head.headers.values("Connection").flatMap { $0.split(separator: ",") }
            .map { $0.trimmingSpacesAndTabs().lowercased() }
        return head.version == .http1_1 ? !options.contains("close") : options.contains("keep-alive")
    }

    /// Sends what it can without blocking; on a full socket buffer, waits for writability under the write timeout.
    private func flush() {
        guard !isClosed else { return }
        while outboundSent < outbound.count {
            let result = outbound.withUnsafeBytes { Socket.send(descriptor, UnsafeRawBufferPointer(rebasing: $0[outboundSent...])) }
            switch result {
            case .transferred(let count):
                outboundSent += count
            case .wouldBlock:
                if !isWaitingToWrite {
                    isWaitingToWrite = true
                    writeSource.resume()
                }
                arm(configuration.writeTimeout)  // re-armed on each bit of progress
                return
            case .endOfStream, .failed:
                close()
                return
            }
        }
        outbound.removeAll(keepingCapacity: outbound.capacity <= 64 * 1024)
        outboundSent = 0
        if isWaitingToWrite {
            isWaitingToWrite = false
            writeSource.suspend()
        }
        switch phase {
        case .writing(let closeAfter): responseWritten(closeAfter: closeAfter)
        case .readingBody: armBodyTimer()  // a 100 Continue went out
        default: break
        }
    }

    private func responseWritten(closeAfter: Bool) {
        answeredRequests += 1
        if closeAfter {
            lingerThenClose()
        } else if draining {
            close()
        } else {
            phase = .awaitingRequest
            arm(configuration.idleTimeout)
            resumeReading()
            if parser.hasBufferedBytes {  // a pipelined request
                phase = .readingHead
                arm(configuration.headerTimeout)
                processInput()
            }
        }
    }

    private func lingerThenClose() {
        phase = .lingering
        Socket.shutdownWrites(descriptor)
        arm(configuration.lingerTimeout)
        resumeReading()
    }

    // MARK: Timeouts and closing

    private func deadlinePassed() {
        guard !isClosed else { return }
        if outboundSent < outbound.count {
            close()  // the peer stopped reading
            return
        }
        switch phase {
        case .awaitingRequest, .lingering:
            close()
        case .readingHead:
            respond(ProblemDetails.response(status: 408, detail: "the request head did not arrive in time"),
                    to: nil, close: true)
        case .readingBody:
            let lateness = bodyPace.timeLeft(elapsed: .now - bodyStarted, received: bodyReceived).1
            respond(ProblemDetails.response(status: 408, detail: bodyPace.detail(lateness)), to: nil, close: true)
        case .handling, .writing:
            break
        }
    }

    // Every request moves the deadline several times, and rescheduling a dispatch timer is not free, so
    // the timer is only moved earlier; when it fires before the current deadline, it is set to that.
    private func arm(_ timeout: Duration) {
        let newDeadline = DispatchTime.now() + timeout.dispatchInterval
        deadline = newDeadline
        if newDeadline < timerFireTime {
            timerFireTime = newDeadline
            timer.schedule(deadline: newDeadline)
        }
    }

    private func disarm() {
        deadline = nil
    }

    private func timerFired() {
        timerFireTime = .distantFuture
        guard let deadline else { return }
        if deadline > .now() {
            timerFireTime = deadline
            timer.schedule(deadline: deadline)
            return
        }
        self.deadline = nil
        deadlinePassed()
    }

    private func resumeReading() {
        guard !isReading else { return }
        isReading = true
        readSource.resume()
    }

    private func pauseReading() {
        guard isReading else { return }
        isReading = false
        readSource.suspend()
    }

    private func close() {
        guard !isClosed else { return }
        isClosed = true
        admissionTicket = nil
        bodyAllowance = nil
        requestBody = []
        handlerTask?.cancel()
        handlerTask = nil
        timer.cancel()
        // A suspended or never-activated source runs its cancel handler only once resumed.
        resumeReading()
        if !isWaitingToWrite { writeSource.resume() }
        readSource.cancel()
        writeSource.cancel()
        onClose(self)
    }
}
