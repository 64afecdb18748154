import Kernels
import XCTest
@testable import Models

final class BatchExecutionTests: XCTestCase {
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
