import Dispatch
import Threading

/// One accepted socket, run by a `ConnectionStateMachine` (HTTP/1.1) or an `HTTP2ConnectionMachine`: this
/// class owns the descriptor, its read and write sources, the timer and the handlers' tasks, reports what
/// they find to the machine as events, and performs the machine's actions. It decides nothing itself.
///
/// HTTP/2 is chosen by ALPN over TLS, and on a cleartext connection by the client preface its first bytes
/// carry (h2c by prior knowledge); until those bytes decide, they are held back from the HTTP/1.1 machine.
///
/// With TLS, the handshake comes first, on the same sources and timer (its own timeout), and the machine
/// starts once it is done; then the bytes go through the TLS session (`Transport`). Which source is resumed
/// follows from what the reading mode and the transport wait for: a TLS read may wait for writability and a
/// TLS write for readability, and input OpenSSL already holds is read without waiting for the socket.
///
/// `@unchecked Sendable`: every mutable property is read and written only on `queue` (a serial queue);
/// the dispatch sources deliver their events there, and handler results hop back onto it.
final class Connection: @unchecked Sendable {
    private typealias Machine = ConnectionStateMachine

    let queue: DispatchQueue
    private let descriptor: Int32
    private let transport: Transport
    private let configuration: ServerConfiguration
    private let router: Router
    private let encoder: ResponseEncoder
    private let responseObserver: (@Sendable (ResponseRecord) -> Void)?
    private let tlsObserver: (@Sendable (TLSEvent) -> Void)?
    private let onClose: @Sendable (Connection) -> Void
    private var machine: Machine
    /// Set once the connection speaks HTTP/2; `machine` is then unused.
    private var http2Machine: HTTP2ConnectionMachine?
    /// A cleartext connection's first bytes while they may still be the HTTP/2 client preface; nil once decided.
    private var prefaceCandidate: [UInt8]?
    /// The accept, and after a TLS handshake its end: HTTP/2's first header timeout counts from it.
    private var acceptedAt = ContinuousClock.now
    /// The TLS handshake is under way: the machine has not started.
    private var isHandshaking: Bool {
        didSet { if oldValue && !isHandshaking { onHandshakeEnded() } }
    }
    /// Told once when the handshake ends, however it ends (done, refused, timed out, or the connection closed).
    private let onHandshakeEnded: @Sendable () -> Void

    private var outbound: [UInt8] = []
    private var outboundSent = 0
    /// By HTTP/2 stream; HTTP/1.1's one handler is under 0, which is no stream's id.
    private var handlerTasks: [Int32: Task<Void, Never>] = [:]
    private var isClosed = false

    private let readSource: DispatchSourceRead
    private let writeSource: DispatchSourceWrite
    private let timer: DispatchSourceTimer
    /// What the read source does when the socket is readable.
    private var readingMode = Machine.ReadingMode.paused
    /// What the last read (or the handshake) waits for: TLS may need to write before it can read.
    private var readWaitsFor = Readiness.readable
    /// What written bytes wait for, nil when none wait: room in the socket, or for TLS maybe input.
    private var writeWaitsFor: Readiness?
    private var isReadSourceResumed = false
    private var isWriteSourceResumed = false
    /// Sources not yet cancelled; the descriptor is closed when none is left.
    private var openSources = 2
    /// When the timer source is set to fire; never after the machine's deadline, but maybe before.
    private var timerFireTime = DispatchTime.distantFuture

    /// `tls`: the session to hand-shake on the descriptor, nil for plain HTTP.
    init(descriptor: Int32, tls: TLSSession?, queue: DispatchQueue, configuration: ServerConfiguration, router: Router,
         responseObserver: (@Sendable (ResponseRecord) -> Void)?, tlsObserver: (@Sendable (TLSEvent) -> Void)?,
         onHandshakeEnded: @escaping @Sendable () -> Void, onClose: @escaping @Sendable (Connection) -> Void) {
        self.descriptor = descriptor
        transport = tls.map { .tls($0, descriptor: descriptor) } ?? .plain(descriptor: descriptor)
        isHandshaking = tls != nil
        prefaceCandidate = tls == nil && configuration.http2 != nil ? [] : nil
        self.queue = queue
        self.configuration = configuration
        self.router = router
        self.responseObserver = responseObserver
        self.tlsObserver = tlsObserver
        self.onHandshakeEnded = onHandshakeEnded
        self.onClose = onClose
        encoder = ResponseEncoder(serverName: configuration.serverName, gzipMinimumBytes: configuration.gzipMinimumBytes)
        machine = ConnectionStateMachine(configuration: configuration, router: router, acceptedAt: .now)
        readSource = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
        writeSource = DispatchSource.makeWriteSource(fileDescriptor: descriptor, queue: queue)
        timer = DispatchSource.makeTimerSource(queue: queue)
        readSource.setEventHandler { self.readable() }
        writeSource.setEventHandler { self.writable() }
        timer.setEventHandler { self.timerFired() }
        // The descriptor may be closed only once neither source watches it any more.
        let sourceCancelled = {
            self.openSources -= 1
            if self.openSources == 0 { Socket.close(self.descriptor) }
        }
        readSource.setCancelHandler(handler: sourceCancelled)
        writeSource.setCancelHandler(handler: sourceCancelled)
        // Active from the start (unscheduled, it never fires), so that a close before `start` can cancel it.
        timer.activate()
    }

