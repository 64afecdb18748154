@testable import HTTPServer
import Threading  // LockedValue: TSan does not see Synchronization.Mutex's locking on Linux
import XCTest

/// The connection's decisions without a socket: each case is a sequence of events, at seconds after the
/// accept, and the exact actions each must give (written as short strings, see `describe`). The default
/// configuration's timeouts: header 10 s, body 30 s (and 16 KiB/s after it), idle 75 s, write 30 s, linger 2 s.
final class ConnectionStateMachineTests: XCTestCase {
    typealias Machine = ConnectionStateMachine

    struct Case {
        var name: String
        var configuration = ServerConfiguration()
        var steps: [(at: Double, event: Machine.Event, actions: [String])]
    }

    static func bytes(_ text: String) -> Machine.Event { .bytesRead(Array(text.utf8)) }

    static func answered(_ status: Int, _ headers: [(String, String)] = []) -> Machine.Event {
        .handlerFinished(.success(HTTPResponse(status: status, headers: HTTPHeaders(headers))))
    }

    static let get = bytes("GET /hello HTTP/1.1\r\nHost: h\r\n\r\n")
    /// The actions of a response written on a connection that stays open.
    static let keptOpen = ["read", "timer 75s"]
    /// The actions of a final response written on a connection that closes: our side shut, input discarded.
    static let lingers = ["shut down writes", "read", "timer 2s"]

