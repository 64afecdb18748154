import HTTPServer
import XCTest

/// The edge-case corpus (RFC 9112/9110 and known request smuggling shapes). Every case is parsed whole,
/// byte by byte, split in two at every offset and split at random offsets; all must give the same outcome.
final class ParserCorpusTests: XCTestCase {
    struct Case {
        enum Expectation {
            case accepted([ParsedRequest])
            /// `headEmitted`: whether `.head` came out before the error (true only for errors in the body).
            case refused(status: Int, headEmitted: Bool)
        }

        let name: String
        let input: [UInt8]
        let expectation: Expectation
        var limits = HTTPLimits()
    }

    static func accept(_ name: String, _ raw: String, _ requests: ParsedRequest..., limits: HTTPLimits = HTTPLimits()) -> Case {
        Case(name: name, input: [UInt8](request: raw), expectation: .accepted(requests), limits: limits)
    }

    static func refuse(_ name: String, _ raw: String, _ status: Int, headEmitted: Bool = false,
                       limits: HTTPLimits = HTTPLimits()) -> Case {
        refuse(name, bytes: [UInt8](request: raw), status, headEmitted: headEmitted, limits: limits)
    }

    static func refuse(_ name: String, bytes: [UInt8], _ status: Int, headEmitted: Bool = false,
                       limits: HTTPLimits = HTTPLimits()) -> Case {
        Case(name: name, input: bytes, expectation: .refused(status: status, headEmitted: headEmitted), limits: limits)
    }

    static func complete(_ head: RequestHead, body: String = "") -> ParsedRequest {
        ParsedRequest(head: head, body: Array(body.utf8), isComplete: true)
    }

    static let host = "Host: h\r\n"

