import HTTPServer
import XCTest

/// Python's http.client: a second, independent client implementation.
final class IntegrationPythonTests: XCTestCase {
    func testKeepAliveSequenceOnOneConnection() async throws {
        let (server, port) = try startServer()
        let script = """
        import http.client, sys
        conn = http.client.HTTPConnection("127.0.0.1", \(port), timeout=5)
        sockets = set()
        for method, path, body in [("GET", "/hello", None), ("POST", "/echo", b"abc"), ("GET", "/missing", None),
                                   ("HEAD", "/text", None), ("GET", "/hello", None)]:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            data = response.read()
            sockets.add(id(conn.sock))
            print(response.status, len(data), response.getheader("Connection"))
        print("sockets", len(sockets))
        """
        let result = try runTool("python3", ["-c", script])
        XCTAssertEqual(result.status, 0, result.errors)
        XCTAssertEqual(String(decoding: result.output, as: UTF8.self), """
        200 13 None
        200 3 None
        404 91 None
        200 0 None
        200 13 None
        sockets 1

        """)
        await server.shutdown()
    }
}
