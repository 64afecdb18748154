import Foundation
@testable import HTTPServer  // LockedValue: TSan does not see Synchronization.Mutex's locking on Linux
import Threading
import XCTest

/// The server over HTTP/2 against nghttp2's client session on real sockets: h2c by prior knowledge beside
/// HTTP/1.1 on one port, h2 chosen by ALPN, the HTTP/1.1 answers per stream, streams that do not wait for
/// each other, RST_STREAM cancelling a handler, and GOAWAY on drain. (Deploy/tests/test_http2.py has the
/// real clients and the floods.)
final class HTTP2ServerTests: XCTestCase {
    /// Cleartext (the client session's first bytes are the preface), or TLS with this ALPN offer.
    private func connect(_ port: Int, tls: TLSClientOptions? = nil) throws -> HTTP2TestClient {
        try HTTP2TestClient(connection: RawClient(port: port, tls: tls))
    }

    /// `/wait` runs until `release` is set or it is cancelled, recording that it started and whether it was cancelled.
    private func waitingRouter(started: LockedValue<Int>, cancelled: LockedValue<Bool>, release: LockedValue<Bool>) -> Router {
        var router = TestRoutes.router()
        router.add(method: "GET", path: "/wait") { _ in
            started.withLock { $0 += 1 }
            while !release.withLock({ $0 }) {
                do {
                    try await Task.sleep(for: .milliseconds(5))
                } catch {
                    cancelled.withLock { $0 = true }
                    throw error
                }
            }
            return HTTPResponse(status: 200, body: Array("released".utf8))
        }
        return router
    }

    private func assertEventually(_ condition: () -> Bool, file: StaticString = #filePath, line: UInt = #line) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { return XCTFail("not within 10 s", file: file, line: line) }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    func testPriorKnowledgeGetsTheHTTP11AnswersAndHTTP11StaysOnThePort() async throws {
        let records = LockedValue<[ResponseRecord]>([])
        let server = HTTPServer(configuration: TestRoutes.configuration(), router: TestRoutes.router(),
                                responseObserver: { record in records.withLock { $0.append(record) } })
        let port = try server.start()
        let client = try connect(port)
        let hello = try client.response(client.request("GET", "/hello", headers: [("x-request-id", "abc-1")]))
        XCTAssertEqual(hello.status, 200)
        XCTAssertEqual(hello.body, TestRoutes.helloBody)
        XCTAssertEqual(hello.header("x-request-id"), "abc-1")
        XCTAssertEqual(hello.header("content-length"), String(TestRoutes.helloBody.count))
        XCTAssertEqual(hello.header("server"), "MIM-OOD")
        XCTAssertNil(hello.header("connection"))

        let text = try client.response(client.request("GET", "/text", headers: [("accept-encoding", "gzip")]))
        XCTAssertEqual(text.header("content-encoding"), "gzip")
        XCTAssertLessThan(text.body.count, TestRoutes.longText.count)

        let payload = pseudoRandomBytes(count: 300_000)  // past the 64 KiB default window: flow control at work
        let echoed = try client.response(client.request("POST", "/echo", body: payload))
        XCTAssertEqual(echoed.status, 200)
        XCTAssertTrue(echoed.body == payload, "\(echoed.body.count) bytes echoed")

        let missing = try client.response(client.request("GET", "/nowhere"))
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(missing.header("content-type"), "application/problem+json")
        let failing = try client.response(client.request("GET", "/fail"))
        XCTAssertEqual(failing.status, 500)
        let head = try client.response(client.request("HEAD", "/hello"))
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.body, [])

