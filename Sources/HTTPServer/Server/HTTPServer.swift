import Dispatch
import Threading
import Glibc

/// The HTTP/1.1 and HTTP/2 server: a listening socket whose accepted connections are spread over a few serial queues;
/// over TLS when the configuration has `tls` (certificate and key reloaded on SIGHUP by `run()`).
///
///     var router = Router()
///     router.add(method: "GET", path: "/hello") { _ in HTTPResponse(status: 200, body: Array("hi".utf8)) }
///     try await HTTPServer(configuration: ServerConfiguration(port: 8080), router: router).run()
public final class HTTPServer: Sendable {
    private enum Lifecycle {
        case notStarted
        case running(listener: ListenerSource)
        /// Not accepting; waiting for the connections in `State.connections` to finish or the drain deadline.
        case draining
        case stopped
    }

    /// Dispatch sources are thread-safe (activate and cancel may be called from any thread) but are not
    /// annotated `Sendable`, so the lifecycle state carries the listener in this box.
    private struct ListenerSource: @unchecked Sendable {
        let source: DispatchSourceRead
    }

    private struct State {
        var lifecycle = Lifecycle.notStarted
        var connections: [ObjectIdentifier: Connection] = [:]
        var acceptedCount = 0
        /// Connections whose TLS handshake is under way (`TLSConfiguration.maxHandshakesInProgress`).
        var handshakesInProgress = 0
        /// Until the listening descriptor is closed, the port still takes connections into its backlog.
        var isListenerOpen = false
        /// Callers of `run()` and `shutdown()` waiting for `.stopped`.
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        /// New connections hand-shake with this; a reload replaces it, and open connections keep theirs.
        var tlsContext: TLSContext?
    }

    private let configuration: ServerConfiguration
    private let router: Router
    private let onShutdownBegin: (@Sendable () -> Void)?
    private let responseObserver: (@Sendable (ResponseRecord) -> Void)?
    private let tlsObserver: (@Sendable (TLSEvent) -> Void)?
    private let acceptQueue = DispatchQueue(label: "HTTPServer.accept")
    private let ioQueues: [DispatchQueue]
    private let state = LockedValue(State())

    /// `onShutdownBegin` runs once, when graceful shutdown begins (a readiness check turns 503 then);
    /// `responseObserver` sees every final response (metrics, access logs) on the connection's queue, so it
    /// must be quick; so must `tlsObserver`, which sees handshakes and reloads.
    public init(configuration: ServerConfiguration, router: Router, onShutdownBegin: (@Sendable () -> Void)? = nil,
                responseObserver: (@Sendable (ResponseRecord) -> Void)? = nil, tlsObserver: (@Sendable (TLSEvent) -> Void)? = nil) {
        self.configuration = configuration
        self.router = router
        self.onShutdownBegin = onShutdownBegin
        self.responseObserver = responseObserver
        self.tlsObserver = tlsObserver
        ioQueues = (0..<max(1, configuration.ioQueueCount)).map { DispatchQueue(label: "HTTPServer.io.\($0)") }
    }

