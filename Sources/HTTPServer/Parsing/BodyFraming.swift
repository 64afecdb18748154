/// How the body of a request is delimited (RFC 9112 §6.3), decided once from the complete header section.
enum BodyFraming: Equatable {
    /// No framing field: no body (RFC 9112 §6.3 rule 7).
    case none
    case length(Int)
    case chunked

    /// Validates Host and the framing fields. Strict wherever two parsers could disagree on where the
    /// request ends (we sit behind proxies): every ambiguity is a 400, never a guess.
    init(head: RequestHead, limits: HTTPLimits) throws(HTTPParseError) {
        try Self.validateHost(head)
        let contentLengths = head.headers.values("Content-Length")
        let transferEncodings = head.headers.values("Transfer-Encoding")
        if !transferEncodings.isEmpty {
            guard contentLengths.isEmpty else {
                throw .badRequest("Transfer-Encoding and Content-Length must not both be present")
            }
            guard head.version == .http1_1 else { throw .badRequest("Transfer-Encoding requires HTTP/1.1") }
            try Self.validateTransferCodings(transferEncodings)
            self = .chunked
            return
        }
        guard let contentLength = contentLengths.first else {
            self = .none
            return
        }
        // Even identical duplicates ("5, 5" or two lines) are refused: RFC 9112 §6.3 lets a recipient
        // accept them, but an intermediary might have kept only one of two differing values.
        guard contentLengths.count == 1 else { throw .badRequest("more than one Content-Length field") }
        self = .length(try Self.parseContentLength(contentLength, limits: limits))
    }

    private static func validateHost(_ head: RequestHead) throws(HTTPParseError) {
        let hosts = head.headers.values("Host")
        guard hosts.count <= 1 else { throw .badRequest("more than one Host field") }
        guard let host = hosts.first else {
            if head.version == .http1_1 { throw .badRequest("HTTP/1.1 requests must carry a Host field") }
            return
        }
        guard HostSyntax.isValid(ArraySlice(host.utf8)) else { throw .badRequest("invalid Host field") }
    }

    /// 1*DIGIT, nothing else: no sign, no inner whitespace, no list.
    private static func parseContentLength(_ value: String, limits: HTTPLimits) throws(HTTPParseError) -> Int {
        guard !value.isEmpty, value.utf8.allSatisfy(\.isDigit) else { throw .badRequest("invalid Content-Length") }
        var length = 0
        for digit in value.utf8 {
            let (shifted, overflowA) = length.multipliedReportingOverflow(by: 10)
            let (sum, overflowB) = shifted.addingReportingOverflow(Int(digit - 0x30))
            guard !overflowA, !overflowB else { throw .badRequest("Content-Length is too large to represent") }
            length = sum
        }
        guard length <= limits.maxBodyBytes else { throw .bodyTooLarge(limits) }
        return length
    }

    /// Only `chunked` is implemented, and it must be the final coding and applied once (RFC 9112 §6.1, §7).
    private static func validateTransferCodings(_ fieldValues: [String]) throws(HTTPParseError) {
        var codings: [String] = []
        for fieldValue in fieldValues {
            for element in fieldValue.utf8.split(separator: ASCII.comma, omittingEmptySubsequences: false) {
                let parameterStart = element.firstIndex(of: ASCII.semicolon) ?? element.endIndex
                let name = ArraySlice(element[..<parameterStart]).trimmingWhitespace
                guard !name.isEmpty, name.allSatisfy(\.isTokenChar) else {
                    throw .badRequest("invalid Transfer-Encoding")
                }
                let coding = String(decoding: name, as: UTF8.self).lowercased()
                if coding == "chunked" && parameterStart != element.endIndex {
                    throw .badRequest("the chunked transfer coding takes no parameters")
                }
                codings.append(coding)
            }
        }
        let chunkedCount = codings.count(where: { $0 == "chunked" })
        guard chunkedCount <= 1 else { throw .badRequest("chunked is applied more than once") }
        // A request whose final coding is not chunked has no determinable length: 400 by RFC 9112 §6.3 rule 4.
        if chunkedCount == 1 && codings.last != "chunked" {
            throw .badRequest("chunked must be the final transfer coding")
        }
        if codings.contains(where: { $0 != "chunked" }) {
            throw HTTPParseError(status: 501, detail: "only the chunked transfer coding is supported")
        }
    }
}
