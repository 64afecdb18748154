import Dispatch
import HTTPServer
import XCTest

/// Behaviour beyond single inputs: the properties, early refusal, stickiness of errors, pipelining and streaming.
final class ParserTests: XCTestCase {
    private func events(_ parser: inout RequestParser) throws(HTTPParseError) -> [ParseEvent] {
        var events: [ParseEvent] = []
        while let event = try parser.next() { events.append(event) }
        return events
    }

    func testContentLengthOverTheLimitThrowsInsteadOfEmittingTheHead() {
        var parser = RequestParser(limits: HTTPLimits(maxBodyBytes: 4))
        parser.feed([UInt8](request: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"))
        XCTAssertThrowsError(try parser.next()) { XCTAssertEqual(($0 as? HTTPParseError)?.status, 413) }
    }

    func testAnErrorIsStickyAndLaterBytesAreIgnored() throws {
        var parser = RequestParser()
        parser.feed([UInt8](request: "GET / HTTP/3.0\r\n"))
        var first: HTTPParseError?
        XCTAssertThrowsError(try parser.next()) { first = $0 as? HTTPParseError }
        XCTAssertEqual(first?.status, 505)
        parser.feed([UInt8](request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
        for _ in 0..<3 {
            XCTAssertThrowsError(try parser.next()) { XCTAssertEqual($0 as? HTTPParseError, first) }
        }
        XCTAssertFalse(parser.hasBufferedBytes)
    }

    func testRequestLineOverTheLimitIsRefusedBeforeItsEndArrives() {
        var parser = RequestParser(limits: HTTPLimits(maxRequestLineLength: 20))
        parser.feed([UInt8](request: "GET /abcdefghijklmno\r"))  // 20 bytes and a CR that may end the line
        XCTAssertEqual(try parser.next(), nil)
        parser.feed([UInt8](request: "x"))  // now the content is 22 bytes whatever follows
        XCTAssertThrowsError(try parser.next()) { XCTAssertEqual(($0 as? HTTPParseError)?.status, 414) }
    }

    func testHeaderSectionOverTheLimitIsRefusedBeforeItsEndArrives() {
        var parser = RequestParser(limits: HTTPLimits(maxHeaderBytes: 64))
        parser.feed([UInt8](request: "GET / HTTP/1.1\r\nHost: h\r\n"))
        XCTAssertEqual(try parser.next(), nil)
        parser.feed([UInt8](repeating: UInt8(ascii: "a"), count: 56))  // 9 + 56 bytes, no line end yet
        XCTAssertThrowsError(try parser.next()) { XCTAssertEqual(($0 as? HTTPParseError)?.status, 431) }
    }

    func testChunkSizeLineOverTheLimitIsRefusedBeforeItsEndArrives() throws {
        var parser = RequestParser(limits: HTTPLimits(maxChunkLineLength: 8))
        parser.feed([UInt8](request: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;abcdefgh"))
        guard case .head = try parser.next() else { return XCTFail("expected the head") }
        XCTAssertThrowsError(try parser.next()) { XCTAssertEqual(($0 as? HTTPParseError)?.status, 400) }
    }

    func testHeadConsumesNoBodyByteAndPipelinedBytesStayBuffered() throws {
        var parser = RequestParser()
        parser.feed([UInt8](request: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n"))
        guard case .head = try parser.next() else { return XCTFail("expected the head") }
        XCTAssertTrue(parser.hasBufferedBytes)
        XCTAssertEqual(try parser.next(), .body(Array("abc".utf8)))
        XCTAssertEqual(try parser.next(), .end)
        XCTAssertTrue(parser.hasBufferedBytes, "the next request's first line is waiting")
        XCTAssertEqual(try parser.next(), nil)
        parser.feed([UInt8](request: "Host: h\r\n\r\n"))
        XCTAssertEqual(try events(&parser), [.head(expectedHead()), .end])
        XCTAssertFalse(parser.hasBufferedBytes)
    }

    func testBodyPropertiesDescribeTheCurrentRequest() throws {
        var parser = RequestParser()
        parser.feed([UInt8](request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
            + "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab"
            + "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nc\r\n0\r\n\r\n"
            + "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"))
        var seen: [(length: Int?, chunked: Bool)] = []
        while let event = try parser.next() {
            if case .head = event { seen.append((parser.expectedBodyLength, parser.isChunked)) }
        }
        XCTAssertEqual(seen.map(\.length), [nil, 2, nil, 0])
        XCTAssertEqual(seen.map(\.chunked), [false, false, true, false])
    }

    func testLargeBodyStreamsInPiecesAndTheNextRequestFollows() throws {
        let body = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let input = [UInt8](request: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \(body.count)\r\n\r\n") + body
            + [UInt8](request: "GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        var parser = RequestParser()
        var received: [UInt8] = []
        var largestPiece = 0
        var paths: [String] = []
        var ends = 0
        for start in stride(from: 0, to: input.count, by: 65_536) {
            parser.feed(input[start..<min(start + 65_536, input.count)])
            while let event = try parser.next() {
                switch event {
                case .head(let head): paths.append(head.path)
                case .body(let piece):
                    received += piece
                    largestPiece = max(largestPiece, piece.count)
                case .end: ends += 1
                }
            }
        }
        XCTAssertEqual(received, body)
        XCTAssertLessThanOrEqual(largestPiece, 65_536, "the body is handed out as it arrives, not buffered whole")
        XCTAssertEqual(paths, ["/", "/next"])
        XCTAssertEqual(ends, 2)
        XCTAssertFalse(parser.hasBufferedBytes)
    }

    func testLongLinesArrivingByteByByteAreNotRescanned() throws {
        // A quadratic rescan of a 30 KiB line fed byte by byte would take minutes even optimised.
        let input = [UInt8](request: "GET / HTTP/1.1\r\nHost: h\r\nX: \(String(repeating: "v", count: 30_000))\r\n\r\n")
        var parser = RequestParser()
        var heads = 0
        let start = DispatchTime.now().uptimeNanoseconds
        for byte in input {
            parser.feed(CollectionOfOne(byte))
            while let event = try parser.next() { if case .head = event { heads += 1 } }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        XCTAssertEqual(heads, 1)
        XCTAssertLessThan(seconds, 20)
    }

    func testManyPipelinedRequestsInOneBuffer() throws {
        let count = 2_000
        var input: [UInt8] = []
        for index in 0..<count {
            input += [UInt8](request: "POST /r\(index) HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
        }
        var parser = RequestParser()
        parser.feed(input)
        let outcome = try events(&parser)
        XCTAssertEqual(outcome.count, 3 * count)
        XCTAssertEqual(outcome[3 * (count - 1)], .head(expectedHead("POST", "/r\(count - 1)",
                                                                     headers: [("Host", "h"), ("Content-Length", "1")])))
        XCTAssertFalse(parser.hasBufferedBytes)
    }
}
