import Kernels
import Threading
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

    /// Passes split over the cores give the results of single-threaded passes: a lone job of 2 slices × 4
    /// restorations (8 sequences per pass while all restorations run, fewer after).
    func testPassesOverTheCoresGiveTheSingleThreadedResults() throws {
        let engine = try ParityModels.engine()
        let slice = unstack(try ParityFixture().array("input").tensor)[0].reshaped([1, 1, 160, 160])
        var parameters = engine.defaults
        (parameters.seed, parameters.restorations, parameters.steps) = (7, 4, 3)
        let job = RestorationJob(images: stack([slice, slice], leading: [2]).reshaped([2, 1, 160, 160]), parameters: parameters)
        let single = try Threads.withCount(1) { try engine.run([job]) }
        let split = try Threads.withCount(2) { try engine.run([job]) }
        XCTAssertEqual(split.map(\.anomalyMap), single.map(\.anomalyMap))
        XCTAssertEqual(split.map(\.restoredTokens), single.map(\.restoredTokens))
        XCTAssertEqual(split.map(\.sequencesScored), single.map(\.sequencesScored))
    }

    /// `overCores` gives each thread a share when the items divide evenly or are many, and otherwise runs
    /// one pass over all of them; the outputs come back in item order either way.
    func testOverCoresSplitsEvenOrLargeCounts() throws {
        let engine = try ParityModels.engine()
        for (count, threads, shares) in [(4, 2, [2, 2]), (6, 3, [2, 2, 2]), (17, 2, [8, 9]), (3, 2, [3]), (15, 2, [15]),
                                         (1, 2, [1]), (4, 1, [4])] {
            let seen = LockedValue<[Int]>([])
            let outputs = Threads.withCount(threads) {
                engine.overCores(Array(0..<count)) { share in
                    seen.withLock { $0.append(share.count) }
                    return share.map { $0 * 10 }
                }
            }
            XCTAssertEqual(outputs, (0..<count).map { $0 * 10 })
            XCTAssertEqual(seen.withLock { $0 }.sorted(), shares, "\(count) items over \(threads) threads")
        }
    }

    func testWarmUpRunsTheDefaultMethodOnOneSlice() throws {
        XCTAssertNoThrow(try ParityModels.engine().warmUp())
    }
}