    /// Loads the TLS files (when configured), binds and starts accepting; returns the bound port (the chosen
    /// one when the configuration says 0). Throws `TLSConfigurationError` or `SocketError`.
    @discardableResult
    public func start() throws -> Int {
        // Writes use MSG_NOSIGNAL, but OpenSSL's do not: a write to a closed socket must not end the process.
        signal(SIGPIPE, SIG_IGN)
        let tlsContext = try configuration.tls.map(makeTLSContext)
        let (descriptor, port) = try Socket.listen(host: configuration.host, port: configuration.port,
                                                   backlog: configuration.listenBacklog)
        let listener = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: acceptQueue)
        let sendableListener = ListenerSource(source: listener)
        let started = state.withLock { state in
            guard case .notStarted = state.lifecycle else { return false }
            state.lifecycle = .running(listener: sendableListener)
            state.isListenerOpen = true
            state.tlsContext = tlsContext
            return true
        }
        listener.setCancelHandler {
            Socket.close(descriptor)
            if started { self.listenerClosed() }
        }
        guard started else {
            // Cancelling closes the descriptor; a source must not be released before it is activated.
            listener.activate()
            listener.cancel()
            throw SocketError("start: the server was already started", code: EALREADY)
        }
        listener.setEventHandler { self.acceptPending(on: descriptor, listener: sendableListener) }
        listener.activate()
        return port
    }

    private func makeTLSContext(_ tls: TLSConfiguration) throws(TLSConfigurationError) -> TLSContext {
        try TLSContext(tls, applicationProtocols: configuration.http2 == nil ? [.http1_1] : [.h2, .http1_1])
    }

    /// True from the moment graceful shutdown begins.
    public var isDraining: Bool {
        state.withLock { state in
            switch state.lifecycle {
            case .draining, .stopped: true
            case .notStarted, .running: false
            }
        }
    }

    /// Starts, calls `started` with the bound port, serves until SIGTERM or SIGINT, then shuts down
    /// gracefully and returns. With TLS, SIGHUP reloads the certificate, key and CA files (`reloadTLS()`).
    public func run(started: (Int) -> Void = { _ in }) async throws {
        started(try start())
        var handlers: [(Int32, () -> Void)] = [(SIGTERM, beginShutdown), (SIGINT, beginShutdown)]
        if configuration.tls != nil {
            handlers.append((SIGHUP, {
                do throws(TLSConfigurationError) {
                    try self.reloadTLS()
                } catch {
                    self.tlsObserver?(.reloadFailed(error))
                }
            }))
        }
        let signalSources = handlers.map { signalNumber, handler in
            signal(signalNumber, SIG_IGN)  // delivered to the source instead of ending the process
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: acceptQueue)
            source.setEventHandler(handler: handler)
            source.activate()
            return source
        }
        await waitUntilStopped()
        for source in signalSources { source.cancel() }
    }

    /// Reads the TLS files again: connections accepted from now on hand-shake with them, open ones keep
    /// what they hand-shook with. On an error nothing changes.
    public func reloadTLS() throws(TLSConfigurationError) {
        guard let tls = configuration.tls else { return }
        let context = try makeTLSContext(tls)
        state.withLock { $0.tlsContext = context }
        tlsObserver?(.reloaded)
    }

    /// Stops accepting (new connections are refused), closes idle connections, lets requests in progress
    /// finish and answer with `Connection: close` until the drain timeout, then closes the rest. Returns
    /// once the listening socket and every connection are closed.
    public func shutdown() async {
        beginShutdown()
        await waitUntilStopped()
    }

    private func beginShutdown() {
        let drained: (listener: ListenerSource?, connections: [Connection])? = state.withLock { state in
            switch state.lifecycle {
            case .notStarted:
                state.lifecycle = .stopped
                return (nil, [])
            case .running(let listener):
                state.lifecycle = .draining
                return (listener, Array(state.connections.values))
            case .draining, .stopped:
                return nil
            }
        }
        guard let drained else { return }
        onShutdownBegin?()
        drained.listener?.source.cancel()
        for connection in drained.connections {
            connection.queue.async { connection.beginDrain() }
        }
        acceptQueue.asyncAfter(deadline: .now() + configuration.drainTimeout.dispatchInterval) {
            let remaining = self.state.withLock { Array($0.connections.values) }
            for connection in remaining {
                connection.queue.async { connection.forceClose() }
            }
        }
        stopIfDrained()
    }

    private func waitUntilStopped() async {
        await withCheckedContinuation { continuation in
            let stopped = state.withLock { state in
                if case .stopped = state.lifecycle { return true }
                state.stopWaiters.append(continuation)
                return false
            }
            if stopped { continuation.resume() }
        }
    }

    private func listenerClosed() {
        state.withLock { $0.isListenerOpen = false }
        stopIfDrained()
    }

    private func stopIfDrained() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard case .draining = state.lifecycle, state.connections.isEmpty, !state.isListenerOpen else { return [] }
            state.lifecycle = .stopped
            defer { state.stopWaiters = [] }
            return state.stopWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Accepting

    private enum Admission {
        case admitted(Connection)
        /// At `maxConnections`, or over TLS at `maxHandshakesInProgress`.
        case overCapacity
        case stopping
        /// No TLS session could be made (out of memory).
        case failed
    }

    private func acceptPending(on descriptor: Int32, listener: ListenerSource) {
        // Bounded so that a flood of connections cannot keep the accept queue from its other work.
        for _ in 0..<64 {
            switch Socket.accept(descriptor) {
            case .accepted(let client):
                switch admit(client) {
                case .admitted(let connection):
                    connection.queue.async { connection.start() }
                case .overCapacity:
                    refuse(client)
                case .stopping, .failed:
                    Socket.close(client)
                }
            case .noneReady:
                return
            case .outOfDescriptors:
                // The pending connection stays in the backlog and the listener stays readable: pause it
                // briefly instead of spinning until a connection closes.
                listener.source.suspend()
                acceptQueue.asyncAfter(deadline: .now() + .milliseconds(100)) { listener.source.resume() }
                return
            }
        }
    }

    private func admit(_ client: Int32) -> Admission {
        state.withLock { state in
            guard case .running = state.lifecycle else { return .stopping }
            guard state.connections.count < configuration.maxConnections else { return .overCapacity }
            var session: TLSSession?
            if let context = state.tlsContext, let tls = configuration.tls {
                guard state.handshakesInProgress < tls.maxHandshakesInProgress else { return .overCapacity }
                guard let made = TLSSession(context: context, descriptor: client) else { return .failed }
                session = made
                state.handshakesInProgress += 1
            }
            let queue = ioQueues[state.acceptedCount % ioQueues.count]
            state.acceptedCount &+= 1
            let connection = Connection(descriptor: client, tls: session, queue: queue, configuration: configuration, router: router,
                                        responseObserver: responseObserver, tlsObserver: tlsObserver,
                                        onHandshakeEnded: { self.state.withLock { $0.handshakesInProgress -= 1 } },
                                        onClose: { self.connectionClosed($0) })
            state.connections[ObjectIdentifier(connection)] = connection
            return .admitted(connection)
        }
    }

    private func connectionClosed(_ connection: Connection) {
        state.withLock { _ = $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
        stopIfDrained()
    }

    /// Best effort, without blocking the accept queue: one send of a prepared 503 into the fresh socket's
    /// empty buffer, our side shut, then close. Over TLS, where that needs a handshake, only the close.
    private func refuse(_ client: Int32) {
        guard configuration.tls == nil else {
            Socket.close(client)
            return
        }
        let response = ProblemDetails.response(status: 503, detail: "the server is at its connection limit",
                                               headers: HTTPHeaders([("Retry-After", "1")]))
        let bytes = ResponseEncoder(serverName: configuration.serverName, gzipMinimumBytes: .max)
            .encode(response, for: nil, keepAlive: false, requestVersion: .http1_1)
        _ = bytes.withUnsafeBytes { Socket.send(client, $0) }
        responseObserver?(ResponseRecord(method: nil, route: nil, status: response.status, duration: .zero,
                                         requestBodyBytes: 0, responseBodyBytes: response.body.count, requestID: nil))
        Socket.shutdownWrites(client)
        Socket.close(client)
    }
}

