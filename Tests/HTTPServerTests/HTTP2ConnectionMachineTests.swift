import CNGHTTP2
@testable import HTTPServer
import XCTest

/// `HTTP2ConnectionMachine` driven event by event, without sockets or a clock: an nghttp2 client session's
/// bytes go in as `bytesRead`, the machine's writes go back to it, handlers are answered by the test, and
/// time moves only when the test says so.
final class HTTP2ConnectionMachineTests: XCTestCase {
    private final class Harness {
        private var machine: HTTP2ConnectionMachine
        private(set) var client: HTTP2TestClient!
        private var fromClient: [UInt8] = []
        var now: ContinuousClock.Instant
        private(set) var handlers: [Int32: HTTPRequest] = [:]
        private(set) var cancelled: [Int32] = []
        private(set) var records: [ResponseRecord] = []
        private(set) var timer: ContinuousClock.Instant?
        private(set) var isClosed = false

        init(_ configuration: ServerConfiguration, clientSettings: [(Int32, UInt32)] = []) throws {
            let start = ContinuousClock.now
            now = start
            machine = try XCTUnwrap(HTTP2ConnectionMachine(configuration: configuration, http2: XCTUnwrap(configuration.http2),
                                                           router: TestRoutes.router(), acceptedAt: start))
            client = try HTTP2TestClient(settings: clientSettings) { [unowned self] bytes in fromClient += bytes }
            try deliver(.started)
        }

        /// Submits a request and lets both sides exchange until neither has more to say.
        @discardableResult
        func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) throws -> Int32 {
            let stream = try client.request(method, path, headers: headers, body: body)
            try exchange()
            return stream
        }

        func exchange() throws {
            while !fromClient.isEmpty && !isClosed {
                let bytes = fromClient
                fromClient = []
                try deliver(.bytesRead(bytes))
            }
        }

        func deliver(_ event: HTTP2ConnectionMachine.Event) throws {
            var pending = [event]
            while !pending.isEmpty {
                for action in machine.receive(pending.removeFirst(), at: now) {
                    switch action {
                    case .write(let bytes):
                        try client.feed(bytes)
                        pending.append(.writeCompleted)
                    case .armTimer(let deadline): timer = deadline
                    case .runHandler(let stream, _, let request): handlers[stream] = request
                    case .cancelHandler(let stream): cancelled.append(stream)
                    case .observe(let record): records.append(record)
                    case .close: isClosed = true
                    }
                }
            }
            try exchange()
        }

        func answer(_ stream: Int32, _ response: HTTPResponse) throws {
            try deliver(.handlerFinished(stream: stream, .success(response)))
        }

        /// Moves time to the armed deadline and fires the timer.
        func fireTimer() throws {
            now = try XCTUnwrap(timer)
            try deliver(.timerFired)
        }
    }

    private func configuration(_ change: (inout ServerConfiguration) -> Void = { _ in }) -> ServerConfiguration {
        var configuration = TestRoutes.configuration()
        change(&configuration)
        return configuration
    }

    func testAHeaderSectionOverTheListLimitIsAnswered431AndTheConnectionGoesOn() throws {
        let harness = try Harness(configuration { $0.http2?.maxHeaderListBytes = 1024 })
        let refused = try harness.request("GET", "/hello", headers: [("x-big", String(repeating: "a", count: 2000))])
        XCTAssertEqual(harness.client.responses[refused]?.status, 431)
        XCTAssertEqual(harness.records.last?.status, 431)
        XCTAssertTrue(harness.handlers.isEmpty)

        let accepted = try harness.request("GET", "/hello", headers: [("x-request-id", "r-1")])
        XCTAssertEqual(harness.handlers[accepted]?.head.path, "/hello")
        XCTAssertEqual(harness.handlers[accepted]?.head.version, .http2)
        XCTAssertEqual(harness.handlers[accepted]?.head.headers["host"], "test")
        try harness.answer(accepted, HTTPResponse(status: 200, body: Array("hi".utf8)))
        XCTAssertEqual(harness.client.responses[accepted]?.body, Array("hi".utf8))
        XCTAssertEqual(harness.client.responses[accepted]?.header("x-request-id"), "r-1")
        XCTAssertFalse(harness.isClosed)
    }

    func testABodyOverTheLimitIs413FromItsLengthOrItsBytesAndTheOthersGoOn() throws {
        let harness = try Harness(configuration { $0.limits.maxBodyBytes = 1000 })
        let declared = try harness.request("POST", "/echo", headers: [("content-length", "5000")], body: Array(repeating: 1, count: 5000))
        let undeclared = try harness.request("POST", "/echo", body: Array(repeating: 2, count: 5000))
        let small = try harness.request("POST", "/echo", body: Array(repeating: 3, count: 10))
        XCTAssertEqual(harness.client.responses[declared]?.status, 413)
        XCTAssertEqual(harness.client.responses[undeclared]?.status, 413)
        XCTAssertEqual(harness.handlers.keys.sorted(), [small])
        XCTAssertEqual(harness.handlers[small]?.body, Array(repeating: 3, count: 10))
    }

    func testAResponseThePeerGivesNoWindowForTimesOut() throws {
        let harness = try Harness(configuration(), clientSettings: [(Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), 0)])
        let stream = try harness.request("GET", "/text")
        try harness.answer(stream, HTTPResponse(status: 200, body: TestRoutes.longText))
        XCTAssertEqual(harness.client.responses[stream]?.status, 200)
        XCTAssertEqual(harness.client.responses[stream]?.body, [])
        let answeredAt = harness.now
        try harness.fireTimer()
        XCTAssertTrue(harness.isClosed)
        XCTAssertEqual(harness.now - answeredAt, TestRoutes.configuration().writeTimeout)
    }

    func testAnIdleConnectionGetsGoAwayAndCloses() throws {
        let harness = try Harness(configuration())
        let stream = try harness.request("GET", "/hello")
        try harness.answer(stream, HTTPResponse(status: 204))
        let idleFrom = harness.now
        try harness.fireTimer()
        XCTAssertEqual(harness.now - idleFrom, TestRoutes.configuration().idleTimeout)
        XCTAssertEqual(harness.client.goAway?.errorCode, 0)
        XCTAssertEqual(harness.client.goAway?.lastStreamID, stream)
        XCTAssertTrue(harness.isClosed)
    }

    func testResetsPastTheAllowanceEndTheConnectionWithEnhanceYourCalm() throws {
        let harness = try Harness(configuration {
            $0.http2?.resetBurst = 3
            $0.http2?.resetsPerSecond = 1
        })
        // Within the allowance, refilled over time: each reset cancels its stream's handler. (Six resets in
        // all: the library's backstop, at twice the burst, counts on its own clock, which does not move here.)
        for _ in 0..<2 {
            let stream = try harness.request("GET", "/hello")
            try harness.client.reset(stream)
            try harness.exchange()
            harness.now += .seconds(1)
        }
        XCTAssertEqual(harness.cancelled.count, 2)
        XCTAssertNil(harness.client.goAway)
        // Four at once: the fourth finds the bucket empty.
        for _ in 0..<4 {
            try harness.client.reset(harness.client.request("GET", "/hello"))
        }
        try harness.exchange()
        XCTAssertEqual(harness.client.goAway?.errorCode, UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue))
        XCTAssertTrue(harness.isClosed)
    }
}
