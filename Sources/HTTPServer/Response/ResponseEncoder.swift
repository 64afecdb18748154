/// Turns a handler's response into the bytes on the wire: content coding, framing, `Date`, `Server` and
/// `Connection` fields, and no body for HEAD or for statuses that never have one.
struct ResponseEncoder {
    var serverName: String?
    /// Smaller bodies are sent as they are: the gzip header and the CPU time cost more than they save.
    var gzipMinimumBytes: Int

    /// What the encoder needs to know of the request; nil when the request could not be parsed.
    struct RequestContext {
        var isHead: Bool
        var acceptedEncodings: AcceptedEncodings

        init(head: RequestHead) {
            isHead = head.method == "HEAD"
            let acceptEncoding = head.headers.values("Accept-Encoding")
            acceptedEncodings = AcceptedEncodings(
                fieldValue: acceptEncoding.isEmpty ? nil : acceptEncoding.joined(separator: ","))
        }
    }

    /// A final response as both protocols send it: content-coded, its fields those of the head (the
    /// handler's, less the framing and persistence ones, plus `Content-Length`, `Date` and `Server`), and
    /// its body as sent (none for HEAD and for statuses without one). HTTP/1.1 adds `Connection`; HTTP/2
    /// sends the fields lowercased as HPACK wants them.
    struct Prepared {
        var status: Int
        var fields: [(name: String, value: String)]
        var body: [UInt8]
    }

    /// The HTTP/1.1 bytes of a response: status line, fields, then the body.
    func encode(_ response: HTTPResponse, for request: RequestContext?, keepAlive: Bool,
                requestVersion: HTTPVersion) -> [UInt8] {
        var prepared = prepare(response, for: request)
        if !keepAlive {
            prepared.fields.append(("Connection", "close"))
        } else if requestVersion == .http1_0 {
            prepared.fields.append(("Connection", "keep-alive"))  // 1.0 clients close unless told otherwise
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256 + prepared.body.count)
        bytes.append(contentsOf: "HTTP/1.1 \(prepared.status) \(HTTPStatus.reasonPhrase(prepared.status))\r\n".utf8)
        for (name, value) in prepared.fields {
            bytes.append(contentsOf: name.utf8)
            bytes.append(contentsOf: ": ".utf8)
            bytes.append(contentsOf: value.utf8)
            bytes.append(contentsOf: "\r\n".utf8)
        }
        bytes.append(contentsOf: "\r\n".utf8)
        bytes.append(contentsOf: prepared.body)
        return bytes
    }

    func prepare(_ response: HTTPResponse, for request: RequestContext?) -> Prepared {
        var headers = response.headers
        var body = response.body
        if let request { applyContentCoding(&headers, &body, accepted: request.acceptedEncodings) }
        let status = response.status
        let isHead = request?.isHead == true
        // The length the body states: none for statuses without a body; a HEAD handler of its own states the
        // Content-Length GET would have, kept as given.
        var contentLength: Int?
        var keepsHandlersLength = false
        if (100..<200).contains(status) || status == 204 || status == 304 {
            body = []
        } else if isHead && body.isEmpty && headers["content-length"] != nil {
            keepsHandlersLength = true
        } else {
            contentLength = body.count
        }
        var fields: [(name: String, value: String)] = []
        var hasDate = false
        var hasServer = false
        for (name, value) in headers {
            if name.equalsIgnoringASCIICase("date") {
                hasDate = true
            } else if name.equalsIgnoringASCIICase("server") {
                hasServer = true
            } else if name.equalsIgnoringASCIICase("content-length") {
                guard keepsHandlersLength else { continue }
            } else if Self.isConnectionSpecific(name) {
                continue  // framing and persistence are the server's to state
            }
            fields.append((name, value))
        }
        if let contentLength { fields.append(("Content-Length", String(contentLength))) }
        if !hasDate { fields.append(("Date", HTTPDate.now())) }
        if let serverName, !hasServer { fields.append(("Server", serverName)) }
        return Prepared(status: status, fields: fields, body: isHead ? [] : body)
    }

    /// Fields about one hop's connection, which HTTP/2 forbids (RFC 9113 §8.2.2) and HTTP/1.1 states itself.
    private static func isConnectionSpecific(_ name: String) -> Bool {
        ["connection", "transfer-encoding", "keep-alive", "proxy-connection", "upgrade"].contains { name.equalsIgnoringASCIICase($0) }
    }

    /// gzip when the client accepts it and it is worth it; a body the handler already encoded is left alone.
    private func applyContentCoding(_ headers: inout HTTPHeaders, _ body: inout [UInt8], accepted: AcceptedEncodings) {
        guard !body.isEmpty, headers["content-encoding"] == nil else { return }
        let compressible = Self.isCompressible(contentType: headers["content-type"])
        if compressible { Self.addVaryAcceptEncoding(&headers) }
        // Where identity is refused, gzip is the only acceptable answer whatever the type or size.
        let worthIt = compressible && body.count >= gzipMinimumBytes
        guard accepted.gzip, worthIt || !accepted.identity, let compressed = Gzip.compress(body) else { return }
        guard compressed.count < body.count || !accepted.identity else { return }
        if !compressible { Self.addVaryAcceptEncoding(&headers) }
        headers.set("Content-Encoding", "gzip")
        body = compressed
    }

    private static func addVaryAcceptEncoding(_ headers: inout HTTPHeaders) {
        let varied = headers.values("Vary").flatMap { $0.split(separator: ",").map { $0.trimmingSpacesAndTabs().lowercased() } }
        if !varied.contains("accept-encoding") && !varied.contains("*") { headers.add("Vary", "Accept-Encoding") }
    }

    /// Text and structured-text types; images, archives and other already-compressed data gain nothing.
    static func isCompressible(contentType: String?) -> Bool {
        guard let contentType else { return false }
        let mediaType = (contentType.split(separator: ";").first.map { $0.trimmingSpacesAndTabs() } ?? "").lowercased()
        return mediaType.hasPrefix("text/")
            || ["application/json", "application/javascript", "application/xml", "image/svg+xml",
                "application/x-ndjson"].contains(mediaType)
            || mediaType.hasSuffix("+json") || mediaType.hasSuffix("+xml")
    }
}
