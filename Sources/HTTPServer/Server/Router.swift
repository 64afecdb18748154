/// Answers one request. It may take as long as it needs (e.g. waiting for a batch of the inference queue);
/// the connection waits, in order, for its response. An error thrown becomes a 500 problem response whose
/// detail says nothing of the error.
public typealias HTTPHandler = @Sendable (HTTPRequest) async throws -> HTTPResponse

/// Decides from a request's head, before any body byte is read (and before `100 Continue`), whether the
/// request may go on: `declaredBodyLength` is its Content-Length, nil for a chunked body. It runs on the
/// connection's queue, so it must be quick.
public typealias AdmissionCheck<Ticket: Sendable> = @Sendable (RequestHead, _ declaredBodyLength: Int?) -> Admission<Ticket>

public enum Admission<Ticket: Sendable>: Sendable {
    /// The body is read and the handler runs with `ticket`, which is released with the request, also when
    /// the peer goes away before the body is complete. With `bodyAllowance`, room for the body is asked for
    /// as its bytes arrive (see `BodyAllowance`).
    case admit(ticket: Ticket, bodyAllowance: (any BodyAllowance)? = nil)
    /// This response is sent at once and the connection closed; the body is never read.
    case refuse(HTTPResponse)
}

extension Admission where Ticket == Void {
    /// Admits a request whose handler needs no ticket.
    public static func admit(bodyAllowance: (any BodyAllowance)? = nil) -> Self {
        .admit(ticket: (), bodyAllowance: bodyAllowance)
    }
}

/// Room for an admitted request's body, claimed as its bytes arrive rather than all at once from the
/// declared length: a body that trickles in holds only about what has come (at most twice, as the buffer
/// grows by doubling), so slow senders cannot hold what others need.
public protocol BodyAllowance: Sendable {
    /// Room for `bytes` body bytes in all, called on the connection's queue each time the body outgrows
    /// what was granted. nil grants it; a response refuses the request: it is sent and the connection closed.
    func extend(to bytes: Int) -> HTTPResponse?
}

/// How far a body's allowance grows when it runs out: to twice what it was (at least 64 KiB, at least what
/// is needed), never past the body's declared length or the body limit.
public func nextBodyAllowance(needed: Int, granted: Int, declaredLength: Int?, maxBodyBytes: Int) -> Int {
    min(max(needed, 2 * granted, 64 * 1024), max(needed, declaredLength ?? maxBodyBytes))
}

/// Maps a method and an exact decoded path to a handler. Built before the server starts, then read-only.
public struct Router: Sendable {
    /// A route's admission check and handler. The ticket's type stays inside: an admitted request comes
    /// out with its handler already bound to its ticket, so the connection never sees the ticket's type.
    struct Route: Sendable {
        let admit: @Sendable (RequestHead, _ declaredBodyLength: Int?) -> RouteAdmission
    }

    private var routesByPath: [String: [String: Route]] = [:]

    public init() {}

    /// Registers `handler` for `method` (case-sensitive, e.g. "GET") on `path` (e.g. "/v1/detect"). A GET
    /// handler also answers HEAD, with the body left out, unless HEAD has a handler of its own.
    public mutating func add(method: String, path: String, handler: @escaping HTTPHandler) {
        let admitted = AdmittedRequest(handler: handler, bodyAllowance: nil)
        routesByPath[path, default: [:]][method] = Route { _, _ in .admitted(admitted) }
    }

    /// Registers a route whose requests are first put to `admission` (see `AdmissionCheck`); the handler of
    /// an admitted request gets the ticket its admission gave.
    public mutating func add<Ticket: Sendable>(method: String, path: String, admission: @escaping AdmissionCheck<Ticket>,
                                               handler: @escaping @Sendable (HTTPRequest, Ticket) async throws -> HTTPResponse) {
        routesByPath[path, default: [:]][method] = Route { head, declaredBodyLength in
            switch admission(head, declaredBodyLength) {
            case .admit(let ticket, let bodyAllowance):
                .admitted(AdmittedRequest(handler: { request in try await handler(request, ticket) }, bodyAllowance: bodyAllowance))
            case .refuse(let response):
                .refused(response)
            }
        }
    }

    /// Where a request goes, decided from its head (the admission check runs here).
    enum Routing {
        case handler(AdmittedRequest)
        /// An error the server answers itself, after reading the body if there is one (404, 405).
        case problem(HTTPResponse)
        /// The route's admission refused the request: answered before any body byte is read.
        case refused(HTTPResponse)
    }

    /// `declaredBodyLength`: the body's announced length, nil when unknown (chunked).
    func route(_ head: RequestHead, declaredBodyLength: Int?) -> Routing {
        switch resolve(method: head.method, path: head.path) {
        case .route(let route):
            switch route.admit(head, declaredBodyLength) {
            case .admitted(let admitted): .handler(admitted)
            case .refused(let response): .refused(response)
            }
        case .problem(let response):
            .problem(response)
        }
    }

    private enum Resolution {
        case route(Route)
        case problem(HTTPResponse)
    }

    /// `path` when some route is registered on it (whatever the method), else nil: a bounded metric label.
    func registeredPath(_ path: String) -> String? {
        routesByPath[path] == nil ? nil : path
    }

    private func resolve(method: String, path: String) -> Resolution {
        guard let routes = routesByPath[path] else {
            return .problem(ProblemDetails.response(status: 404, detail: "no resource at this path"))
        }
        if let route = routes[method] ?? (method == "HEAD" ? routes["GET"] : nil) {
            return .route(route)
        }
        var allowed = Set(routes.keys)
        if allowed.contains("GET") { allowed.insert("HEAD") }
        let allow = allowed.sorted().joined(separator: ", ")
        return .problem(ProblemDetails.response(status: 405, detail: "the method \(method) is not allowed here",
                                                headers: HTTPHeaders([("Allow", allow)])))
    }
}

/// What a route's admission check decided, with the ticket bound into the handler.
enum RouteAdmission {
    case admitted(AdmittedRequest)
    case refused(HTTPResponse)
}

/// A request let in by its route: its handler (holding the ticket, which is released with it) and the
/// allowance its body's room is asked of.
struct AdmittedRequest: Sendable {
    let handler: HTTPHandler
    let bodyAllowance: (any BodyAllowance)?
}

/// Where a routed request's body goes, in either protocol.
enum BodyDestination {
    case handler(AdmittedRequest)
    /// The body is read and dropped, then this answer (404, 405) goes out; the connection stays open.
    case problem(HTTPResponse)
}
