import Dispatch

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
        /// The handler runs. Reading is paused, so pipelined requests wait in the socket, in order.
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

    private var parser: RequestParser
    private var phase = Phase.awaitingRequest
    private var requestBody: [UInt8] = []
    private var outbound: [UInt8] = []
    private var outboundSent = 0
    private var draining = false
    private var isClosed = false

    private let readSource: DispatchSourceRead
    private let writeSource: DispatchSourceWrite
    private let timer: DispatchSourceTimer
    // Sources start inactive; resume() activates or un-suspends them, and these track which is in effect.
    private var isReading = false
    private var isWaitingToWrite = false
    private var openSources = 2

    init(descriptor: Int32, queue: DispatchQueue, configuration: ServerConfiguration, router: Router,
         onClose: @escaping @Sendable (Connection) -> Void) {
        self.descriptor = descriptor
        self.queue = queue
        self.configuration = configuration
        self.router = router
        self.onClose = onClose
        encoder = ResponseEncoder(serverName: configuration.serverName, gzipMinimumBytes: configuration.gzipMinimumBytes)
        parser = RequestParser(limits: configuration.limits)
        readSource = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
        writeSource = DispatchSource.makeWriteSource(fileDescriptor: descriptor, queue: queue)
        timer = DispatchSource.makeTimerSource(queue: queue)
    }

    /// Call on `queue`, once.
    func start() {
        dispatchPrecondition(condition: .onQueue(queue))
        readSource.setEventHandler { self.readAvailable() }
        writeSource.setEventHandler { self.flush() }
        timer.setEventHandler { self.deadlinePassed() }
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
            arm(configuration.headerTimeout)
        case .readingBody:
            arm(configuration.bodyTimeout)  // the body timeout bounds each wait, not the whole body
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
                return
            case .head(let head)?:
                beginRequest(head)
            case .body(let piece)?:
                if case .readingBody(_, .handler) = phase { requestBody.append(contentsOf: piece) }
            case .end?:
                finishRequest()
            }
        }
    }

    private func beginRequest(_ head: RequestHead) {
        let resolution = router.resolve(method: head.method, path: head.path)
        // RFC 9110 §10.1.1: Expect from an HTTP/1.0 client is ignored.
        let expectation = head.version == .http1_1 ? head.headers["Expect"]?.lowercased() : nil
        let hasBody = parser.isChunked || (parser.expectedBodyLength ?? 0) > 0
        if let expectation, expectation != "100-continue" {
            respond(ProblemDetails.response(status: 417, detail: "only the 100-continue expectation is supported"),
                    to: head, close: true)
            return
        }
        if expectation != nil && hasBody {
            switch resolution {
            case .handler:
                // A client that has already started sending the body needs no invitation.
                if !parser.hasBufferedBytes { enqueue(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) }
            case .problem(let response):
                // Answered before the body is sent, so the connection cannot carry another request.
                respond(response, to: head, close: true)
                return
            }
        }
        requestBody = []
        phase = .readingBody(head, resolution)
        arm(configuration.bodyTimeout)
    }

    private func finishRequest() {
        guard case .readingBody(let head, let resolution) = phase else { return }
        let request = HTTPRequest(head: head, body: requestBody)
        requestBody = []
        phase = .handling
        disarm()
        pauseReading()
        switch resolution {
        case .problem(let response):
            respond(response, to: head, close: false)
        case .handler(let handler):
            Task {
                let response: HTTPResponse
                do {
                    response = try await handler(request)
                } catch {
                    response = ProblemDetails.response(status: 500, detail: "the request could not be processed")
                }
                self.queue.async { self.respond(response, to: head, close: false) }
            }
        }
    }

    // MARK: Writing

    private func respond(_ response: HTTPResponse, to head: RequestHead?, close mustClose: Bool) {
        guard !isClosed else { return }
        let keepAlive = !mustClose && !draining && head.map(Self.wantsKeepAlive) == true
            && response.headers["Connection"]?.lowercased() != "close"
        enqueue(encoder.encode(response, for: head.map(ResponseEncoder.RequestContext.init), keepAlive: keepAlive,
                               requestVersion: head?.version ?? .http1_1))
        phase = .writing(closeAfter: !keepAlive)
        pauseReading()
        flush()
    }

    /// HTTP/1.1 keeps the connection unless "close" is listed; 1.0 closes unless "keep-alive" is (RFC 9112 §9.3).
    private static func wantsKeepAlive(_ head: RequestHead) -> Bool {
        let options = head.headers.values("Connection").flatMap { $0.split(separator: ",") }
            .map { $0.trimmingSpacesAndTabs().lowercased() }
        return head.version == .http1_1 ? !options.contains("close") : options.contains("keep-alive")
    }

    private func enqueue(_ bytes: [UInt8]) {
        outbound.append(contentsOf: bytes)
        flush()
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
        case .readingBody: arm(configuration.bodyTimeout)  // a 100 Continue went out
        default: break
        }
    }

    private func responseWritten(closeAfter: Bool) {
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
            respond(ProblemDetails.response(status: 408, detail: "the request body did not arrive in time"),
                    to: nil, close: true)
        case .handling, .writing:
            break
        }
    }

    private func arm(_ timeout: Duration) {
        timer.schedule(deadline: .now() + timeout.dispatchInterval)
    }

    private func disarm() {
        timer.schedule(deadline: .distantFuture)
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
        timer.cancel()
        // A suspended or never-activated source runs its cancel handler only once resumed.
        resumeReading()
        if !isWaitingToWrite { writeSource.resume() }
        readSource.cancel()
        writeSource.cancel()
        onClose(self)
    }
}