    /// Call on `queue`, once.
    func start() {
        dispatchPrecondition(condition: .onQueue(queue))
        if isHandshaking {
            arm(acceptedAt + (configuration.tls?.handshakeTimeout ?? .seconds(10)))
            continueHandshake()
        } else {
            receive([.started])
        }
    }

    /// Shutdown has begun: close now if no request is in progress, otherwise after its response (HTTP/2:
    /// GOAWAY, and the streams in progress finish).
    func beginDrain() {
        dispatchPrecondition(condition: .onQueue(queue))
        if http2Machine != nil { receiveHTTP2([.drainBegan]) } else { receive([.drainBegan]) }
    }

    /// The drain timeout passed: close whatever is in progress.
    func forceClose() {
        dispatchPrecondition(condition: .onQueue(queue))
        if http2Machine != nil { receiveHTTP2([.drainTimedOut]) } else { receive([.drainTimedOut]) }
    }

    /// Feeds `events` to the machine and performs its actions. What performing an action finds at once (a
    /// write that completes or blocks) is fed after the rest of that event's actions, which the machine
    /// decided before it.
    private func receive(_ events: [Machine.Event]) {
        var pending = events[...]
        while let event = pending.popFirst() {
            var found: [Machine.Event] = []
            for action in machine.receive(event, at: .now) {
                perform(action, reporting: &found)
            }
            pending.append(contentsOf: found)
        }
    }

    private func perform(_ action: Machine.Action, reporting found: inout [Machine.Event]) {
        guard !isClosed else { return }
        switch action {
        case .setReading(let mode):
            setReading(mode)
        case .writeContinue:
            outbound.append(contentsOf: "HTTP/1.1 100 Continue\r\n\r\n".utf8)
            found.append(Self.http1Event(flush()))
        case .writeResponse(let response, let head, let keepAlive):
            outbound.append(contentsOf: encoder.encode(response, for: head.map(ResponseEncoder.RequestContext.init),
                                                       keepAlive: keepAlive, requestVersion: head?.version ?? .http1_1))
            found.append(Self.http1Event(flush()))
        case .armTimer(let deadline):
            arm(deadline)
        case .runHandler(let handler, let request):
            runHandler(handler, request, stream: Self.http1Handler) { self.receive([.handlerFinished($0)]) }
        case .cancelHandler:
            cancelHandler(stream: Self.http1Handler)
        case .observe(let record):
            observe(record)
        case .shutDownWriteSide:
            transport.shutdownWrites()
        case .close:
            close()
        }
    }

    private static let http1Handler: Int32 = 0

    private static func http1Event(_ outcome: FlushOutcome) -> Machine.Event {
        switch outcome {
        case .completed: .writeCompleted
        case .blocked: .writeBlocked
        case .failed: .peerClosed
        }
    }

    // MARK: HTTP/2

    private func startHTTP2(receiving initialBytes: [UInt8]) {
        guard let http2 = configuration.http2,
              let made = HTTP2ConnectionMachine(configuration: configuration, http2: http2, router: router, acceptedAt: acceptedAt)
        else { return close() }
        http2Machine = made
        setReading(.reading)
        receiveHTTP2([.started] + (initialBytes.isEmpty ? [] : [.bytesRead(initialBytes)]))
    }

    private static func http2Event(_ outcome: FlushOutcome) -> HTTP2ConnectionMachine.Event {
        switch outcome {
        case .completed: .writeCompleted
        case .blocked: .writeBlocked
        case .failed: .peerClosed
        }
    }

