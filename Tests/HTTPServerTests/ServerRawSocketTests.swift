import Foundation
@testable import HTTPServer
import Threading  // LockedValue: TSan does not see Synchronization.Mutex's locking on Linux
import XCTest

/// Byte-exact requests over raw sockets: framing, errors, timeouts and shutdown; over TLS too
/// (`ServerRawSocketTLSTests` runs every case again).
class ServerRawSocketTests: XCTestCase {
    class var overTLS: Bool { false }

    private func startServer(_ configuration: ServerConfiguration = TestRoutes.configuration(),
                             router: Router = TestRoutes.router()) throws -> (server: HTTPServer, port: Int) {
        var configuration = configuration
        if Self.overTLS { configuration.tls = TestCertificates.server() }
        return try HTTPServerTests.startServer(configuration, router: router)
    }

    private func connect(port: Int, receiveTimeout: TimeInterval = 5) throws -> RawClient {
        try RawClient(port: port, receiveTimeout: receiveTimeout, tls: Self.overTLS ? TLSClientOptions() : nil)
    }

    private func assertServesHello(port: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let client = try connect(port: port)
        try client.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 200, file: file, line: line)
        XCTAssertEqual(response.body, TestRoutes.helloBody, file: file, line: line)
    }

    func testStartingTwiceFailsAndAStoppedServerRefusesConnections() async throws {
        let (server, port) = try startServer()
        XCTAssertThrowsError(try server.start())
        try assertServesHello(port: port)
        await server.shutdown()
        await server.shutdown()  // a second call returns at once
        XCTAssertThrowsError(try RawClient(port: port))
    }

    func testPipelinedRequestsAreAnsweredInOrder() async throws {
        let (server, port) = try startServer()
        let client = try connect(port: port)
        // The first handler is the slowest: its response must still come first.
        try client.send("GET /delay?ms=150&tag=first HTTP/1.1\r\nHost: test\r\n\r\n"
            + "GET /delay?ms=0&tag=second HTTP/1.1\r\nHost: test\r\n\r\n"
            + "GET /delay?ms=50&tag=third HTTP/1.1\r\nHost: test\r\n\r\n")
        let tags = try (0..<3).map { _ in try client.readResponse().bodyText }
        XCTAssertEqual(tags, ["first", "second", "third"])
        await server.shutdown()
    }

    func testMalformedRequestsGetProblemResponsesAndTheServerKeepsServing() async throws {
        var configuration = TestRoutes.configuration()
        configuration.limits = HTTPLimits(maxHeaderBytes: 1024, maxBodyBytes: 1000)
        let (server, port) = try startServer(configuration)
        let cases: [(request: String, status: Int)] = [
            ("GET\r\n\r\n", 400),
            ("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            ("GET /hello HTTP/1.1\r\nHost: test\r\nX-Filler: \(String(repeating: "a", count: 2000))\r\n\r\n", 431),
            // Refused from the head alone: the body is never sent.
            ("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\n\r\n", 413),
            ("GET /hello HTTP/1.1\r\nHost: test\r\nExpect: something-else\r\n\r\n", 417),
        ]
        for (request, status) in cases {
            let client = try connect(port: port)
            try client.send(request)
            let response = try client.readResponse()
            XCTAssertEqual(response.status, status, request)
            XCTAssertEqual(response.header("Connection"), "close", request)
            XCTAssertEqual(response.problem?["status"] as? Int, status, request)
            XCTAssertEqual(response.problem?["type"] as? String, "about:blank", request)
            XCTAssertNotNil(response.problem?["title"] as? String, request)
            XCTAssertNotNil(response.problem?["detail"] as? String, request)
            XCTAssertTrue(client.isClosedByPeer(), request)
            try assertServesHello(port: port)
        }
        await server.shutdown()
    }

    func testA413ReachesAClientThatIsStillSendingItsBody() async throws {
        var configuration = TestRoutes.configuration()
        configuration.limits = HTTPLimits(maxBodyBytes: 1000)
        let (server, port) = try startServer(configuration)
        let client = try connect(port: port)
        // Closing with these bytes unread would reset the connection and could destroy the 413 in flight.
        try client.send(Array("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 500000\r\n\r\n".utf8)
            + [UInt8](repeating: 0x61, count: 500_000))
        XCTAssertEqual(try client.readResponse().status, 413)
        XCTAssertTrue(client.isClosedByPeer())

        // A chunked body passes the limit only while it is read: 413 mid-body.
        let chunked = try connect(port: port)
        try chunked.send("POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "400\r\n\(String(repeating: "b", count: 1024))\r\n")
        XCTAssertEqual(try chunked.readResponse().problem?["status"] as? Int, 413)
        await server.shutdown()
    }

    func testAThrowingHandlerIs500WithoutInternals() async throws {
        let (server, port) = try startServer()
        let client = try connect(port: port)
        try client.send("GET /fail HTTP/1.1\r\nHost: test\r\n\r\n")
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 500)
        XCTAssertEqual(response.problem?["detail"] as? String, "the request could not be processed")
        XCTAssertFalse(response.bodyText.contains("SecretFailure"))
        // A handler error is the handler's, not the connection's: it stays usable.
        try client.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 200)
        await server.shutdown()
    }

    func testHTTP10ClosesUnlessKeepAliveIsAsked() async throws {
        let (server, port) = try startServer()
        let closing = try connect(port: port)
        try closing.send("GET /hello HTTP/1.0\r\n\r\n")
        XCTAssertEqual(try closing.readResponse().header("Connection"), "close")
        XCTAssertTrue(closing.isClosedByPeer())

        let keeping = try connect(port: port)
        try keeping.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        XCTAssertEqual(try keeping.readResponse().header("Connection"), "keep-alive")
        try keeping.send("GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(try keeping.readResponse().header("Connection"), "close")
        XCTAssertTrue(keeping.isClosedByPeer())
        await server.shutdown()
    }

    func testSlowHeadIsAnswered408AndClosed() async throws {
        let (server, port) = try startServer()  // header timeout: 1 s
        let client = try connect(port: port, receiveTimeout: 3)
        let started = ContinuousClock.now
        try client.send("GET /hello HTTP/1.1\r\nHost: te")
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 408)
        XCTAssertEqual(response.problem?["status"] as? Int, 408)
        XCTAssertTrue(client.isClosedByPeer())
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2.5))
        await server.shutdown()
    }

    func testIdleKeepAliveConnectionIsClosed() async throws {
        let (server, port) = try startServer()  // idle timeout: 0.5 s
        let client = try connect(port: port, receiveTimeout: 3)
        try client.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 200)
        XCTAssertTrue(client.isClosedByPeer())
        await server.shutdown()
    }

    func testConnectionsBeyondTheLimitGet503() async throws {
        var configuration = TestRoutes.configuration()
        configuration.maxConnections = 1
        let (server, port) = try startServer(configuration)
        let first = try connect(port: port)
        try first.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try first.readResponse().status, 200)  // now certainly accepted
        let second = try connect(port: port)
        guard !Self.overTLS else {
            // Answering would need a handshake on the accept queue: over TLS the connection is only closed.
            XCTAssertThrowsError(try second.readResponse())
            return await server.shutdown()
        }
        let refused = try second.readResponse()
        XCTAssertEqual(refused.status, 503)
        XCTAssertEqual(refused.problem?["status"] as? Int, 503)
        await server.shutdown()
    }

    func testShutdownFinishesTheRequestInFlightAndRefusesNewConnections() async throws {
        let handlerStarted = LockedValue(false)
        let (server, port) = try startServer(router: TestRoutes.router { handlerStarted.withLock { $0 = true } })
        let idle = try connect(port: port)
        try idle.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try idle.readResponse().status, 200)

        let busy = try connect(port: port)
        try busy.send("GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        for _ in 0..<200 where !handlerStarted.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertTrue(handlerStarted.withLock { $0 })

        let shutdown = Task { await server.shutdown() }
        XCTAssertTrue(idle.isClosedByPeer(), "an idle keep-alive connection is closed at once")
        var refused = false
        for _ in 0..<100 where !refused {
            do {
                _ = try RawClient(port: port)
                try await Task.sleep(for: .milliseconds(5))
            } catch let error as POSIXError where error.code == .ECONNREFUSED || error.code == .ECONNRESET {
                // Reset: the connection was caught in the listener's backlog as it closed, not accepted either.
                refused = true
            }
        }
        XCTAssertTrue(refused, "new connections are refused once shutdown has begun")

        let response = try busy.readResponse()
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.bodyText, "finally")
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertTrue(busy.isClosedByPeer())
        await shutdown.value
    }
}