        let http1 = try RawClient(port: port)
        try http1.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try http1.readResponse().body, TestRoutes.helloBody)
        let observed = records.withLock { $0.map { "\($0.applicationProtocol.rawValue) \($0.status) \($0.route ?? "-")" } }
        XCTAssertEqual(observed, ["h2 200 /hello", "h2 200 /text", "h2 200 /echo", "h2 404 -", "h2 500 /fail", "h2 200 /hello",
                                  "http/1.1 200 /hello"])
        XCTAssertEqual(records.withLock { $0.first { $0.route == "/echo" }?.requestBodyBytes }, payload.count)
        await server.shutdown()
    }

    func testALPNChoosesH2OverTLS() async throws {
        var configuration = TestRoutes.configuration()
        configuration.tls = TestCertificates.server()
        let server = HTTPServer(configuration: configuration, router: TestRoutes.router())
        let port = try server.start()
        let client = try connect(port, tls: TLSClientOptions(alpn: ["h2", "http/1.1"]))
        XCTAssertEqual(try client.connection?.tls()?.applicationProtocol, "h2")
        XCTAssertEqual(try client.response(client.request("GET", "/hello")).body, TestRoutes.helloBody)
        // A client without h2 in its offer is served HTTP/1.1.
        let http1 = try RawClient(port: port, tls: TLSClientOptions(alpn: ["http/1.1"]))
        try http1.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try http1.readResponse().status, 200)
        XCTAssertEqual(try http1.tls()?.applicationProtocol, "http/1.1")
        await server.shutdown()
    }

    func testAResetStreamCancelsItsHandlerWhileTheOthersGoOn() async throws {
        let (started, cancelled, release) = (LockedValue(0), LockedValue(false), LockedValue(false))
        let (server, port) = try startServer(router: waitingRouter(started: started, cancelled: cancelled, release: release))
        let client = try connect(port)
        let waiting = try client.request("GET", "/wait")
        try await assertEventually { started.withLock { $0 } == 1 }
        // No head-of-line blocking: another stream is answered while the first handler runs.
        XCTAssertEqual(try client.response(client.request("GET", "/hello")).status, 200)
        XCTAssertFalse(cancelled.withLock { $0 })
        try client.reset(waiting)
        try await assertEventually { cancelled.withLock { $0 } }
        XCTAssertEqual(try client.response(client.request("GET", "/hello")).status, 200)
        await server.shutdown()
    }

    func testDrainSendsGoAwayFinishesTheStreamInProgressAndCloses() async throws {
        let (started, cancelled, release) = (LockedValue(0), LockedValue(false), LockedValue(false))
        var configuration = TestRoutes.configuration()
        configuration.drainTimeout = .seconds(30)
        let (server, port) = try startServer(configuration, router: waitingRouter(started: started, cancelled: cancelled, release: release))
        let client = try connect(port)
        let waiting = try client.request("GET", "/wait")
        try await assertEventually { started.withLock { $0 } == 1 }
        let shutdown = Task { await server.shutdown() }
        try client.receive { client.goAway != nil }
        XCTAssertEqual(client.goAway?.lastStreamID, waiting)
        XCTAssertEqual(client.goAway?.errorCode, 0)
        release.withLock { $0 = true }
        let answer = try client.response(waiting)
        XCTAssertEqual(answer.status, 200)
        XCTAssertEqual(answer.body, Array("released".utf8))
        try client.receive { false }
        XCTAssertTrue(client.isClosedByPeer)
        await shutdown.value
        XCTAssertFalse(cancelled.withLock { $0 })
    }

    func testTheClientPrefaceIsRecognisedFromItsFirstBytes() {
        XCTAssertEqual(ClientPreface.match([]), .undecided)
        XCTAssertEqual(ClientPreface.match(Array("PRI * HTTP/2".utf8)), .undecided)
        XCTAssertEqual(ClientPreface.match(ClientPreface.bytes), .http2)
        XCTAssertEqual(ClientPreface.match(ClientPreface.bytes + [0, 0]), .http2)
        XCTAssertEqual(ClientPreface.match(Array("GET / HTTP/1.1\r\n".utf8)), .http1)
        XCTAssertEqual(ClientPreface.match(Array("PRI * HTTP/1.1\r\n".utf8)), .http1)
    }

    func testTheResetAllowanceEmptiesAtItsBurstAndRefillsAtItsRate() {
        let start = ContinuousClock.now
        var bucket = TokenBucket(capacity: 3, perSecond: 2, full: start)
        XCTAssertEqual((0..<4).map { _ in bucket.take(at: start) }, [true, true, true, false])
        XCTAssertTrue(bucket.take(at: start + .milliseconds(500)))
        XCTAssertFalse(bucket.take(at: start + .milliseconds(500)))
        XCTAssertEqual((0..<4).map { _ in bucket.take(at: start + .seconds(100)) }, [true, true, true, false])
    }
}
