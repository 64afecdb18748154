import Foundation
import HTTPServer
import XCTest

/// The server against curl, the client our users and our proxies' health checks most resemble.
final class IntegrationCurlTests: XCTestCase {
    private func curl(_ arguments: [String]) throws -> (output: Data, errors: String) {
        let result = try runTool("curl", ["--silent", "--show-error", "--max-time", "10"] + arguments)
        XCTAssertEqual(result.status, 0, "curl failed: \(result.errors)")
        return (result.output, result.errors)
    }

    func testKeepAliveReusesTheConnectionOnIPv4AndIPv6() async throws {
        for host in ["127.0.0.1", "::1"] {
            let (server, port) = try startServer(TestRoutes.configuration(host: host))
            let base = host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
            let result = try curl(["-v", "-g", "-w", "%{http_code} %{num_connects}\n",
                                   "-o", "/dev/null", "\(base)/hello", "-o", "/dev/null", "\(base)/text"])
            XCTAssertEqual(String(decoding: result.output, as: UTF8.self), "200 1\n200 0\n", host)
            XCTAssertTrue(result.errors.contains("Re-using existing connection"), host)
            await server.shutdown()
        }
    }

    func testCompressedResponseIsGzipAndVaries() async throws {
        let (server, port) = try startServer()
        let result = try curl(["--compressed", "-D", "-", "http://127.0.0.1:\(port)/text"])
        let text = String(decoding: result.output, as: UTF8.self)
        let headEnd = try XCTUnwrap(text.range(of: "\r\n\r\n"))
        let head = text[..<headEnd.lowerBound].lowercased()
        XCTAssertTrue(head.contains("content-encoding: gzip"), head)
        XCTAssertTrue(head.contains("vary: accept-encoding"), head)
        XCTAssertEqual(Array(text[headEnd.upperBound...].utf8), TestRoutes.longText)
        await server.shutdown()
    }

    func testChunkedUploadIsEchoed() async throws {
        let (server, port) = try startServer()
        let body = pseudoRandomBytes(count: 300_000)
        let file = try temporaryFile(body)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try curl(["-H", "Transfer-Encoding: chunked", "--data-binary", "@\(file.path)",
                               "http://127.0.0.1:\(port)/echo"])
        XCTAssertEqual(Array(result.output), body)
        await server.shutdown()
    }

    func testExpectContinueForALargeUploadAndAnExplicitOne() async throws {
        let (server, port) = try startServer()
        let large = pseudoRandomBytes(count: 2 * 1024 * 1024)
        let file = try temporaryFile(large)
        defer { try? FileManager.default.removeItem(at: file) }
        // curl adds `Expect: 100-continue` by itself above 1 MiB.
        let automatic = try curl(["-v", "--data-binary", "@\(file.path)", "http://127.0.0.1:\(port)/echo"])
        XCTAssertTrue(automatic.errors.contains("Expect: 100-continue"))
        XCTAssertTrue(automatic.errors.contains("HTTP/1.1 100 Continue"))
        XCTAssertEqual(Array(automatic.output), large)

        let explicit = try curl(["-v", "-H", "Expect: 100-continue", "--data-binary", "small",
                                 "http://127.0.0.1:\(port)/echo"])
        XCTAssertTrue(explicit.errors.contains("HTTP/1.1 100 Continue"))
        XCTAssertEqual(String(decoding: explicit.output, as: UTF8.self), "small")
        await server.shutdown()
    }

    func testExpectContinueToAnUnknownPathIsAnsweredWithoutTheBody() async throws {
        let (server, port) = try startServer()
        let file = try temporaryFile(pseudoRandomBytes(count: 2 * 1024 * 1024))
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try curl(["-v", "-w", "%{http_code} %{size_upload}", "-o", "/dev/null",
                               "--data-binary", "@\(file.path)", "http://127.0.0.1:\(port)/nowhere"])
        XCTAssertFalse(result.errors.contains("100 Continue"))
        XCTAssertEqual(String(decoding: result.output, as: UTF8.self), "404 0")
        await server.shutdown()
    }

    func testExpectContinueForATooLargeBodyIs413WithoutTheBody() async throws {
        var configuration = TestRoutes.configuration()
        configuration.limits = HTTPLimits(maxBodyBytes: 1024 * 1024)
        let (server, port) = try startServer(configuration)
        let file = try temporaryFile(pseudoRandomBytes(count: 2 * 1024 * 1024))
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try curl(["-v", "-w", "%{http_code} %{size_upload}", "-o", "/dev/null",
                               "--data-binary", "@\(file.path)", "http://127.0.0.1:\(port)/echo"])
        XCTAssertFalse(result.errors.contains("100 Continue"))
        XCTAssertEqual(String(decoding: result.output, as: UTF8.self), "413 0")
        await server.shutdown()
    }

    func testHeadHasTheHeadersOfGetAndNoBody() async throws {
        let (server, port) = try startServer()
        let head = String(decoding: try curl(["-I", "http://127.0.0.1:\(port)/hello"]).output, as: UTF8.self)
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200 OK\r\n"), head)
        XCTAssertTrue(head.contains("Content-Length: 13\r\n"), head)
        XCTAssertTrue(head.contains("Content-Type: text/plain\r\n"), head)
        XCTAssertTrue(head.hasSuffix("\r\n\r\n"), head)
        await server.shutdown()
    }

    func testUnknownPathIs404AndWrongMethodIs405WithAllow() async throws {
        let (server, port) = try startServer()
        let missing = String(decoding: try curl(["-i", "http://127.0.0.1:\(port)/missing"]).output, as: UTF8.self)
        XCTAssertTrue(missing.hasPrefix("HTTP/1.1 404 Not Found\r\n"), missing)
        XCTAssertTrue(missing.contains("Content-Type: application/problem+json\r\n"), missing)
        XCTAssertTrue(missing.hasSuffix(#"{"type":"about:blank","title":"Not Found","status":404,"detail":"no resource at this path"}"#))

        let wrongMethod = String(decoding: try curl(["-i", "-X", "DELETE", "http://127.0.0.1:\(port)/hello"]).output,
                                 as: UTF8.self)
        XCTAssertTrue(wrongMethod.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"), wrongMethod)
        XCTAssertTrue(wrongMethod.contains("Allow: GET, HEAD\r\n"), wrongMethod)
        XCTAssertTrue(wrongMethod.contains(#""status":405"#), wrongMethod)
        await server.shutdown()
    }
}
