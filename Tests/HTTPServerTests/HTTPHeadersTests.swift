import XCTest
@testable import HTTPServer

final class HTTPHeadersTests: XCTestCase {
    func testNamesCompareCaseInsensitivelyAndOnlyLettersFold() {
        var headers = HTTPHeaders([("Content-Type", "text/plain"), ("X-Id", "1"), ("x-id", "2")])
        XCTAssertEqual(headers["content-type"], "text/plain")
        XCTAssertEqual(headers["CONTENT-TYPE"], "text/plain")
        XCTAssertEqual(headers.values("X-ID"), ["1", "2"])
        // '-' (0x2D) and '\r' (0x0D) differ only in bit 0x20 but are not letters.
        XCTAssertNil(headers["Content\rType"])
        XCTAssertNil(headers["Content-Typ"])
        headers.set("x-ID", "3")
        XCTAssertEqual(headers.values("X-Id"), ["3"])
        headers.remove("CONTENT-type")
        XCTAssertNil(headers["Content-Type"])
    }
}