    static let acceptedCases: [Case] = [
        accept("simple GET", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", complete(expectedHead())),
        accept("path and query decoding",
               "GET /a%20b/c%2Fd/%C3%A9?x=1&y=hello+world&z=%41%42&&flag&=v&e%3D=%26 HTTP/1.1\r\n\(host)\r\n",
               complete(expectedHead("GET", "/a%20b/c%2Fd/%C3%A9?x=1&y=hello+world&z=%41%42&&flag&=v&e%3D=%26",
                                     path: "/a b/c/d/é",
                                     query: [("x", "1"), ("y", "hello world"), ("z", "AB"), ("flag", ""), ("", "v"),
                                             ("e=", "&")]))),
        accept("plus stays literal in the path", "GET /a+b HTTP/1.1\r\n\(host)\r\n", complete(expectedHead("GET", "/a+b"))),
        accept("sub-delims, colon and at in the path", "GET /a:b@c!$&'()*,;=~-._ HTTP/1.1\r\n\(host)\r\n",
               complete(expectedHead("GET", "/a:b@c!$&'()*,;=~-._"))),
        accept("empty query", "GET /p? HTTP/1.1\r\n\(host)\r\n", complete(expectedHead("GET", "/p?", path: "/p"))),
        accept("slash and question mark inside the query", "GET /p?u=/x?y HTTP/1.1\r\n\(host)\r\n",
               complete(expectedHead("GET", "/p?u=/x?y", path: "/p", query: [("u", "/x?y")]))),
        accept("HTTP/1.0 needs no Host", "GET /x HTTP/1.0\r\n\r\n",
               complete(expectedHead("GET", "/x", version: .http1_0, headers: []))),
        accept("method is case-sensitive token, any token accepted", "get / HTTP/1.1\r\n\(host)\r\n",
               complete(expectedHead("get"))),
        accept("extension method", "M-SEARCH / HTTP/1.1\r\n\(host)\r\n", complete(expectedHead("M-SEARCH"))),
        accept("absolute-form", "GET http://example.com:8080/p/q?a=b HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
               complete(expectedHead("GET", "http://example.com:8080/p/q?a=b", path: "/p/q", query: [("a", "b")],
                                     headers: [("Host", "example.com:8080")]))),
        accept("absolute-form without path", "GET http://example.com HTTP/1.1\r\n\(host)\r\n",
               complete(expectedHead("GET", "http://example.com", path: "/"))),
        accept("absolute-form, upper-case https, query without path", "GET HTTPS://[::1]:443?q=1 HTTP/1.1\r\n\(host)\r\n",
               complete(expectedHead("GET", "HTTPS://[::1]:443?q=1", path: "/", query: [("q", "1")]))),
        accept("OPTIONS asterisk-form", "OPTIONS * HTTP/1.1\r\n\(host)\r\n", complete(expectedHead("OPTIONS", "*"))),
        accept("Content-Length body", "POST /in HTTP/1.1\r\n\(host)Content-Length: 5\r\n\r\nhello",
               complete(expectedHead("POST", "/in", headers: [("Host", "h"), ("Content-Length", "5")]), body: "hello")),
        accept("Content-Length 0", "POST / HTTP/1.1\r\n\(host)Content-Length: 0\r\n\r\n",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Content-Length", "0")]))),
        accept("Content-Length with leading zeros", "POST / HTTP/1.1\r\n\(host)Content-Length: 005\r\n\r\nhello",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Content-Length", "005")]), body: "hello")),
        accept("body bytes that look like framing", "POST / HTTP/1.1\r\n\(host)Content-Length: 9\r\n\r\n\r\n0\r\n\r\nGE",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Content-Length", "9")]), body: "\r\n0\r\n\r\nGE")),
        accept("chunked", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Transfer-Encoding", "chunked")]),
                        body: "hello world")),
        accept("chunked, hex sizes in both cases", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n"
               + "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Transfer-Encoding", "chunked")]),
                        body: "0123456789abcdefghijk")),
        accept("chunked, 16 hex digits", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n"
               + "0000000000000003\r\nabc\r\n0000000000000000\r\n\r\n",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Transfer-Encoding", "chunked")]), body: "abc")),
        accept("chunk extensions are ignored", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n"
               + "5;name=value\r\nhello\r\n3 ; a ;b = \"q\\\"; x\"\t;c=d\r\nabc\r\n0;last\r\n\r\n",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Transfer-Encoding", "chunked")]),
                        body: "helloabc")),
        accept("chunked trailers are validated and discarded", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n"
               + "3\r\nabc\r\n0\r\nX-Checksum: 900150983cd24fb0\r\nX-Other:  v \r\n\r\n",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Transfer-Encoding", "chunked")]), body: "abc")),
        accept("Transfer-Encoding is case-insensitive, OWS and tabs trimmed",
               "POST / HTTP/1.1\r\n\(host)Transfer-Encoding:\t CHUNKED \t\r\n\r\n0\r\n\r\n",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Transfer-Encoding", "CHUNKED")]))),
        accept("field values: OWS trimmed, inner whitespace and empty values kept",
               "GET / HTTP/1.1\r\n\(host)X-A:   spaced \t value  \t\r\nX-Empty:\r\nX-Blank:   \r\n\r\n",
               complete(expectedHead(headers: [("Host", "h"), ("X-A", "spaced \t value"), ("X-Empty", ""),
                                               ("X-Blank", "")]))),
        accept("every tchar in a field name", "GET / HTTP/1.1\r\n\(host)X-!#$%&'*+-.^_`|~09az: v\r\n\r\n",
               complete(expectedHead(headers: [("Host", "h"), ("X-!#$%&'*+-.^_`|~09az", "v")]))),
        accept("UTF-8 in a field value", "GET / HTTP/1.1\r\n\(host)X-Name: Jürgen 🙂\r\n\r\n",
               complete(expectedHead(headers: [("Host", "h"), ("X-Name", "Jürgen 🙂")]))),
        accept("repeated fields keep their order", "GET / HTTP/1.1\r\nAccept: a\r\n\(host)accept: b\r\n\r\n",
               complete(expectedHead(headers: [("Accept", "a"), ("Host", "h"), ("accept", "b")]))),
        accept("Connection and Expect are passed through",
               "POST / HTTP/1.1\r\n\(host)Connection: close\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Connection", "close"),
                                                       ("Expect", "100-continue"), ("Content-Length", "1")]), body: "x")),
        accept("Host forms", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\nGET / HTTP/1.1\r\nHost:\r\n\r\n"
               + "GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\nGET / HTTP/1.1\r\nHost: xn--bcher-kva.example:1\r\n\r\n",
               complete(expectedHead(headers: [("Host", "[::1]:8080")])), complete(expectedHead(headers: [("Host", "")])),
               complete(expectedHead(headers: [("Host", "10.0.0.1")])),
               complete(expectedHead(headers: [("Host", "xn--bcher-kva.example:1")]))),
        accept("empty lines before the request line are skipped", "\r\n\r\nGET / HTTP/1.1\r\n\(host)\r\n",
               complete(expectedHead())),
        accept("empty lines before the request line, exactly at their limit", "\r\n\r\nGET / HTTP/1.1\r\n\(host)\r\n",
               complete(expectedHead()), limits: HTTPLimits(maxLeadingEmptyLines: 2)),
        accept("pipelined: GET, Content-Length, chunked, HTTP/1.0",
               "GET /1 HTTP/1.1\r\n\(host)\r\nPOST /2 HTTP/1.1\r\n\(host)Content-Length: 3\r\n\r\nabc"
               + "POST /3 HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\nGET /4 HTTP/1.0\r\n\r\n",
               complete(expectedHead("GET", "/1")),
               complete(expectedHead("POST", "/2", headers: [("Host", "h"), ("Content-Length", "3")]), body: "abc"),
               complete(expectedHead("POST", "/3", headers: [("Host", "h"), ("Transfer-Encoding", "chunked")]), body: "de"),
               complete(expectedHead("GET", "/4", version: .http1_0, headers: []))),
        accept("request line exactly at its limit", "GET /abcdef HTTP/1.1\r\n\(host)\r\n",
               complete(expectedHead("GET", "/abcdef")), limits: HTTPLimits(maxRequestLineLength: 20)),
        accept("header section exactly at its limit", "GET / HTTP/1.1\r\n\(host)X: 12\r\n\r\n",
               complete(expectedHead(headers: [("Host", "h"), ("X", "12")])), limits: HTTPLimits(maxHeaderBytes: 18)),
        accept("header count exactly at its limit", "GET / HTTP/1.1\r\n\(host)A: 1\r\n\r\n",
               complete(expectedHead(headers: [("Host", "h"), ("A", "1")])), limits: HTTPLimits(maxHeaderCount: 2)),
        accept("body exactly at its limit", "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
               complete(expectedHead("POST", headers: [("Host", "h"), ("Transfer-Encoding", "chunked")]), body: "abc"),
               limits: HTTPLimits(maxBodyBytes: 3)),
    ]

    static let chunkedHead = "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n"

    static func withHeader(_ field: String) -> String { "GET / HTTP/1.1\r\n\(host)\(field)\r\n\r\n" }

    static let refusedCases: [Case] = [
        // Request line.
        refuse("double space after the method", "GET  / HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("double space before the version", "GET /  HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("trailing space", "GET / HTTP/1.1 \r\n\(host)\r\n", 400),
        refuse("leading space", " GET / HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("tab as separator", "GET\t/ HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("no version (HTTP/0.9 style)", "GET /\r\n\r\n", 400),
        refuse("lower-case protocol name", "GET / http/1.1\r\n\(host)\r\n", 400),
        refuse("HTTP/2.0", "GET / HTTP/2.0\r\n\(host)\r\n", 505),
        refuse("HTTP/1.2", "GET / HTTP/1.2\r\n\(host)\r\n", 505),
        refuse("HTTP/0.9", "GET / HTTP/0.9\r\n\(host)\r\n", 505),
        refuse("HTTP/1.10", "GET / HTTP/1.10\r\n\(host)\r\n", 400),
        refuse("HTTP/1", "GET / HTTP/1\r\n\(host)\r\n", 400),
        refuse("HTTP/2", "GET / HTTP/2\r\n\(host)\r\n", 400),
        refuse("authority-form (CONNECT)", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400),
        refuse("target without slash", "GET index.html HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("asterisk with GET", "GET * HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("non-http scheme", "GET ftp://h/x HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("scheme without //", "GET http:/x HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("userinfo in absolute-form", "GET http://user@h/ HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("empty authority in absolute-form", "GET http:///p HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("bad port in absolute-form", "GET http://h:8x/ HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("fragment in the target", "GET /p#frag HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("quote in the target", "GET /\"x\" HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("backslash in the target", "GET /a\\b HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("brackets in the path", "GET /[x] HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("non-ASCII byte in the target", "GET /é HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("invalid percent-escape", "GET /%zz HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("truncated percent-escape", "GET /a%2 HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("lone percent", "GET /a% HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("percent-encoded NUL in the path", "GET /a%00b HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("percent-encoded invalid UTF-8", "GET /%FF HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("percent-encoded NUL in the query", "GET /?a=%00 HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("invalid percent-escape in the query", "GET /?a=%G1 HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("bare LF after the request line", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400),
        refuse("bare CR in the request line", "GET /\r HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("too many empty lines first", "\r\n\r\n\r\nGET / HTTP/1.1\r\n\(host)\r\n", 400,
               limits: HTTPLimits(maxLeadingEmptyLines: 2)),
        refuse("bare LF empty line first", "\nGET / HTTP/1.1\r\n\(host)\r\n", 400),
        refuse("request line over its limit", "GET /abcdefg HTTP/1.1\r\n\(host)\r\n", 414,
               limits: HTTPLimits(maxRequestLineLength: 20)),
        refuse("request line over the default limit",
               "GET /\(String(repeating: "a", count: 8 * 1024)) HTTP/1.1\r\n\(host)\r\n", 414),
        // Field lines.
        refuse("space before the colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
        refuse("tab before the colon", "GET / HTTP/1.1\r\n\(host)X\t: v\r\n\r\n", 400),
        refuse("Transfer-Encoding with space before the colon",
               chunkedHead.replacingOccurrences(of: "Transfer-Encoding:", with: "Transfer-Encoding :") + "0\r\n\r\n", 400),
        refuse("obs-fold", "GET / HTTP/1.1\r\n\(host)X-A: a\r\n b\r\n\r\n", 400),
        refuse("obs-fold with tab", "GET / HTTP/1.1\r\n\(host)X-A: a\r\n\tb\r\n\r\n", 400),
        refuse("whitespace before the first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
        refuse("obs-fold hiding Transfer-Encoding",
               "POST / HTTP/1.1\r\n\(host)X: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        refuse("field line without colon", withHeader("NoColon"), 400),
        refuse("empty field name", withHeader(": v"), 400),
        refuse("separator in a field name", withHeader("X(A): v"), 400),
        refuse("non-ASCII in a field name", withHeader("Xé: v"), 400),
        refuse("NUL in a value", withHeader("X: a\u{0}b"), 400),
        refuse("bare CR in a value", withHeader("X: a\rb"), 400),
        refuse("CR right before the line's CRLF", withHeader("X: a\r"), 400),
        refuse("vertical tab in a value", withHeader("X: a\u{0B}b"), 400),
        refuse("DEL in a value", withHeader("X: a\u{7F}b"), 400),
        refuse("invalid UTF-8 in a value",
               bytes: [UInt8](request: "GET / HTTP/1.1\r\n\(host)X: a") + [0xFF, 0xFE] + [UInt8](request: "\r\n\r\n"), 400),
        refuse("bare LF between fields", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400),
        refuse("bare LF ending the header section", "GET / HTTP/1.1\r\nHost: h\r\n\n", 400),
        refuse("header section over its limit", "GET / HTTP/1.1\r\n\(host)X: 123\r\n\r\n", 431,
               limits: HTTPLimits(maxHeaderBytes: 18)),
        refuse("header section over the default limit",
               "GET / HTTP/1.1\r\n\(host)X: \(String(repeating: "v", count: 32 * 1024))\r\n\r\n", 431),
        refuse("header count over its limit", "GET / HTTP/1.1\r\n\(host)A: 1\r\nB: 2\r\n\r\n", 431,
               limits: HTTPLimits(maxHeaderCount: 2)),
        refuse("header count over the default limit",
               "GET / HTTP/1.1\r\n\(host)" + String(repeating: "A: 1\r\n", count: 100) + "\r\n", 431),
        // Host.
        refuse("HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400),
        refuse("two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        refuse("two Host fields on HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        refuse("Host with a space", withHeader("Host: a b").replacingOccurrences(of: host, with: ""), 400),
        refuse("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400),
        refuse("Host with a path", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", 400),
        refuse("Host with an empty port", "GET / HTTP/1.1\r\nHost: h:\r\n\r\n", 400),
        refuse("Host with a long port", "GET / HTTP/1.1\r\nHost: h:123456\r\n\r\n", 400),
        refuse("Host with port only", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
        refuse("Host with unclosed IP literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
        refuse("Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
        // Content-Length.
        refuse("Content-Length with plus sign", withHeader("Content-Length: +5") + "hello", 400),
        refuse("Content-Length negative", withHeader("Content-Length: -5"), 400),
        refuse("Content-Length in hex", withHeader("Content-Length: 0x5") + "hello", 400),
        refuse("Content-Length with inner space", withHeader("Content-Length: 1 0") + "0123456789", 400),
        refuse("Content-Length empty", withHeader("Content-Length:"), 400),
        refuse("Content-Length list of different values", withHeader("Content-Length: 5, 6") + "hello!", 400),
        refuse("Content-Length list of equal values", withHeader("Content-Length: 5, 5") + "hello", 400),
        refuse("two Content-Length lines, equal", withHeader("Content-Length: 5\r\nContent-Length: 5") + "hello", 400),
        refuse("two Content-Length lines, different", withHeader("Content-Length: 5\r\ncontent-length: 6") + "hello!", 400),
        refuse("Content-Length beyond Int", withHeader("Content-Length: 99999999999999999999999"), 400),
        refuse("Content-Length beyond the body limit", withHeader("Content-Length: 268435457"), 413),
        refuse("Content-Length beyond a small body limit", withHeader("Content-Length: 11") + "hello world", 413,
               limits: HTTPLimits(maxBodyBytes: 10)),
        // Transfer-Encoding.
        refuse("CL.TE: Content-Length then Transfer-Encoding",
               "POST / HTTP/1.1\r\n\(host)Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", 400),
        refuse("TE.CL: Transfer-Encoding then Content-Length",
               "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400),
        refuse("Transfer-Encoding on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        refuse("gzip only", withHeader("Transfer-Encoding: gzip"), 501),
        refuse("gzip then chunked", withHeader("Transfer-Encoding: gzip, chunked") + "0\r\n\r\n", 501),
        refuse("unknown coding", withHeader("Transfer-Encoding: x-foo"), 501),
        refuse("identity", withHeader("Transfer-Encoding: identity"), 501),
        refuse("chunked not last", withHeader("Transfer-Encoding: chunked, gzip") + "0\r\n\r\n", 400),
        refuse("chunked not last, over two lines",
               withHeader("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity") + "0\r\n\r\n", 400),
        refuse("chunked twice", withHeader("Transfer-Encoding: chunked, chunked") + "0\r\n\r\n", 400),
        refuse("chunked twice, over two lines",
               withHeader("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked") + "0\r\n\r\n", 400),
        refuse("chunked look-alike", withHeader("Transfer-Encoding: xchunked") + "0\r\n\r\n", 501),
        refuse("chunked with a parameter", withHeader("Transfer-Encoding: chunked;q=1") + "0\r\n\r\n", 400),
        refuse("quoted chunked", withHeader("Transfer-Encoding: \"chunked\"") + "0\r\n\r\n", 400),
        refuse("empty list element after chunked", withHeader("Transfer-Encoding: chunked,") + "0\r\n\r\n", 400),
        refuse("empty list element before chunked", withHeader("Transfer-Encoding: , chunked") + "0\r\n\r\n", 400),
        refuse("empty Transfer-Encoding", withHeader("Transfer-Encoding:"), 400),
        refuse("vertical tab before chunked", withHeader("Transfer-Encoding: \u{0B}chunked") + "0\r\n\r\n", 400),
        // Chunked body.
        refuse("chunk size with 0x", chunkedHead + "0x5\r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk size with plus", chunkedHead + "+5\r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk size with minus", chunkedHead + "-5\r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk size with leading space", chunkedHead + " 5\r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk size with trailing space", chunkedHead + "5 \r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("empty chunk-size line", chunkedHead + "\r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk size with 17 hex digits", chunkedHead + "00000000000000005\r\nhello\r\n0\r\n\r\n", 400,
               headEmitted: true),
        refuse("huge chunk size", chunkedHead + "FFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n", 413, headEmitted: true),
        refuse("chunks over the body limit together", chunkedHead + "6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n", 413,
               headEmitted: true, limits: HTTPLimits(maxBodyBytes: 10)),
        refuse("chunk data longer than its size", chunkedHead + "5\r\nhello!\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk data followed by bare LF", chunkedHead + "5\r\nhello\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk-size line ending in bare LF", chunkedHead + "5\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("empty chunk extension", chunkedHead + "5;\r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk extension without a name", chunkedHead + "5;=x\r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk extension without a value", chunkedHead + "5;a=\r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("unterminated quoted chunk extension", chunkedHead + "5;a=\"x\r\nhello\r\n0\r\n\r\n", 400,
               headEmitted: true),
        refuse("chunk extension with space in the value", chunkedHead + "5;a=b c\r\nhello\r\n0\r\n\r\n", 400,
               headEmitted: true),
        refuse("chunk extension with trailing space", chunkedHead + "5;a=b \r\nhello\r\n0\r\n\r\n", 400,
               headEmitted: true),
        refuse("chunk extension with NUL", chunkedHead + "5;a=\"\u{0}\"\r\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("chunk-size line over its limit", chunkedHead + "5;\(String(repeating: "a", count: 1100))\r\nhello\r\n0\r\n\r\n",
               400, headEmitted: true),
        // Found by the fuzzer: the length error must win over the bare LF under every split.
        refuse("chunk-size line over its limit, ending in bare LF",
               chunkedHead + "5;\(String(repeating: "a", count: 1100))\nhello\r\n0\r\n\r\n", 400, headEmitted: true),
        refuse("request line over its limit, ending in bare LF", "GET /abcdefghijklmnopq HTTP/1.1\n\(host)\r\n", 414,
               limits: HTTPLimits(maxRequestLineLength: 20)),
        refuse("Content-Length in the trailer", chunkedHead + "0\r\nContent-Length: 5\r\n\r\n", 400, headEmitted: true),
        refuse("Transfer-Encoding in the trailer", chunkedHead + "0\r\ntransfer-encoding: chunked\r\n\r\n", 400,
               headEmitted: true),
        refuse("Host in the trailer", chunkedHead + "0\r\nHost: other\r\n\r\n", 400, headEmitted: true),
        refuse("obs-fold in the trailer", chunkedHead + "0\r\nX: a\r\n b\r\n\r\n", 400, headEmitted: true),
        refuse("NUL in a trailer value", chunkedHead + "0\r\nX: a\u{0}\r\n\r\n", 400, headEmitted: true),
        refuse("trailer section over its limit", chunkedHead + "0\r\nX: \(String(repeating: "t", count: 60))\r\n\r\n", 431, headEmitted: true,
               limits: HTTPLimits(maxHeaderBytes: 60)),
        refuse("trailer count over its limit", chunkedHead + "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431, headEmitted: true,
               limits: HTTPLimits(maxHeaderCount: 2)),
        // Errors after valid pipelined requests still come after those requests' events.
        refuse("second pipelined request is bad", "GET / HTTP/1.1\r\n\(host)\r\nGET / HTTP/9.9\r\n\(host)\r\n", 505),
    ]

    func testAcceptedCasesGiveTheExpectedRequestsUnderEverySplit() {
        for testCase in Self.acceptedCases {
            guard case .accepted(let expected) = testCase.expectation else { continue }
            for (splitName, pieces) in splits(of: testCase.input) {
                let outcome = parse(pieces, limits: testCase.limits)
                XCTAssertNil(outcome.error, "\(testCase.name), \(splitName)")
                XCTAssertEqual(outcome.requests, expected, "\(testCase.name), \(splitName)")
                XCTAssertEqual(outcome.orderViolations, [], "\(testCase.name), \(splitName)")
            }
            // Without its last byte the input is only incomplete: no error, and the last request is not done.
            let truncated = parse([testCase.input.dropLast()], limits: testCase.limits)
            XCTAssertNil(truncated.error, "\(testCase.name), truncated")
            XCTAssertEqual(truncated.requests.filter(\.isComplete).count, expected.count - 1,
                           "\(testCase.name), truncated")
        }
    }

    func testRefusedCasesGiveTheSameErrorUnderEverySplit() {
        for testCase in Self.refusedCases {
            guard case .refused(let status, let headEmitted) = testCase.expectation else { continue }
            let whole = parse([testCase.input[...]], limits: testCase.limits)
            XCTAssertEqual(whole.error?.status, status, "\(testCase.name): \(whole.error?.detail ?? "no error")")
            XCTAssertEqual(whole.requests.last.map { !$0.isComplete } ?? false, headEmitted,
                           "\(testCase.name): whether .head came out before the error")
            XCTAssertEqual(whole.orderViolations, [], testCase.name)
            // A long case is split only byte by byte and at random: every offset would be slow and add nothing.
            let cuts = splits(of: testCase.input).filter { testCase.input.count < 2048 || !$0.name.hasPrefix("split at") }
            for (splitName, pieces) in cuts.dropFirst() {
                XCTAssertEqual(parse(pieces, limits: testCase.limits), whole, "\(testCase.name), \(splitName)")
            }
        }
    }
}