    private func receiveHTTP2(_ events: [HTTP2ConnectionMachine.Event]) {
        var pending = events[...]
        while let event = pending.popFirst() {
            guard let actions = http2Machine?.receive(event, at: .now) else { return }
            for action in actions {
                guard !isClosed else { return }
                switch action {
                case .write(let bytes):
                    outbound.append(contentsOf: bytes)
                    pending.append(Self.http2Event(flush()))
                case .armTimer(let deadline):
                    arm(deadline)
                case .runHandler(let stream, let handler, let request):
                    runHandler(handler, request, stream: stream) { self.receiveHTTP2([.handlerFinished(stream: stream, $0)]) }
                case .cancelHandler(let stream):
                    cancelHandler(stream: stream)
                case .observe(let record):
                    observe(record)
                case .close:
                    close()
                }
            }
        }
    }

    // MARK: Handlers

    /// Runs `handler` in a task of its own; `finished` gets its result on the queue.
    private func runHandler(_ handler: @escaping HTTPHandler, _ request: HTTPRequest, stream: Int32,
                            finished: @escaping @Sendable (Result<HTTPResponse, any Error>) -> Void) {
        var request = request
        request.clientCertificateSubject = clientSubject
        handlerTasks[stream] = Task {
            let result: Result<HTTPResponse, any Error>
            do {
                result = .success(try await handler(request))
            } catch {
                result = .failure(error)
            }
            self.queue.async {
                guard self.handlerTasks.removeValue(forKey: stream) != nil else { return }  // cancelled meanwhile
                finished(result)
            }
        }
    }

    private func cancelHandler(stream: Int32) {
        handlerTasks.removeValue(forKey: stream)?.cancel()
    }

    private func observe(_ record: ResponseRecord) {
        var record = record
        record.clientCertificateSubject = clientSubject
        responseObserver?(record)
    }

    private var clientSubject: String? {
        if case .tls(let session, _) = transport { session.clientSubject } else { nil }
    }

    // MARK: The TLS handshake

    private func continueHandshake() {
        guard case .tls(let session, _) = transport else { return }
        switch session.handshake() {
        case .completed:
            isHandshaking = false
            readWaitsFor = .readable
            tlsObserver?(.handshakeCompleted(TLSHandshake(
                protocolVersion: session.protocolVersion, cipher: session.cipher, applicationProtocol: session.applicationProtocol,
                clientSubject: session.clientSubject, duration: .now - acceptedAt)))
            // The request's timeouts count from here: the handshake had its own.
            if session.applicationProtocol == .h2 {
                acceptedAt = .now
                startHTTP2(receiving: [])
            } else {
                machine = Machine(configuration: configuration, router: router, acceptedAt: .now)
                receive([.started])
            }
        case .wouldBlock(let readiness):
            readWaitsFor = readiness
            updateSources()
        case .failed(let reason, let peerClosed):
            tlsObserver?(.handshakeFailed(TLSHandshakeFailure(kind: peerClosed ? .closed : .refused, reason: reason,
                                                              duration: .now - acceptedAt)))
            close()
        }
    }

    // MARK: Sources

    /// Resumes the sources whose readiness something waits for and suspends the others.
    private func updateSources() {
        let waitsForInput = isHandshaking || readingMode != .paused
        let wantsReadable = (waitsForInput && readWaitsFor == .readable) || writeWaitsFor == .readable
        let wantsWritable = (waitsForInput && readWaitsFor == .writable) || writeWaitsFor == .writable
        if wantsReadable != isReadSourceResumed {
            isReadSourceResumed = wantsReadable
            wantsReadable ? readSource.resume() : readSource.suspend()  // the first resume activates the source
        }
        if wantsWritable != isWriteSourceResumed {
            isWriteSourceResumed = wantsWritable
            wantsWritable ? writeSource.resume() : writeSource.suspend()
        }
    }

    private func readable() {
        guard !isClosed else { return }
        if isHandshaking { return continueHandshake() }
        if writeWaitsFor == .readable { retryWrite() }
        if readWaitsFor == .readable { readInput() }
    }

    private func writable() {
        guard !isClosed else { return }
        if isHandshaking { return continueHandshake() }
        if readWaitsFor == .writable { readInput() }
        if writeWaitsFor == .writable { retryWrite() }
    }

    // MARK: Reading

