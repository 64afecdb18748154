// The shared vocabulary of the HTTP layer: what the parser produces and what handlers return.
// The parser (Parsing/) and the socket server (Server/) both build on these types only.

/// Header fields in arrival order; names compare case-insensitively (RFC 9110 §5.1).
public struct HTTPHeaders: Sendable, Equatable, Sequence {
    public private(set) var fields: [(name: String, value: String)] = []

    public init(_ fields: [(String, String)] = []) {
        for (name, value) in fields { add(name, value) }
    }

    public mutating func add(_ name: String, _ value: String) { fields.append((name, value)) }

    /// Replaces every field of that name with a single one.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { $0.name.equalsIgnoringASCIICase(name) }
    }

    /// The first value of the named field, or nil.
    public subscript(_ name: String) -> String? {
        fields.first { $0.name.equalsIgnoringASCIICase(name) }?.value
    }

    /// Every value of the named field, in order.
    public func values(_ name: String) -> [String] {
        fields.filter { $0.name.equalsIgnoringASCIICase(name) }.map(\.value)
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }
}

public enum HTTPVersion: Sendable, Equatable {
    case http1_0, http1_1, http2
}

/// A request's method, request line and header section, as the parser hands it over before any body byte.
public struct RequestHead: Sendable, Equatable {
    public var method: String
    /// The request-target exactly as sent (origin- or absolute-form).
    public var target: String
    /// The decoded path (percent-decoding applied), always starting with "/", except "*" for `OPTIONS *`.
    public var path: String
    /// Decoded query parameters in order (application/x-www-form-urlencoded rules: "+" is a space).
    public var query: [(name: String, value: String)]
    public var version: HTTPVersion
    public var headers: HTTPHeaders

    public init(method: String, target: String, path: String, query: [(name: String, value: String)],
                version: HTTPVersion, headers: HTTPHeaders) {
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
    }

    /// The first value of a query parameter.
    public func queryValue(_ name: String) -> String? { query.first { $0.name == name }?.value }

    public static func == (lhs: RequestHead, rhs: RequestHead) -> Bool {
        lhs.method == rhs.method && lhs.target == rhs.target && lhs.path == rhs.path
            && lhs.query.elementsEqual(rhs.query) { $0.name == $1.name && $0.value == $1.value }
            && lhs.version == rhs.version && lhs.headers == rhs.headers
    }
}

/// A complete request as a handler receives it.
public struct HTTPRequest: Sendable {
    public var head: RequestHead
    public var body: [UInt8]
    /// Over TLS with client authentication: the verified client certificate's subject in RFC 2253 form
    /// ("CN=pacs-gateway,O=Radiology"); nil without one.
    public var clientCertificateSubject: String?

    public init(head: RequestHead, body: [UInt8], clientCertificateSubject: String? = nil) {
        self.head = head
        self.body = body
        self.clientCertificateSubject = clientCertificateSubject
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

extension String {
    /// Field names are tokens (ASCII), so ASCII case folding is exact; it runs for every header look-up,
    /// so it compares bytes instead of lowercasing copies.
    func equalsIgnoringASCIICase(_ other: String) -> Bool {
        utf8.count == other.utf8.count
            && zip(utf8, other.utf8).allSatisfy { lhs, rhs in
                lhs == rhs || (lhs ^ rhs == 0x20 && (lhs | 0x20) >= 0x61 && (lhs | 0x20) <= 0x7A)
            }
    }
}
