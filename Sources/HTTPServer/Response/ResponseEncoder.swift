/// Turns a handler's `HTTPResponse` into the bytes on the wire: content coding, framing, `Date`, `Server`
/// and `Connection` fields, and no body for HEAD or for statuses that never have one.
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

    func encode(_ response: HTTPResponse, for request: RequestContext?, keepAlive: Bool,
                requestVersion: HTTPVersion) -> [UInt8] {
        var headers = response.headers
        var body = response.body
        if let request { applyContentCoding(&headers, &body, accepted: request.acceptedEncodings) }

        let status = response.status
        let hasNoContent = (100..<200).contains(status) || status == 204 || status == 304
        if hasNoContent {
            headers.remove("Content-Length")
            body = []
        } else if !(request?.isHead == true && body.isEmpty && headers["Content-Length"] != nil) {
            // A HEAD handler of its own may state the length GET would have; otherwise the body's counts.
            headers.set("Content-Length", String(body.count))
        }
        headers.remove("Transfer-Encoding")
        if headers["Date"] == nil { headers.set("Date", HTTPDate.now()) }
        if let serverName, headers["Server"] == nil { headers.set("Server", serverName) }
        if !keepAlive {
            headers.set("Connection", "close")
        } else if requestVersion == .http1_0 {
            headers.set("Connection", "keep-alive")  // 1.0 clients close unless told otherwise
        } else {
            headers.remove("Connection")
        }

        var text = "HTTP/1.1 \(status) \(HTTPStatus.reasonPhrase(status))\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        var bytes = Array(text.utf8)
        if request?.isHead != true { bytes.append(contentsOf: body) }
        return bytes
    }

    /// gzip when the client accepts it and it is worth it; a body the handler already encoded is left alone.
    private func applyContentCoding(_ headers: inout HTTPHeaders, _ body: inout [UInt8], accepted: AcceptedEncodings) {
        guard headers["Content-Encoding"] == nil, !body.isEmpty else { return }
        let compressible = Self.isCompressible(contentType: headers["Content-Type"])
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
