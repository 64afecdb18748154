import Foundation
@testable import HTTPServer  // LockedValue: TSan does not see Synchronization.Mutex's locking on Linux
import Threading
import XCTest

/// What the detection service builds on, over raw sockets: admission from the head, cancellation of a handler
/// whose peer is gone, the start of shutdown, the response observer, and X-Request-ID on our own answers.
final class ServerHooksTests: XCTestCase {
    /// Counts its own release, as the service's reservation ticket releases a slot in its deinit.
    private final class Ticket: Sendable {
        let releases: LockedValue<Int>
        init(releases: LockedValue<Int>) { self.releases = releases }
        deinit { releases.withLock { $0 += 1 } }
    }

    /// Fails unless `condition` holds within `timeout`, checked every 5 ms.
    private func assertEventually(within timeout: Duration = .seconds(1), _ condition: () -> Bool,
                                  file: StaticString = #filePath, line: UInt = #line) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { return XCTFail("not within \(timeout)", file: file, line: line) }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    // MARK: Admission

    func testAdmissionRefusesFromTheHeadWithoutReadingTheBody() async throws {
        let declaredLengths = LockedValue<[Int?]>([])
        let handlerRuns = LockedValue(0)
        var router = Router()
        router.add(method: "POST", path: "/upload", admission: { _, declaredBodyLength -> Admission<Void> in
            declaredLengths.withLock { $0.append(declaredBodyLength) }
            guard let declaredBodyLength, declaredBodyLength <= 100 else {
                return .refuse(ProblemDetails.response(status: 503, detail: "busy", headers: HTTPHeaders([("Retry-After", "2")])))
            }
            return .admit()
        }) { request, _ in
            handlerRuns.withLock { $0 += 1 }
            return HTTPResponse(status: 200, body: request.body)
        }
        let (server, port) = try startServer(router: router)

        // The refusal comes instead of 100 Continue: the client never sends the body.
        let expecting = try RawClient(port: port)
        try expecting.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
        let refused = try expecting.readResponse()
        XCTAssertEqual(refused.status, 503)
        XCTAssertEqual(refused.header("Retry-After"), "2")
        XCTAssertEqual(refused.header("Connection"), "close")
        XCTAssertTrue(expecting.isClosedByPeer())

        // A client already sending its body still gets the refusal (the body is discarded, then the close).
        let sending = try RawClient(port: port)
        try sending.send(Array("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 500000\r\n\r\n".utf8)
            + [UInt8](repeating: 0x61, count: 500_000))
        XCTAssertEqual(try sending.readResponse().status, 503)
        XCTAssertTrue(sending.isClosedByPeer())

        let chunked = try RawClient(port: port)
        try chunked.send("POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        XCTAssertEqual(try chunked.readResponse().status, 503)

        let admitted = try RawClient(port: port)
        try admitted.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
        let response = try admitted.readResponse()
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.bodyText, "hello")

        XCTAssertEqual(declaredLengths.withLock { $0 }, [1_000_000, 500_000, nil, 5])
        XCTAssertEqual(handlerRuns.withLock { $0 }, 1)
        await server.shutdown()
    }

    func testTheAdmissionTicketReachesTheHandlerAndIsReleasedAfterTheResponse() async throws {
        let releases = LockedValue(0)
        var router = Router()
        router.add(method: "POST", path: "/upload", admission: { _, _ in .admit(ticket: Ticket(releases: releases)) }) { _, ticket in
            HTTPResponse(status: ticket.releases.withLock { $0 } == 0 ? 200 : 500)
        }
        let (server, port) = try startServer(router: router)
        let client = try RawClient(port: port)
        try client.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi")
        XCTAssertEqual(try client.readResponse().status, 200)
        try await assertEventually { releases.withLock { $0 } == 1 }
        await server.shutdown()
    }

    func testTheAdmissionTicketIsReleasedWhenTheRequestNeverReachesItsHandler() async throws {
        let admissions = LockedValue(0)
        let releases = LockedValue(0)
        var router = Router()
        router.add(method: "POST", path: "/upload", admission: { _, _ in
            admissions.withLock { $0 += 1 }
            return .admit(ticket: Ticket(releases: releases))
        }) { _, _ in
            XCTFail("the body never completes")
            return HTTPResponse(status: 200)
        }
        let (server, port) = try startServer(router: router)  // body timeout: 1 s
        let partialBody = "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789"

        // The peer goes away mid-body.
        var leaving: RawClient? = try RawClient(port: port)
        try leaving?.send(partialBody)
        try await assertEventually { admissions.withLock { $0 } == 1 }
        XCTAssertEqual(releases.withLock { $0 }, 0, "held while the body is read")
        leaving = nil
        try await assertEventually { releases.withLock { $0 } == 1 }

        // The rest of the body does not come in time: 408.
        let stalling = try RawClient(port: port, receiveTimeout: 3)
        try stalling.send(partialBody)
        XCTAssertEqual(try stalling.readResponse().status, 408)
        XCTAssertEqual(releases.withLock { $0 }, 2, "released before the 408 goes out, not after the lingering close")
        await server.shutdown()
    }

    // MARK: Cancellation

    /// `/wait` runs until cancelled, recording that it started and that it was cancelled.
    private func waitingRouter(started: LockedValue<Bool>, cancelled: LockedValue<Bool>) -> Router {
        var router = Router()
        router.add(method: "GET", path: "/wait") { _ in
            started.withLock { $0 = true }
            await withTaskCancellationHandler {
                try? await Task.sleep(for: .seconds(10))
            } onCancel: {
                cancelled.withLock { $0 = true }
            }
            return HTTPResponse(status: 200)
        }
        return router
    }

    func testAHandlerIsCancelledWhenItsPeerCloses() async throws {
        let started = LockedValue(false)
        let cancelled = LockedValue(false)
        let (server, port) = try startServer(router: waitingRouter(started: started, cancelled: cancelled))
        var client: RawClient? = try RawClient(port: port)
        try client?.send("GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
        try await assertEventually { started.withLock { $0 } }
        client = nil
        try await assertEventually(within: .seconds(1)) { cancelled.withLock { $0 } }
        await server.shutdown()
    }

    func testTheDrainDeadlineCancelsAHandlerStillRunning() async throws {
        let started = LockedValue(false)
        let cancelled = LockedValue(false)
        var configuration = TestRoutes.configuration()
        configuration.drainTimeout = .milliseconds(300)
        let (server, port) = try startServer(configuration, router: waitingRouter(started: started, cancelled: cancelled))
        let client = try RawClient(port: port)
        try client.send("GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
        try await assertEventually { started.withLock { $0 } }
        await server.shutdown()
        XCTAssertTrue(cancelled.withLock { $0 })
        XCTAssertTrue(client.isClosedByPeer())
    }

    func testARequestArrivingDuringAHandlerWaitsWithoutCancellingIt() async throws {
        let (server, port) = try startServer()
        let client = try RawClient(port: port)
        try client.send("GET /delay?ms=200&tag=first HTTP/1.1\r\nHost: test\r\n\r\n")
        try await Task.sleep(for: .milliseconds(50))  // the first handler is running
        try client.send("GET /delay?ms=0&tag=second HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try client.readResponse().bodyText, "first")
        XCTAssertEqual(try client.readResponse().bodyText, "second")
        await server.shutdown()
    }

    // MARK: Shutdown

    func testTheStartOfShutdownIsAnnouncedOnceAndVisible() async throws {
        let handlerStarted = LockedValue(false)
        let announcements = LockedValue(0)
        let server = HTTPServer(configuration: TestRoutes.configuration(),
                                router: TestRoutes.router { handlerStarted.withLock { $0 = true } },
                                onShutdownBegin: { announcements.withLock { $0 += 1 } })
        let port = try server.start()
        XCTAssertFalse(server.isDraining)
        let busy = try RawClient(port: port)
        try busy.send("GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        try await assertEventually { handlerStarted.withLock { $0 } }

        let shutdown = Task { await server.shutdown() }
        try await assertEventually { announcements.withLock { $0 } == 1 }
        XCTAssertTrue(server.isDraining)
        XCTAssertEqual(try busy.readResponse().status, 200, "the request in flight is still answered")
        await shutdown.value
        await server.shutdown()
        XCTAssertTrue(server.isDraining)
        XCTAssertEqual(announcements.withLock { $0 }, 1)
    }

    // MARK: Response observer

    func testTheResponseObserverSeesEveryFinalResponse() async throws {
        let records = LockedValue<[ResponseRecord]>([])
        var configuration = TestRoutes.configuration()
        configuration.limits = HTTPLimits(maxBodyBytes: 1000)
        let server = HTTPServer(configuration: configuration, router: TestRoutes.router(),
                                responseObserver: { record in records.withLock { $0.append(record) } })
        let port = try server.start()

        let client = try RawClient(port: port)
        try client.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
        XCTAssertEqual(try client.readResponse().status, 200)
        try client.send("GET /nowhere?id=12345 HTTP/1.1\r\nHost: test\r\n\r\n")
        let notFound = try client.readResponse()
        XCTAssertEqual(notFound.status, 404)
        try client.send("DELETE /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 405)
        try client.send("HEAD /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try client.readResponse(bodyless: true).status, 200)
        try client.send("GET /delay?ms=30&tag=late HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 200)

        let tooLarge = try RawClient(port: port)
        try tooLarge.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n")
        XCTAssertEqual(try tooLarge.readResponse().status, 413)

        try await assertEventually { records.withLock { $0.count } == 6 }
        let seen = records.withLock { $0 }
        XCTAssertEqual(seen.map(\.method), ["POST", "GET", "DELETE", "HEAD", "GET", nil])
        XCTAssertEqual(seen.map(\.route), ["/echo", nil, "/hello", "/hello", "/delay", nil])
        XCTAssertEqual(seen.map(\.status), [200, 404, 405, 200, 200, 413])
        XCTAssertEqual(seen.map(\.requestBodyBytes), [5, 0, 0, 0, 0, 0])
        XCTAssertEqual(seen[0].responseBodyBytes, 5)
        XCTAssertEqual(seen[1].responseBodyBytes, notFound.body.count)
        XCTAssertEqual(seen[3].responseBodyBytes, 0, "HEAD")
        XCTAssertEqual(seen[4].responseBodyBytes, "late".utf8.count)
        XCTAssertGreaterThan(seen[5].responseBodyBytes, 0)
        // The delayed handler takes 30 ms; the rest is quick (zero for an answer given in the read that
        // brought its request: the connection's clock is the time of its events).
        XCTAssertGreaterThanOrEqual(seen[4].duration, .milliseconds(30))
        XCTAssertTrue(seen.allSatisfy { $0.duration >= .zero && $0.duration < .seconds(5) })
        await server.shutdown()
    }

    func testTheConnectionLimitRefusalIsObserved() async throws {
        let records = LockedValue<[ResponseRecord]>([])
        var configuration = TestRoutes.configuration()
        configuration.maxConnections = 1
        let server = HTTPServer(configuration: configuration, router: TestRoutes.router(),
                                responseObserver: { record in records.withLock { $0.append(record) } })
        let port = try server.start()
        let first = try RawClient(port: port)
        try first.send("GET /hello HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(try first.readResponse().status, 200)
        let second = try RawClient(port: port)
        XCTAssertEqual(try second.readResponse().status, 503)
        try await assertEventually { records.withLock { $0.count } == 2 }
        let refusal = records.withLock { $0[1] }
        XCTAssertEqual(refusal.status, 503)
        XCTAssertNil(refusal.method)
        XCTAssertNil(refusal.route)
        await server.shutdown()
    }

    // MARK: X-Request-ID

    func testTheServersOwnAnswersEchoTheRequestID() async throws {
        var configuration = TestRoutes.configuration()
        configuration.limits = HTTPLimits(maxBodyBytes: 1000)
        let (server, port) = try startServer(configuration)
        let client = try RawClient(port: port)
        try client.send("GET /nowhere HTTP/1.1\r\nHost: test\r\nX-Request-ID: abc-123\r\n\r\n")
        XCTAssertEqual(try client.readResponse().header("X-Request-ID"), "abc-123")
        try client.send("GET /fail HTTP/1.1\r\nHost: test\r\nX-Request-ID: def-456\r\n\r\n")
        XCTAssertEqual(try client.readResponse().header("X-Request-ID"), "def-456")
        // A handler's response carries it too, unless the handler set its own.
        try client.send("GET /hello HTTP/1.1\r\nHost: test\r\nX-Request-ID: ghi-789\r\n\r\n")
        XCTAssertEqual(try client.readResponse().header("X-Request-ID"), "ghi-789")
        // A chunked body over the limit: 413 after the head.
        try client.send("POST /echo HTTP/1.1\r\nHost: test\r\nX-Request-ID: jkl-012\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "400\r\n\(String(repeating: "b", count: 1024))\r\n")
        let tooLarge = try client.readResponse()
        XCTAssertEqual(tooLarge.status, 413)
        XCTAssertEqual(tooLarge.header("X-Request-ID"), "jkl-012")
        // An id outside the rule is never echoed: the answer carries a fresh one instead.
        for hostile in [String(repeating: "A", count: 129), "a b", "é", "<script>"] {
            let next = try RawClient(port: port)
            try next.send("GET /nowhere HTTP/1.1\r\nHost: test\r\nX-Request-ID: \(hostile)\r\n\r\n")
            let answer = try next.readResponse().header("X-Request-ID") ?? ""
            XCTAssertEqual(answer.count, 32, hostile)
            XCTAssertTrue(RequestID.isSane(answer) && answer != hostile, hostile)
        }
        XCTAssertTrue(RequestID.isSane(String(repeating: "A", count: 128)) && RequestID.isSane("pacs-0001.a_b:c"))
        await server.shutdown()
    }
}
