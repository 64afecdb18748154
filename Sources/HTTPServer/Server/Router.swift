/// Answers one request. It may take as long as it needs (e.g. waiting for a batch of the inference queue);
/// the connection waits, in order, for its response. An error thrown becomes a 500 problem response whose
/// detail says nothing of the error.
public typealias HTTPHandler = @Sendable (HTTPRequest) async throws -> HTTPResponse

/// Decides from a request's head, before any body byte is read (and before `100 Continue`), whether the
/// request may go on: `declaredBodyLength` is its Content-Length, nil for a chunked body. It runs on the
/// connection's queue, so it must be quick.
public typealias AdmissionCheck = @Sendable (RequestHead, _ declaredBodyLength: Int?) -> Admission

public enum Admission: Sendable {
    /// The body is read and the handler runs; `ticket` reaches it as `HTTPRequest.admissionTicket` and is
    /// released with the request, also when the peer goes away before the body is complete. With
    /// `bodyAllowance`, room for the body is asked for as its bytes arrive (see `BodyAllowance`).
    case admit(ticket: (any Sendable)? = nil, bodyAllowance: (any BodyAllowance)? = nil)
    /// This response is sent at once and the connection closed; the body is never read.
    case refuse(HTTPResponse)
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
    struct Route: Sendable {
        let handler: HTTPHandler
        let admission: AdmissionCheck?
    }

    private var routesByPath: [String: [String: Route]] = [:]

    public init() {}

    /// Registers `handler` for `method` (case-sensitive, e.g. "GET") on `path` (e.g. "/v1/detect"). A GET
    /// handler also answers HEAD, with the body left out, unless HEAD has a handler of its own.
    /// With `admission`, each request is first put to it (see `AdmissionCheck`).
    public mutating func add(method: String, path: String, admission: AdmissionCheck? = nil, handler: @escaping HTTPHandler) {
        routesByPath[path, default: [:]][method] = Route(handler: handler, admission: admission)
    }

    enum Resolution {
        case route(Route)
        /// An error the server answers itself, after reading the body if there is one.
        case problem(HTTPResponse)
    }

    /// `path` when some route is registered on it (whatever the method), else nil: a bounded metric label.
    func registeredPath(_ path: String) -> String? {
        routesByPath[path] == nil ? nil : path
    }

    func resolve(method: String, path: String) -> Resolution {
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