    static var cases: [Case] {
        [
            Case(name: "keep-alive: two requests on one connection", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, answered(200), ["observe 200", "send 200"]),
                (2, .writeCompleted, keptOpen),
                (3, get, ["run GET /hello", "watch"]),
                (4, answered(200), ["observe 200", "send 200"]),
                (4, .writeCompleted, keptOpen),
            ]),
            Case(name: "pipelining: the second request waits until the first response is written", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("GET /hello?n=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /hello?n=2 HTTP/1.1\r\nHost: h\r\n\r\n"),
                 ["run GET /hello?n=1", "watch"]),
                (2, answered(200), ["observe 200", "send 200"]),
                (2, .writeCompleted, ["run GET /hello?n=2"]),
                (3, answered(200), ["observe 200", "send 200"]),
                (3, .writeCompleted, keptOpen),
            ]),
            Case(name: "a request arriving while a handler runs waits in the socket", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, .inputWaiting, ["pause"]),
                (3, answered(200), ["observe 200", "send 200"]),
                (3, .writeCompleted, keptOpen),
                (3, get, ["run GET /hello", "watch"]),
            ]),
            Case(name: "100-continue: sent when the body is wanted", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"),
                 ["send 100 Continue", "timer 30s"]),
                (1, .writeCompleted, []),
                (2, bytes("hello"), ["run POST /echo hello", "watch"]),
                (3, answered(200), ["observe 200", "send 200"]),
            ]),
            Case(name: "100-continue: not sent to a client already sending its body", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhel"),
                 ["timer 30s"]),
                (2, bytes("lo"), ["run POST /echo hello", "watch"]),
            ]),
            Case(name: "100-continue: not sent when admission refuses; the refusal closes", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"),
                 ["observe 503", "send 503 close", "watch"]),
                (1, .writeCompleted, lingers),
                (2, .peerClosed, ["close"]),
            ]),
            Case(name: "100-continue: not sent to an unknown path; the 404 closes", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /nowhere HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"),
                 ["observe 404", "send 404 close", "watch"]),
                (1, .writeCompleted, lingers),
            ]),
            Case(name: "an expectation other than 100-continue is 417", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("GET /hello HTTP/1.1\r\nHost: h\r\nExpect: something-else\r\n\r\n"),
                 ["observe 417", "send 417 close", "watch"]),
            ]),
            Case(name: "admission refuses a client sending its body: the body is discarded while lingering", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\naaaa"),
                 ["observe 503", "send 503 close", "watch"]),
                (1, .inputWaiting, ["pause"]),
                (1, .writeCompleted, lingers),
                (2, bytes("aaaa"), []),
                (3, .timerFired, ["close"]),
            ]),
            Case(name: "admission admits a small body", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"), ["run POST /upload hi", "watch"]),
            ]),
            Case(name: "the body allowance grows with the body and its refusal closes", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /limited HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n"
                    + String(repeating: "a", count: 0x10000) + "\r\n"), ["timer 30s"]),
                (2, bytes("1\r\nb\r\n"), ["observe 503", "send 503 close", "watch"]),
            ]),
            Case(name: "an unknown path with a body: the body is dropped, 404, the connection stays", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /nowhere HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
                 ["observe 404", "send 404", "watch"]),
                (1, .writeCompleted, keptOpen),
            ]),
            Case(name: "a handler's error is a 500 and the connection stays", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, .handlerFinished(.failure(CancellationError())), ["observe 500", "send 500"]),
                (2, .writeCompleted, keptOpen),
            ]),
            Case(name: "header timeout: 408, then the lingering close", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("GET /hello HTTP/1.1\r\nHo"), []),
                (10, .timerFired, ["observe 408", "send 408 close", "watch"]),
                (10, .writeCompleted, lingers),
                (11, .peerClosed, ["close"]),
            ]),
            Case(name: "header timeout of a later request: from its first byte", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, answered(200), ["observe 200", "send 200"]),
                (2, .writeCompleted, keptOpen),
                (5, bytes("GET"), ["timer 10s"]),
                (15, .timerFired, ["observe 408", "send 408 close", "watch"]),
            ]),
            Case(name: "a connection that never sends closes at the header timeout; an early timer is armed again", steps: [
                (0, .started, ["read", "timer 10s"]),
                (4, .timerFired, ["timer 6s"]),
                (10, .timerFired, ["close"]),
                (11, .timerFired, []),
            ]),
            Case(name: "body timeout: a stalled body is 408", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"), ["timer 30s"]),
                (31, .timerFired, ["observe 408", "send 408 close", "watch"]),
                (31, .writeCompleted, lingers),
            ]),
            Case(name: "body timeout: a body below the minimum rate is 408 once its first timeout has passed", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + String(repeating: "a", count: 1000)),
                 ["timer 30s"]),
                (20, bytes(String(repeating: "a", count: 1000)), ["timer 11122ms"]),
                (31.123, .timerFired, ["observe 408", "send 408 close", "watch"]),
            ]),
            Case(name: "idle timeout: a kept connection with no request closes silently", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, answered(200), ["observe 200", "send 200"]),
                (2, .writeCompleted, keptOpen),
                (77, .timerFired, ["close"]),
            ]),
            Case(name: "write timeout: a peer that stops reading is closed", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, answered(200), ["observe 200", "send 200"]),
                (2, .writeBlocked, ["timer 30s"]),
                (10, .writeBlocked, ["timer 30s"]),  // some progress: the timeout starts again
                (40, .timerFired, ["close"]),
            ]),
            Case(name: "a peer that hangs up while its response is written: the write tells", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, answered(200), ["observe 200", "send 200"]),
                (2, .writeBlocked, ["timer 30s"]),
                (3, .peerHungUp, ["pause"]),
                (3, .peerClosed, ["close"]),
            ]),
            Case(name: "the peer gone while its handler runs: the handler is cancelled, the connection closed", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, .peerHungUp, ["cancel handler", "close"]),
                (3, answered(200), []),
            ]),
            Case(name: "the peer gone mid-body: closed", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"), ["timer 30s"]),
                (2, .peerClosed, ["close"]),
            ]),
            Case(name: "drain while idle: closed at once", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, answered(200), ["observe 200", "send 200"]),
                (2, .writeCompleted, keptOpen),
                (3, .drainBegan, ["close"]),
            ]),
            Case(name: "drain before the first byte: closed at once", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, .drainBegan, ["close"]),
            ]),
            Case(name: "drain while handling: the response closes the connection", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, .drainBegan, []),
                (3, answered(200), ["observe 200", "send 200 close"]),
                (3, .writeCompleted, lingers),
            ]),
            Case(name: "drain while a response is written: closed once it is out", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, answered(200), ["observe 200", "send 200"]),
                (2, .drainBegan, []),
                (3, .writeCompleted, ["close"]),
            ]),
            Case(name: "drain timeout: a handler still running is cancelled and the connection closed", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, .drainBegan, []),
                (27, .drainTimedOut, ["cancel handler", "close"]),
            ]),
            Case(name: "Connection: close from the client", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("GET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), ["run GET /hello", "watch"]),
                (2, answered(200), ["observe 200", "send 200 close"]),
                (2, .writeCompleted, lingers),
                (3, .peerClosed, ["close"]),
            ]),
            Case(name: "Connection: close from the handler", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, get, ["run GET /hello", "watch"]),
                (2, answered(200, [("Connection", "close")]), ["observe 200", "send 200 close"]),
                (2, .writeCompleted, lingers),
            ]),
            Case(name: "HTTP/1.0 without keep-alive closes; with it, stays", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), ["run GET /hello", "watch"]),
                (2, answered(200), ["observe 200", "send 200"]),
                (2, .writeCompleted, keptOpen),
                (3, bytes("GET /hello HTTP/1.0\r\n\r\n"), ["run GET /hello", "watch"]),
                (4, answered(200), ["observe 200", "send 200 close"]),
                (4, .writeCompleted, lingers),
            ]),
            Case(name: "a parse error: a problem answer, then the lingering close", steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("GET /hello HTTP/1.1\r\nHost: h\r\nNo colon here\r\n\r\n"), ["observe 400", "send 400 close", "watch"]),
                (1, .writeCompleted, lingers),
                (2, bytes("GET /hello HTTP/1.1\r\n\r\n"), []),
                (2, .peerClosed, ["close"]),
            ]),
            Case(name: "a body over the limit: 413 from the head", configuration: {
                var configuration = ServerConfiguration()
                configuration.limits = HTTPLimits(maxBodyBytes: 1000)
                return configuration
            }(), steps: [
                (0, .started, ["read", "timer 10s"]),
                (1, bytes("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n"), ["observe 413", "send 413 close", "watch"]),
            ]),
        ]
    }

    /// Routes whose handlers never run here (the machine only asks for them to run): /hello, /echo, and
    /// /upload, admitted up to 100 declared bytes, and /limited, whose body may take 100 000 bytes.
    static var router: Router {
        var router = Router()
        router.add(method: "GET", path: "/hello") { _ in HTTPResponse(status: 200) }
        router.add(method: "POST", path: "/echo") { _ in HTTPResponse(status: 200) }
        router.add(method: "POST", path: "/upload", admission: { _, declaredBodyLength -> Admission<Void> in
            (declaredBodyLength ?? 0) > 100 ? .refuse(HTTPResponse(status: 503)) : .admit()
        }) { _, _ in HTTPResponse(status: 200) }
        router.add(method: "POST", path: "/limited", admission: { _, _ -> Admission<Void> in
            .admit(bodyAllowance: Allowance(limit: 100_000))
        }) { _, _ in HTTPResponse(status: 200) }
        return router
    }

    private struct Allowance: BodyAllowance {
        let limit: Int
        func extend(to bytes: Int) -> HTTPResponse? { bytes <= limit ? nil : HTTPResponse(status: 503) }
    }

    func testCases() {
        for testCase in Self.cases {
            let accepted = ContinuousClock.now
            var machine = Machine(configuration: testCase.configuration, router: Self.router, acceptedAt: accepted)
            for (index, step) in testCase.steps.enumerated() {
                let now = accepted + .seconds(step.at)
                let actions = machine.receive(step.event, at: now).map { describe($0, now: now) }
                XCTAssertEqual(actions, step.actions, "\(testCase.name), step \(index + 1)")
            }
        }
    }

    func testAnAnswerGivenMidBodyIsObservedWithItsRequestAndCarriesItsID() throws {
        let accepted = ContinuousClock.now
        var machine = Machine(configuration: ServerConfiguration(), router: Self.router, acceptedAt: accepted)
        _ = machine.receive(.started, at: accepted)
        _ = machine.receive(Self.bytes("POST /echo HTTP/1.1\r\nHost: h\r\nX-Request-ID: abc-1\r\nContent-Length: 10\r\n\r\nabc"),
                            at: accepted + .seconds(1))
        let actions = machine.receive(.timerFired, at: accepted + .seconds(31))
        guard actions.count == 3, case .observe(let record) = actions[0], case .writeResponse(let response, nil, false) = actions[1] else {
            return XCTFail("\(actions.map { describe($0, now: accepted) })")
        }
        XCTAssertEqual(response.status, 408)
        XCTAssertEqual(response.headers[RequestID.header], "abc-1")
        XCTAssertEqual(record.method, "POST")
        XCTAssertEqual(record.route, "/echo")
        XCTAssertEqual(record.status, 408)
        XCTAssertEqual(record.duration, .seconds(31), "from the accept, for the first request")
        XCTAssertEqual(record.requestBodyBytes, 0, "the body was not complete")
        XCTAssertEqual(record.responseBodyBytes, response.body.count)
        XCTAssertEqual(record.requestID, "abc-1")
    }

    func testTheTicketIsReleasedWithItsRequest() {
        final class Ticket: Sendable {
            let releases: LockedValue<Int>
            init(releases: LockedValue<Int>) { self.releases = releases }
            deinit { releases.withLock { $0 += 1 } }
        }
        let releases = LockedValue(0)
        var router = Router()
        router.add(method: "POST", path: "/upload", admission: { _, _ in .admit(ticket: Ticket(releases: releases)) }) { _, ticket in
            HTTPResponse(status: ticket.releases.withLock { $0 })
        }
        let accepted = ContinuousClock.now
        var machine = Machine(configuration: ServerConfiguration(), router: router, acceptedAt: accepted)
        _ = machine.receive(.started, at: accepted)
        _ = machine.receive(Self.bytes("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"), at: accepted)
        XCTAssertEqual(releases.withLock { $0 }, 0, "held while the body is read")
        _ = machine.receive(.peerClosed, at: accepted)
        XCTAssertEqual(releases.withLock { $0 }, 1, "released with the request")
    }
}

/// An action as the cases write it; timers as the time from `now`.
private func describe(_ action: ConnectionStateMachine.Action, now: ContinuousClock.Instant) -> String {
    switch action {
    case .setReading(.reading): "read"
    case .setReading(.watching): "watch"
    case .setReading(.paused): "pause"
    case .writeContinue: "send 100 Continue"
    case .writeResponse(let response, _, let keepAlive): "send \(response.status)\(keepAlive ? "" : " close")"
    case .armTimer(let deadline): "timer \(shortly(deadline - now))"
    case .runHandler(_, let request):
        "run \(request.head.method) \(request.head.target)\(request.body.isEmpty ? "" : " " + String(decoding: request.body, as: UTF8.self))"
    case .cancelHandler: "cancel handler"
    case .observe(let record): "observe \(record.status)"
    case .shutDownWriteSide: "shut down writes"
    case .close: "close"
    }
}

/// "10s", or "11122ms" when not whole seconds.
private func shortly(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let milliseconds = Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    return milliseconds % 1000 == 0 ? "\(milliseconds / 1000)s" : "\(milliseconds)ms"
}
