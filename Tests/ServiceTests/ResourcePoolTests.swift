import XCTest
@testable import Service

final class ResourcePoolTests: XCTestCase {
    func testReservationsHoldTheirAmountUntilReleasedAndGrowOnlyWithinTheCapacity() {
        let pool = ResourcePool(capacity: 1000)
        var first = pool.reserve(600)
        XCTAssertNotNil(first)
        XCTAssertNil(pool.reserve(500), "600 + 500 pass the capacity of 1000")
        XCTAssertNotNil(pool.reserve(400))  // released again at once: nobody holds it
        XCTAssertEqual(pool.held, 600)
        XCTAssertFalse(first!.grow(to: 1100))
        XCTAssertEqual(pool.held, 600)
        XCTAssertTrue(first!.grow(to: 900))
        XCTAssertEqual(pool.held, 900)
        first = nil
        XCTAssertEqual(pool.held, 0)
    }

    func testAShrunkReservationGivesBackTheRestAndKeepsWhatItHolds() {
        let pool = ResourcePool(capacity: 1000)
        var reservation = pool.reserve(800)
        reservation!.shrink(to: 300)
        XCTAssertEqual([reservation!.amount, pool.held], [300, 300])
        reservation!.shrink(to: 500)
        XCTAssertEqual([reservation!.amount, pool.held], [300, 300], "shrinking to more keeps what it holds")
        XCTAssertNotNil(pool.reserve(700), "the 500 given back are free again")
        reservation = nil
        XCTAssertEqual(pool.held, 0, "released, it gives back what it held after shrinking, not what it reserved")
    }

    func testAShrinkLetsInTheWaitersThatNowFit() async throws {
        let pool = ResourcePool(capacity: 10)
        let worstCase = try XCTUnwrap(pool.reserve(9))
        let waiter = Task { try await pool.reserve(6, waitingUntil: .now + .seconds(60)) }
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertEqual(pool.held, 9, "6 does not fit beside 9")
        worstCase.shrink(to: 4)
        let admitted = try await waiter.value
        XCTAssertEqual([admitted.amount, worstCase.amount, pool.held], [6, 4, 10])
    }

    func testWaitersAreServedInArrivalOrderAsAmountsAreReleased() async throws {
        let pool = ResourcePool(capacity: 10)
        var holder = pool.reserve(10)
        let later = ContinuousClock.now + .seconds(60)
        let big = Task { try await pool.reserve(8, waitingUntil: later) }
        try await Task.sleep(for: .milliseconds(50))
        let small = Task { try await pool.reserve(2, waitingUntil: later) }
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertEqual(pool.held, 10)
        holder = nil
        let (bigReservation, smallReservation) = try await (big.value, small.value)
        XCTAssertEqual([bigReservation.amount, smallReservation.amount, pool.held], [8, 2, 10])
        XCTAssertNil(holder)
    }

    func testAWaitEndsAtItsDeadlineOrWhenCancelledAndLeavesTheLine() async throws {
        let pool = ResourcePool(capacity: 10)
        var holder = pool.reserve(10)
        let timedOut = await Result { try await pool.reserve(5, waitingUntil: .now + .milliseconds(100)) }
        XCTAssertEqual(timedOut.failure as? QueueError, .deadlineExceeded)
        let waiting = Task { try await pool.reserve(5, waitingUntil: .now + .seconds(60)) }
        try await Task.sleep(for: .milliseconds(50))
        waiting.cancel()
        let cancelled = await waiting.result
        XCTAssertEqual(cancelled.failure as? QueueError, .cancelled)
        XCTAssertEqual(pool.held, 10, "neither wait took anything")
        XCTAssertNotNil(holder)
        holder = nil
        XCTAssertEqual(pool.held, 0)
    }
}

private extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }

    init(catching body: () async throws(Failure) -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
