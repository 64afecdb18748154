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

    /// How the head delimits the body. The encoder writes the framing fields itself and drops the handler's.
    private enum Framing {
        case none
        case length(Int)
        /// A HEAD handler of its own states the Content-Length GET would have: kept as given.
        case handlersLength
    }

    func encode(_ response: HTTPResponse, for request: RequestContext?, keepAlive: Bool,
                requestVersion: HTTPVersion) -> [UInt8] {
        var headers = response.headers
        var body = response.body
        if let request { applyContentCoding(&headers, &body, accepted: request.acceptedEncodings) }

        let status = response.status
        let isHead = request?.isHead == true
        let framing: Framing
        if (100..<200).contains(status) || status == 204 || status == 304 {
            framing = .none
            body = []
        } else if isHead && body.isEmpty && headers["content-length"] != nil {
            framing = .handlersLength
        } else {
            framing = .length(body.count)
        }
        var bytes = encodeHead(status: status, headers: headers, framing: framing, keepAlive: keepAlive,
                               requestVersion: requestVersion, reservingBody: isHead ? 0 : body.count)
        if !isHead { bytes.append(contentsOf: body) }
        return bytes
    }

    private func encodeHead(status: Int, headers: HTTPHeaders, framing: Framing, keepAlive: Bool,
                            requestVersion: HTTPVersion, reservingBody bodyCount: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256 + bodyCount)
        func appendField(_ name: String, _ value: String) {
            bytes.append(contentsOf: name.utf8)
            bytes.append(contentsOf: ": ".utf8)
            bytes.append(contentsOf: value.utf8)
            bytes.append(contentsOf: "\r\n".utf8)
        }
        bytes.append(contentsOf: "HTTP/1.1 \(status) \(HTTPStatus.reasonPhrase(status))\r\n".utf8)
        var hasDate = false
        var hasServer = false
        for (name, value) in headers {
            if name.equalsIgnoringASCIICase("date") {
                hasDate = true
            } else if name.equalsIgnoringASCIICase("server") {
                hasServer = true
            } else if name.equalsIgnoringASCIICase("content-length") {
                guard case .handlersLength = framing else { continue }
            } else if name.equalsIgnoringASCIICase("connection") || name.equalsIgnoringASCIICase("transfer-encoding") {
                continue  // framing and persistence are the server's to state
            }
            appendField(name, value)
        }
        switch framing {
        case .length(let count): appendField("Content-Length", String(count))
        case .none, .handlersLength: break
        }
        if !hasDate { appendField("Date", HTTPDate.now()) }
        if let serverName, !hasServer { appendField("Server", serverName) }
        if !keepAlive {
            appendField("Connection", "close")
        } else if requestVersion == .http1_0 {
            appendField("Connection", "keep-alive")  // 1.0 clients close unless told otherwise
        }
        bytes.append(contentsOf: "\r\n".utf8)
        return bytes
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
