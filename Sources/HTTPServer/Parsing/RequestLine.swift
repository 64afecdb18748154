/// The parsed first line of a request (RFC 9112 §3): `method SP request-target SP HTTP-version`.
struct RequestLine {
    var method: String
    var target: String
    var path: String
    var query: [(name: String, value: String)]
    var version: HTTPVersion

    /// Parses a request line without its CRLF. Exactly one SP separates the three parts.
    init(parsing line: ArraySlice<UInt8>) throws(HTTPParseError) {
        guard let methodEnd = line.firstIndex(of: ASCII.space),
              let targetEnd = line.lastIndex(of: ASCII.space), targetEnd > methodEnd
        else { throw .badRequest("the request line must be: method SP request-target SP HTTP-version") }
        let methodBytes = line[..<methodEnd]
        let targetBytes = line[(methodEnd + 1)..<targetEnd]
        guard !methodBytes.isEmpty, methodBytes.allSatisfy(\.isTokenChar) else {
            throw .badRequest("the method must be a token")
        }
        guard !targetBytes.isEmpty, !targetBytes.contains(ASCII.space) else {
            throw .badRequest("the request line must use single spaces between method, target and version")
        }
        version = try Self.parseVersion(line[(targetEnd + 1)...])
        method = String(decoding: methodBytes, as: UTF8.self)
        target = String(decoding: targetBytes, as: UTF8.self)  // parseTarget refuses every non-ASCII byte
        (path, query) = try Self.parseTarget(targetBytes, method: method)
    }

    private static func parseVersion(_ bytes: ArraySlice<UInt8>) throws(HTTPParseError) -> HTTPVersion {
        if bytes.elementsEqual("HTTP/1.1".utf8) { return .http1_1 }
        if bytes.elementsEqual("HTTP/1.0".utf8) { return .http1_0 }
        // The name is case-sensitive (RFC 9112 §2.3); a well-formed but other version is 505.
        let wellFormed = bytes.count == 8 && bytes.prefix(5).elementsEqual("HTTP/".utf8)
            && bytes[bytes.startIndex + 5].isDigit && bytes[bytes.startIndex + 6] == UInt8(ascii: ".")
            && bytes[bytes.startIndex + 7].isDigit
        if wellFormed { throw HTTPParseError(status: 505, detail: "only HTTP/1.0 and HTTP/1.1 are supported") }
        throw .badRequest("malformed HTTP version")
    }

    /// Splits a request-target into decoded path and query (RFC 9112 §3.2). Accepted: origin-form,
    /// absolute-form with an http or https scheme, and asterisk-form for OPTIONS only.
    static func parseTarget(_ bytes: ArraySlice<UInt8>, method: String)
        throws(HTTPParseError) -> (path: String, query: [(name: String, value: String)]) {
        if bytes.first == ASCII.slash { return try parsePathAndQuery(bytes) }
        if bytes.elementsEqual("*".utf8) {
            guard method == "OPTIONS" else { throw .badRequest("the asterisk-form target is only allowed with OPTIONS") }
            return ("*", [])
        }
        return try parseAbsoluteForm(bytes)
    }

    private static func parseAbsoluteForm(_ bytes: ArraySlice<UInt8>)
        throws(HTTPParseError) -> (path: String, query: [(name: String, value: String)]) {
        guard let schemeEnd = bytes.firstIndex(of: ASCII.colon) else {
            throw .badRequest("the request target must be in origin-form or absolute-form")
        }
        let scheme = String(decoding: bytes[..<schemeEnd], as: UTF8.self).lowercased()
        let afterScheme = bytes[(schemeEnd + 1)...]
        guard scheme == "http" || scheme == "https", afterScheme.starts(with: "//".utf8) else {
            throw .badRequest("an absolute-form target must be an http or https URI")
        }
        let authorityStart = afterScheme.startIndex + 2
        let authorityEnd = afterScheme[authorityStart...].firstIndex { $0 == ASCII.slash || $0 == ASCII.question }
            ?? afterScheme.endIndex
        let authority = afterScheme[authorityStart..<authorityEnd]
        // userinfo in an http URI is deprecated and a recipient should treat it as an error (RFC 9110 §4.2.4).
        guard !authority.contains(ASCII.at) else { throw .badRequest("userinfo is not allowed in the request target") }
        guard !authority.isEmpty, HostSyntax.isValid(authority) else {
            throw .badRequest("invalid authority in the request target")
        }
        let rest = afterScheme[authorityEnd...]
        if rest.first == ASCII.slash { return try parsePathAndQuery(rest) }
        // An empty path in absolute-form means "/" (RFC 9112 §3.2.2).
        let query = rest.isEmpty ? [] : try parseQuery(rest.dropFirst())
        return ("/", query)
    }

