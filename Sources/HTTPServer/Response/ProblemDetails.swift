import JSON

/// RFC 9457 problem details: every error the server answers itself has an `application/problem+json` body.
public enum ProblemDetails {
    /// A response with `{"type":"about:blank","title":…,"status":…,"detail":…}`; the title is the status's
    /// reason phrase, as RFC 9457 §4.2.1 asks for `about:blank`. `detail` must not carry internals.
    public static func response(status: Int, detail: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var headers = headers
        headers.set("Content-Type", "application/problem+json")
        let problem = JSONObject(["type": .string("about:blank"), "title": .string(HTTPStatus.reasonPhrase(status)),
                                  "status": .integer(status), "detail": .string(detail)])
        return HTTPResponse(status: status, headers: headers, body: Array(JSONValue.object(problem).jsonText.utf8))
    }

    /// The answer for a handler that threw.
    static let handlerFailure = response(status: 500, detail: "the request could not be processed")
}

enum HTTPStatus {
    /// The reason phrase of RFC 9110 §15 for the statuses this server or its handlers use.
    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 206: "Partial Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 415: "Unsupported Media Type"
        case 417: "Expectation Failed"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Status \(status)"
        }
    }
}
