import Dispatch
import Threading

/// One accepted socket, run by a `ConnectionStateMachine`: this class owns the descriptor, its read and
/// write sources, the timer and the handler's task, reports what they find to the machine as events, and
/// performs the machine's actions. It decides nothing itself.
///
/// `@unchecked Sendable`: every mutable property is read and written only on `queue` (a serial queue);
/// the dispatch sources deliver their events there, and handler results hop back onto it.
final class Connection: @unchecked Sendable {
    private typealias Machine = ConnectionStateMachine

    let queue: DispatchQueue
    private let descriptor: Int32
    private let encoder: ResponseEncoder
    private let responseObserver: (@Sendable (ResponseRecord) -> Void)?
    private let onClose: @Sendable (Connection) -> Void
    private var machine: Machine

    private var outbound: [UInt8] = []
    private var outboundSent = 0
    private var handlerTask: Task<Void, Never>?
    private var isClosed = false

    private let readSource: DispatchSourceRead
    private let writeSource: DispatchSourceWrite
    private let timer: DispatchSourceTimer
    /// What the read source does when the socket is readable; it is suspended while paused.
    private var readingMode = Machine.ReadingMode.paused
    /// Whether the write source is resumed: only while written bytes wait for room in the socket.
    private var isWaitingToWrite = false
    /// Sources not yet cancelled; the descriptor is closed when none is left.
    private var openSources = 2
    /// When the timer source is set to fire; never after the machine's deadline, but maybe before.
    private var timerFireTime = DispatchTime.distantFuture

    init(descriptor: Int32, queue: DispatchQueue, configuration: ServerConfiguration, router: Router,
         responseObserver: (@Sendable (ResponseRecord) -> Void)?, onClose: @escaping @Sendable (Connection) -> Void) {
        self.descriptor = descriptor
        self.queue = queue
        self.responseObserver = responseObserver
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
        receive([.started])
    }

    /// Shutdown has begun: close now if no request is in progress, otherwise after its response.
    func beginDrain() {
        dispatchPrecondition(condition: .onQueue(queue))
        receive([.drainBegan])
    }

    /// The drain timeout passed: close whatever is in progress.
    func forceClose() {
        dispatchPrecondition(condition: .onQueue(queue))
        receive([.drainTimedOut])
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
            flush(reporting: &found)
        case .writeResponse(let response, let head, let keepAlive):
            outbound.append(contentsOf: encoder.encode(response, for: head.map(ResponseEncoder.RequestContext.init),
                                                       keepAlive: keepAlive, requestVersion: head?.version ?? .http1_1))
            flush(reporting: &found)
        case .armTimer(let deadline):
            arm(deadline)
        case .runHandler(let handler, let request):
            handlerTask = Task {
                let result: Result<HTTPResponse, any Error>
                do {
                    result = .success(try await handler(request))
                } catch {
                    result = .failure(error)
                }
                self.queue.async {
                    self.handlerTask = nil
                    self.receive([.handlerFinished(result)])
                }
            }
        case .cancelHandler:
            handlerTask?.cancel()
            handlerTask = nil
        case .observe(let record):
            responseObserver?(record)
        case .shutDownWriteSide:
            Socket.shutdownWrites(descriptor)
        case .close:
            close()
        }
    }

    // MARK: Reading

    private func readable() {
        guard !isClosed else { return }
        switch readingMode {
        case .reading:
            let event: Machine.Event? = withUnsafeTemporaryAllocation(byteCount: 64 * 1024, alignment: 1) { buffer in
                switch Socket.receive(descriptor, into: buffer) {
                case .transferred(let count): .bytesRead(Array(UnsafeRawBufferPointer(rebasing: buffer[..<count])))
                case .wouldBlock: nil
                case .endOfStream, .failed: .peerClosed
                }
            }
            if let event { receive([event]) }
        case .watching:
            switch Socket.peek(descriptor) {
            case .transferred: receive([.inputWaiting])
            case .endOfStream, .failed: receive([.peerHungUp])
            case .wouldBlock: break
            }
        case .paused:
            break  // an event already under way when reading paused
        }
    }

    private func setReading(_ mode: Machine.ReadingMode) {
        let wasActive = readingMode != .paused
        readingMode = mode
        switch (wasActive, mode != .paused) {
        case (false, true): readSource.resume()  // the first resume activates the source
        case (true, false): readSource.suspend()
        case (false, false), (true, true): break
        }
    }

    // MARK: Writing

    /// Sends what it can without blocking; on a full socket buffer, waits for writability.
    private func flush(reporting found: inout [Machine.Event]) {
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
                found.append(.writeBlocked)
                return
            case .endOfStream, .failed:
                found.append(.peerClosed)
                return
            }
        }
        outbound.removeAll(keepingCapacity: outbound.capacity <= 64 * 1024)
        outboundSent = 0
        if isWaitingToWrite {
            isWaitingToWrite = false
            writeSource.suspend()
        }
        found.append(.writeCompleted)
    }

    private func writable() {
        guard !isClosed else { return }
        var found: [Machine.Event] = []
        flush(reporting: &found)
        receive(found)
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
        receive([.timerFired])
    }

    private func close() {
        isClosed = true
        outbound = []
        timer.cancel()
        // A suspended or never-activated source runs its cancel handler only once resumed.
        if readingMode == .paused { readSource.resume() }
        if !isWaitingToWrite { writeSource.resume() }
        readSource.cancel()
        writeSource.cancel()
        onClose(self)
    }
}
