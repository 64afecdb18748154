@testable import HTTPServer
import XCTest

/// The pieces of response encoding that need no socket.
final class ServerResponseTests: XCTestCase {
    /// [gzip acceptable, identity acceptable]
    private func accepted(_ fieldValue: String?) -> [Bool] {
        let encodings = AcceptedEncodings(fieldValue: fieldValue)
        return [encodings.gzip, encodings.identity]
    }

    func testAcceptEncodingQualityValues() {
        XCTAssertEqual(accepted(nil), [false, true])
        XCTAssertEqual(accepted("gzip, deflate, br"), [true, true])
        XCTAssertEqual(accepted("GZIP;q=0.5"), [true, true])
        XCTAssertEqual(accepted("gzip;q=0"), [false, true])
        XCTAssertEqual(accepted("gzip ; q=0.000, *"), [false, true])
        XCTAssertEqual(accepted("*"), [true, true])
        XCTAssertEqual(accepted("br, *;q=0"), [false, false])
        XCTAssertEqual(accepted("gzip, identity;q=0"), [true, false])
        XCTAssertEqual(accepted("gzip;q=x"), [false, true])
    }

    func testHTTPDateIsIMFFixdate() {
        XCTAssertEqual(HTTPDate.format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT")
        XCTAssertEqual(HTTPDate.now().count, 29)
    }

    func testProblemDetailsEscapeJSON() {
        let response = ProblemDetails.response(status: 400, detail: "a \"quoted\" \\ value\n\u{1}")
        XCTAssertEqual(response.headers["Content-Type"], "application/problem+json")
        XCTAssertEqual(String(decoding: response.body, as: UTF8.self),
                       #"{"type":"about:blank","title":"Bad Request","status":400,"detail":"a \"quoted\" \\ value\n\u0001"}"#)
    }

    private func context(acceptEncoding: String?, method: String = "GET") -> ResponseEncoder.RequestContext {
        var headers = HTTPHeaders([("Host", "test")])
        if let acceptEncoding { headers.add("Accept-Encoding", acceptEncoding) }
        return ResponseEncoder.RequestContext(head: RequestHead(method: method, target: "/", path: "/", query: [],
                                                                version: .http1_1, headers: headers))
    }

    private func encodedHead(_ response: HTTPResponse, acceptEncoding: String?, method: String = "GET") -> (String, Int) {
        let bytes = ResponseEncoder(serverName: "test", gzipMinimumBytes: 100)
            .encode(response, for: context(acceptEncoding: acceptEncoding, method: method), keepAlive: true,
                    requestVersion: .http1_1)
        let end = bytes.firstRange(of: Array("\r\n\r\n".utf8))!.upperBound
        return (String(decoding: bytes[..<end], as: UTF8.self), bytes.count - end)
    }

    func testGzipOnlyForCompressibleTypesAboveTheThreshold() {
        let text = Array(String(repeating: "compress me ", count: 50).utf8)
        let json = HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "application/json")]), body: text)
        let (gzipped, gzippedLength) = encodedHead(json, acceptEncoding: "gzip")
        XCTAssertTrue(gzipped.contains("Content-Encoding: gzip\r\n"))
        XCTAssertTrue(gzipped.contains("Vary: Accept-Encoding\r\n"))
        XCTAssertTrue(gzipped.contains("Content-Length: \(gzippedLength)\r\n"))
        XCTAssertLessThan(gzippedLength, text.count)

        let (refused, _) = encodedHead(json, acceptEncoding: "gzip;q=0")
        XCTAssertFalse(refused.contains("Content-Encoding"))
        XCTAssertTrue(refused.contains("Vary: Accept-Encoding\r\n"))

        let small = HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain")]), body: Array("tiny".utf8))
        XCTAssertFalse(encodedHead(small, acceptEncoding: "gzip").0.contains("Content-Encoding"))
        // With identity refused, gzip is the only acceptable answer even for a small body.
        XCTAssertTrue(encodedHead(small, acceptEncoding: "gzip, identity;q=0").0.contains("Content-Encoding: gzip"))

        let binary = HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "image/png")]), body: text)
        let (binaryHead, _) = encodedHead(binary, acceptEncoding: "gzip")
        XCTAssertFalse(binaryHead.contains("Content-Encoding"))
        XCTAssertFalse(binaryHead.contains("Vary"))
    }

    func testAnAlreadyEncodedBodyIsNotEncodedAgain() {
        let gzipped = Gzip.compress(Array(String(repeating: "x", count: 1000).utf8))!
        let response = HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain"),
                                                                       ("Content-Encoding", "gzip")]), body: gzipped)
        let (head, length) = encodedHead(response, acceptEncoding: "gzip")
        XCTAssertEqual(length, gzipped.count)
        XCTAssertEqual(head.components(separatedBy: "Content-Encoding").count, 2)
    }

    func testHeadKeepsTheLengthOfGetWithoutTheBody() {
        let response = HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain")]), body: Array("hello".utf8))
        let (head, bodyLength) = encodedHead(response, acceptEncoding: nil, method: "HEAD")
        XCTAssertTrue(head.contains("Content-Length: 5\r\n"))
        XCTAssertEqual(bodyLength, 0)
    }
}