/// One final response, as the server's response observer sees it.
public struct ResponseRecord: Sendable {
    /// The request's method, nil when its head could not be parsed.
    public let method: String?
    /// The registered path the request was aimed at, also when its method is not allowed there (405); nil
    /// otherwise (404, unparsable). Never the raw target, so that metric labels stay a small, fixed set.
    public let route: String?
    public let status: Int
    /// From the request's first byte (the accept, for a connection's first request) to the moment the
    /// response is handed to the connection for writing, as the times of the connection's events: zero
    /// for an answer given in the read that brought its request (a 404 without a body, say).
    public let duration: Duration
    public let requestBodyBytes: Int
    /// The body as the handler gave it, before any content coding; none for HEAD.
    public let responseBodyBytes: Int
    /// The response's `X-Request-ID`, else the request's.
    public let requestID: String?
    /// The verified TLS client certificate's subject (RFC 2253), when the client presented one.
    public internal(set) var clientCertificateSubject: String? = nil
    /// The protocol the request came in: HTTP/1.1 (also for 1.0) or HTTP/2.
    public internal(set) var applicationProtocol = ApplicationProtocol.http1_1
}

extension ResponseRecord {
    /// The record of the final `response` to `head` (nil: answered without it, e.g. a 408 mid-body), for a
    /// request whose method, route and body size are known so far.
    init(_ response: HTTPResponse, answering head: RequestHead?, method: String?, route: String?, duration: Duration,
         requestBodyBytes: Int, applicationProtocol: ApplicationProtocol) {
        self.init(method: method, route: route, status: response.status, duration: duration, requestBodyBytes: requestBodyBytes,
                  responseBodyBytes: head?.method == "HEAD" ? 0 : response.body.count,
                  requestID: response.headers[RequestID.header], applicationProtocol: applicationProtocol)
    }
}
