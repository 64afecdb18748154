import XCTest
@testable import HTTPServer

final class BodyPaceTests: XCTestCase {
    private let pace = BodyPace(timeout: .seconds(10), deadline: .seconds(100), minimumBytesPerSecond: 1000)

    func testEachRuleSetsTheTimeWhenItIsTheFirstToExpire() {
        // At the head: the wait for the first bytes.
        XCTAssertEqual(pace.timeLeft(elapsed: .zero, received: 0).1, .stalled)
        // A byte after 9 s: enough only until 10 s + 1 ms.
        let (left, reason) = pace.timeLeft(elapsed: .seconds(9), received: 1)
        XCTAssertEqual(reason, .tooSlow)
        XCTAssertEqual(left, .milliseconds(1001))
        // Fast enough, but near the end of the whole-body deadline.
        XCTAssertEqual(pace.timeLeft(elapsed: .seconds(95), received: 10_000_000).1, .pastDeadline)
        XCTAssertEqual(pace.timeLeft(elapsed: .seconds(95), received: 10_000_000).0, .seconds(5))
        // Past it: nothing left.
        XCTAssertEqual(pace.timeLeft(elapsed: .seconds(101), received: 10_000_000).0, .zero)
    }

    func testNoMinimumRateLeavesTheWaitAndTheDeadline() {
        let unpaced = BodyPace(timeout: .seconds(10), deadline: .seconds(100), minimumBytesPerSecond: 0)
        XCTAssertEqual(unpaced.timeLeft(elapsed: .seconds(50), received: 1).1, .stalled)
    }

    func testAllowancesDoubleFromAFloorAndStopAtTheDeclaredLength() {
        XCTAssertEqual(nextBodyAllowance(needed: 1, granted: 0, declaredLength: 1 << 28, maxBodyBytes: 1 << 28), 64 * 1024)
        XCTAssertEqual(nextBodyAllowance(needed: 70_000, granted: 65_536, declaredLength: 1 << 28, maxBodyBytes: 1 << 28), 131_072)
        XCTAssertEqual(nextBodyAllowance(needed: 500_000, granted: 65_536, declaredLength: 1 << 28, maxBodyBytes: 1 << 28), 500_000)
        XCTAssertEqual(nextBodyAllowance(needed: 70_000, granted: 65_536, declaredLength: 100_000, maxBodyBytes: 1 << 28), 100_000)
        XCTAssertEqual(nextBodyAllowance(needed: 0, granted: 0, declaredLength: 100, maxBodyBytes: 1 << 28), 100)
        // A chunked body: up to the body limit.
        XCTAssertEqual(nextBodyAllowance(needed: 900, granted: 800, declaredLength: nil, maxBodyBytes: 1000), 1000)
    }
}