    private static func parsePathAndQuery(_ bytes: ArraySlice<UInt8>)
        throws(HTTPParseError) -> (path: String, query: [(name: String, value: String)]) {
        let queryStart = bytes.firstIndex(of: ASCII.question) ?? bytes.endIndex
        let pathBytes = bytes[..<queryStart]
        guard pathBytes.allSatisfy(\.isPathOrQueryChar) else {
            throw .badRequest("invalid character in the request path")
        }
        let path = try PercentDecoding.decode(pathBytes, plusIsSpace: false, part: "path")
        let query = queryStart == bytes.endIndex ? [] : try parseQuery(bytes[(queryStart + 1)...])
        return (path, query)
    }

    /// Decodes a query as application/x-www-form-urlencoded: "&"-separated pairs, "+" is a space.
    /// Empty pairs are skipped; a name without "=" has the empty value.
    private static func parseQuery(_ bytes: ArraySlice<UInt8>) throws(HTTPParseError) -> [(name: String, value: String)] {
        guard bytes.allSatisfy(\.isPathOrQueryChar) else {
            throw .badRequest("invalid character in the request query")
        }
        var pairs: [(name: String, value: String)] = []
        for pair in bytes.split(separator: ASCII.ampersand) {
            let equals = pair.firstIndex(of: ASCII.equals) ?? pair.endIndex
            let name = try PercentDecoding.decode(pair[..<equals], plusIsSpace: true, part: "query")
            let value = equals == pair.endIndex
                ? "" : try PercentDecoding.decode(pair[(equals + 1)...], plusIsSpace: true, part: "query")
            pairs.append((name, value))
        }
        return pairs
    }
}

enum PercentDecoding {
    /// Decodes %XX escapes (and "+" when asked). Refused with 400: a "%" without two hex digits, a decoded
    /// NUL, and a result that is not valid UTF-8, since each would let two components see different strings.
    static func decode(_ bytes: ArraySlice<UInt8>, plusIsSpace: Bool, part: String) throws(HTTPParseError) -> String {
        if !bytes.contains(ASCII.percent) && !(plusIsSpace && bytes.contains(ASCII.plus)) {
            return String(decoding: bytes, as: UTF8.self)  // callers checked every byte is ASCII
        }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == ASCII.percent {
                guard index + 2 < bytes.endIndex,
                      let high = bytes[index + 1].hexValue, let low = bytes[index + 2].hexValue
                else { throw .badRequest("invalid percent-encoding in the request \(part)") }
                let value = high << 4 | low
                guard value != 0 else { throw .badRequest("percent-encoded NUL in the request \(part)") }
                decoded.append(value)
                index += 3
            } else {
                decoded.append(plusIsSpace && byte == ASCII.plus ? ASCII.space : byte)
                index += 1
            }
        }
        guard let string = String(validating: decoded, as: UTF8.self) else {
            throw .badRequest("the percent-decoded request \(part) is not valid UTF-8")
        }
        return string
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2), as in Host and in an absolute-form target.
enum HostSyntax {
    /// Strict: a port, when its colon is present, needs 1 to 5 digits; an IP literal holds only IPv6
    /// characters; a reg-name's percent escapes must be complete. The empty host without a port is valid
    /// (a Host field for a target without authority, RFC 9112 §3.2).
    static func isValid(_ bytes: ArraySlice<UInt8>) -> Bool {
        let hostEnd: ArraySlice<UInt8>.Index
        if bytes.first == ASCII.openBracket {
            guard let close = bytes.firstIndex(of: ASCII.closeBracket) else { return false }
            let literal = bytes[(bytes.startIndex + 1)..<close]
            guard literal.contains(ASCII.colon),
                  literal.allSatisfy({ $0.hexValue != nil || $0 == ASCII.colon || $0 == UInt8(ascii: ".") })
            else { return false }
            hostEnd = close + 1
        } else {
            hostEnd = bytes.firstIndex(of: ASCII.colon) ?? bytes.endIndex
            // The empty host is only valid alone, not in front of a port.
            guard isRegName(bytes[..<hostEnd]), hostEnd > bytes.startIndex || hostEnd == bytes.endIndex
            else { return false }
        }
        let portPart = bytes[hostEnd...]
        guard let colon = portPart.first else { return true }
        let port = portPart.dropFirst()
        return colon == ASCII.colon && (1...5).contains(port.count) && port.allSatisfy(\.isDigit)
    }

    private static func isRegName(_ bytes: ArraySlice<UInt8>) -> Bool {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == ASCII.percent {
                guard index + 2 < bytes.endIndex, bytes[index + 1].hexValue != nil, bytes[index + 2].hexValue != nil
                else { return false }
                index += 3
            } else {
                guard bytes[index].isUnreservedOrSubDelim else { return false }
                index += 1
            }
        }
        return true
    }
}
