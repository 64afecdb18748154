import Kernels
import XCTest
@testable import Models

final class BatchExecutionTests: XCTestCase {
    func testGroupsAreContiguousNonEmptyAndBalancedByCost() {
        XCTAssertEqual(groupBounds(costs: [4, 4, 4, 4], groups: 2), [0, 2, 4])
        XCTAssertEqual(groupBounds(costs: [8, 1, 1, 1, 1, 1, 1, 1, 1], groups: 2), [0, 1, 9])
        XCTAssertEqual(groupBounds(costs: [1, 1, 1], groups: 3), [0, 1, 2, 3])
        XCTAssertEqual(groupBounds(costs: [5], groups: 2), [0, 1])
        XCTAssertEqual(groupBounds(costs: [2, 2, 2, 2, 2, 2], groups: 4), [0, 2, 3, 5, 6])
        for groups in 1...5 {
            let bounds = groupBounds(costs: [3, 1, 4, 1, 5, 9, 2, 6], groups: groups)
            XCTAssertEqual(bounds.first, 0)
            XCTAssertEqual(bounds.last, 8)
            XCTAssertLessThanOrEqual(bounds.count - 1, groups)
            XCTAssertTrue(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "\(bounds)")
        }
    }

    /// Spreading a batch's slices over the cores changes nothing in the results: each slice draws from its own seed.
    func testSplittingABatchOverTheCoresGivesTheSameResults() throws {
        let engine = try ParityModels.engine()
        let slice = unstack(try ParityFixture().array("input").tensor)[0].reshaped([1, 1, 160, 160])
        let jobs = (0..<3).map { index in
            var parameters = engine.defaults
            parameters.seed = 40 + UInt64(index)
            parameters.restorations = 1 + index
            parameters.steps = 2
            return RestorationJob(images: slice, parameters: parameters)
        }
        let whole = try engine.run(jobs, parallelism: .kernels)
        let split = try Threads.withCount(2) { try engine.run(jobs, parallelism: .slices) }
        XCTAssertEqual(split.map(\.anomalyMap), whole.map(\.anomalyMap))
        XCTAssertEqual(split.map(\.restoredTokens), whole.map(\.restoredTokens))
    }

    func testWarmUpRunsTheDefaultMethodOnOneSlice() throws {
        XCTAssertNoThrow(try ParityModels.engine().warmUp())
    }
}
