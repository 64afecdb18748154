/// Answers one request. It may take as long as it needs (e.g. waiting for a batch of the inference queue);
/// the connection waits, in order, for its response. An error thrown becomes a 500 problem response whose
/// detail says nothing of the error.
public typealias HTTPHandler = @Sendable (HTTPRequest) async throws -> HTTPResponse

/// Maps a method and an exact decoded path to a handler. Built before the server starts, then read-only.
public struct Router: Sendable {
    private var handlersByPath: [String: [String: HTTPHandler]] = [:]

    public init() {}

    /// Registers `handler` for `method` (case-sensitive, e.g. "GET") on `path` (e.g. "/v1/detect"). A GET
    /// handler also answers HEAD, with the body left out, unless HEAD has a handler of its own.
    public mutating func add(method: String, path: String, handler: @escaping HTTPHandler) {
        handlersByPath[path, default: [:]][method] = handler
    }

    enum Resolution {
        case handler(HTTPHandler)
        /// An error the server answers itself, after reading the body if there is one.
        case problem(HTTPResponse)
    }

    func resolve(method: String, path: String) -> Resolution {
        guard let handlers = handlersByPath[path] else {
            return .problem(ProblemDetails.response(status: 404, detail: "no resource at this path"))
        }
        if let handler = handlers[method] ?? (method == "HEAD" ? handlers["GET"] : nil) {
            return .handler(handler)
        }
        var allowed = Set(handlers.keys)
        if allowed.contains("GET") { allowed.insert("HEAD") }
        let allow = allowed.sorted().joined(separator: ", ")
        return .problem(ProblemDetails.response(status: 405, detail: "the method \(method) is not allowed here",
                                                headers: HTTPHeaders([("Allow", allow)])))
    }
}