    private func readInput() {
        guard !isClosed else { return }
        switch readingMode {
        case .reading:
            let event: Machine.Event? = withUnsafeTemporaryAllocation(byteCount: 64 * 1024, alignment: 1) { buffer in
                switch transport.receive(into: buffer) {
                case .transferred(let count):
                    readWaitsFor = .readable
                    return .bytesRead(Array(UnsafeRawBufferPointer(rebasing: buffer[..<count])))
                case .wouldBlock(let readiness):
                    readWaitsFor = readiness
                    updateSources()
                    return nil
                case .endOfStream, .failed:
                    return .peerClosed
                }
            }
            if let event { deliver(event) }
        case .watching:
            switch transport.peek() {
            case .transferred:
                readWaitsFor = .readable
                receive([.inputWaiting])
            case .endOfStream, .failed:
                receive([.peerHungUp])
            case .wouldBlock(let readiness):
                readWaitsFor = readiness
                updateSources()
            }
        case .paused:
            return  // an event already under way when reading paused
        }
        readBufferedInput()
    }

    /// Hands what reading found to the protocol's machine, deciding the protocol of a cleartext connection
    /// from its first bytes.
    private func deliver(_ event: Machine.Event) {
        if http2Machine != nil {
            if case .bytesRead(let bytes) = event { receiveHTTP2([.bytesRead(bytes)]) } else { receiveHTTP2([.peerClosed]) }
            return
        }
        guard var candidate = prefaceCandidate, case .bytesRead(let bytes) = event else { return receive([event]) }
        candidate.append(contentsOf: bytes)
        switch ClientPreface.match(candidate) {
        case .undecided:
            prefaceCandidate = candidate
        case .http2:
            prefaceCandidate = nil
            startHTTP2(receiving: candidate)
        case .http1:
            prefaceCandidate = nil
            receive([.bytesRead(candidate)])
        }
    }

    /// Input that TLS already holds raises no readiness event: it is read in a turn of its own.
    private func readBufferedInput() {
        guard !isClosed, readingMode != .paused, transport.hasBufferedInput else { return }
        queue.async { self.readInput() }
    }

    private func setReading(_ mode: Machine.ReadingMode) {
        readingMode = mode
        updateSources()
        readBufferedInput()
    }

    // MARK: Writing

    private enum FlushOutcome {
        case completed, blocked, failed
    }

    /// Sends what it can without blocking; when blocked, waits for the readiness the transport needs.
    private func flush() -> FlushOutcome {
        while outboundSent < outbound.count {
            let result = outbound.withUnsafeBytes { transport.send(UnsafeRawBufferPointer(rebasing: $0[outboundSent...])) }
            switch result {
            case .transferred(let count):
                outboundSent += count
            case .wouldBlock(let readiness):
                if writeWaitsFor != readiness {
                    writeWaitsFor = readiness
                    updateSources()
                }
                return .blocked
            case .endOfStream, .failed:
                return .failed
            }
        }
        outbound.removeAll(keepingCapacity: outbound.capacity <= 64 * 1024)
        outboundSent = 0
        if writeWaitsFor != nil {
            writeWaitsFor = nil
            updateSources()
        }
        return .completed
    }

    private func retryWrite() {
        let outcome = flush()
        if http2Machine != nil { receiveHTTP2([Self.http2Event(outcome)]) } else { receive([Self.http1Event(outcome)]) }
    }

    // MARK: Timer and closing

    // Every request moves the deadline several times, and rescheduling a dispatch timer is not free, so the
    // timer is only moved earlier; when it fires before the machine's deadline, the machine arms it again.
    private func arm(_ deadline: ContinuousClock.Instant) {
        let fireTime = DispatchTime.now() + (deadline - .now).dispatchInterval
        if fireTime < timerFireTime {
            timerFireTime = fireTime
            timer.schedule(deadline: fireTime)
        }
    }

    private func timerFired() {
        timerFireTime = .distantFuture
        if isHandshaking {
            tlsObserver?(.handshakeFailed(TLSHandshakeFailure(kind: .timedOut, reason: "the handshake did not finish in time",
                                                              duration: .now - acceptedAt)))
            close()
            return
        }
        if http2Machine != nil { receiveHTTP2([.timerFired]) } else { receive([.timerFired]) }
    }

    private func close() {
        if case .tls(let session, _) = transport { session.sendCloseNotify() }
        isClosed = true
        isHandshaking = false
        outbound = []
        timer.cancel()
        // A suspended or never-activated source runs its cancel handler only once resumed.
        if !isReadSourceResumed { readSource.resume() }
        if !isWriteSourceResumed { writeSource.resume() }
        readSource.cancel()
        writeSource.cancel()
        onClose(self)
    }
}