/// Every raw-socket case over TLS. Linux's test discovery does not run inherited tests, so each is named here.
final class ServerRawSocketTLSTests: ServerRawSocketTests {
    override class var overTLS: Bool { true }

    override func testStartingTwiceFailsAndAStoppedServerRefusesConnections() async throws { try await super.testStartingTwiceFailsAndAStoppedServerRefusesConnections() }
    override func testPipelinedRequestsAreAnsweredInOrder() async throws { try await super.testPipelinedRequestsAreAnsweredInOrder() }
    override func testMalformedRequestsGetProblemResponsesAndTheServerKeepsServing() async throws { try await super.testMalformedRequestsGetProblemResponsesAndTheServerKeepsServing() }
    override func testA413ReachesAClientThatIsStillSendingItsBody() async throws { try await super.testA413ReachesAClientThatIsStillSendingItsBody() }
    override func testAThrowingHandlerIs500WithoutInternals() async throws { try await super.testAThrowingHandlerIs500WithoutInternals() }
    override func testHTTP10ClosesUnlessKeepAliveIsAsked() async throws { try await super.testHTTP10ClosesUnlessKeepAliveIsAsked() }
    override func testSlowHeadIsAnswered408AndClosed() async throws { try await super.testSlowHeadIsAnswered408AndClosed() }
    override func testIdleKeepAliveConnectionIsClosed() async throws { try await super.testIdleKeepAliveConnectionIsClosed() }
    override func testConnectionsBeyondTheLimitGet503() async throws { try await super.testConnectionsBeyondTheLimitGet503() }
    override func testShutdownFinishesTheRequestInFlightAndRefusesNewConnections() async throws { try await super.testShutdownFinishesTheRequestInFlightAndRefusesNewConnections() }
}
