import Dispatch
import Foundation
import Imaging
import Kernels
import Models
import Threading
import XCTest
@testable import Service

/// The queue around the real engine (the parity checkpoint), with a runner that records each batch's
/// jobs (told apart by their seeds) and can be held shut, so that slices pile up while a batch runs.
final class InferenceQueueTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let engine: Engine = {
        try! Engine(Checkpoint(directory: repository.appendingPathComponent("Tests/Fixtures/parity/checkpoint").path))
    }()
    static let slice: Tensor = {
        let stack = try! NPY.decode([UInt8](Data(contentsOf: repository.appendingPathComponent("Tests/Fixtures/parity/input.npy"))))
        return Tensor(shape: [1, 1, 160, 160], scalars: Array(stack.values.prefix(160 * 160)))
    }()

    /// A batch runner that waits at `gate` before each batch and records the seeds of its jobs.
    final class RecordingRunner: Sendable {
        let batches = LockedValue<[[UInt64]]>([])
        /// The steps each batch's jobs ran, in the same order.
        let stepsRun = LockedValue<[[Int]]>([])
        let gate = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        let isGated: Bool

        init(gated: Bool) { isGated = gated }

        func run(_ jobs: [RestorationJob]) throws -> [RestorationResult] {
            started.signal()
            if isGated { gate.wait() }
            batches.withLock { $0.append(jobs.map(\.parameters.seed)) }
            let results = try InferenceQueueTests.engine.run(jobs)
            stepsRun.withLock { $0.append(results.map(\.stepsRun)) }
            return results
        }

        func openAll() { for _ in 0..<100 { gate.signal() } }
    }

    private func makeQueue(_ runner: RecordingRunner, slices: Int = 16, cost: Int = 64, wait: Duration = .milliseconds(5),
                           queued: Int = 100, order: QueueOrder = .roundRobin) -> InferenceQueue {
        let queue = InferenceQueue(limits: QueueLimits(batchMaxSlices: slices, batchMaxCost: cost, batchMaxWait: wait,
                                                       maxQueuedSlices: queued, order: order)) { try runner.run($0) }
        addTeardownBlock {
            runner.openAll()
            queue.stop()
        }
        return queue
    }

    /// `count` one-slice jobs with seeds first, first + 1, …, and `restorations` and `steps` each (1: quick).
    /// With `everyStep`, every token is resampled at every step (λ below any probability), so all steps run.
    private static func jobs(_ count: Int, seed first: UInt64, restorations: Int = 1, steps: Int = 1,
                             everyStep: Bool = false) -> [RestorationJob] {
        (0..<count).map { index in
            var parameters = Self.engine.defaults
            parameters.seed = first + UInt64(index)
            parameters.restorations = restorations
            parameters.steps = steps
            if everyStep { parameters.lambda = -1 }
            return RestorationJob(images: Self.slice, parameters: parameters)
        }
    }

    private static var later: ContinuousClock.Instant { .now + .seconds(60) }

    func testRequestsArrivingWhileABatchRunsShareTheNextBatchAndGetTheirOwnResults() async throws {
        let runner = RecordingRunner(gated: true)
        let queue = makeQueue(runner)
        async let first = queue.submit(Self.jobs(1, seed: 100), deadline: Self.later)
        runner.started.wait()  // the first batch holds the worker
        async let second = queue.submit(Self.jobs(1, seed: 200, restorations: 2), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 1 }  // in this order
        async let third = queue.submit(Self.jobs(2, seed: 300), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 3 }
        runner.openAll()
        let reports = try await [first, second, third]
        XCTAssertEqual(runner.batches.withLock { $0 }, [[100], [200, 300, 301]])
        XCTAssertEqual(reports[1].batchSlices, [3])
        XCTAssertEqual(reports[1].batchRequests, [2])
        XCTAssertEqual(reports[2].results.count, 2)
        // Batching changes nothing: each request's results equal those of running it alone.
        let alone = try Self.engine.run(Self.jobs(1, seed: 200, restorations: 2))
        XCTAssertEqual(reports[1].results[0].anomalyMap, alone[0].anomalyMap)
        XCTAssertEqual(reports[1].results[0].parameters.restorations, 2)
        XCTAssertEqual(queue.depth, QueueDepth(requests: 0, slices: 0))
    }

    /// A volume waiting, then a single slice, then another volume, behind a running batch of two slices.
    private func sharedBatches(_ order: QueueOrder) async throws -> (batches: [[UInt64]], volume: QueueReport) {
        let runner = RecordingRunner(gated: true)
        let queue = makeQueue(runner, slices: 2, order: order)
        async let blocker = queue.submit(Self.jobs(1, seed: 1), deadline: Self.later)
        runner.started.wait()
        async let volume = queue.submit(Self.jobs(5, seed: 10), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 5 }
        async let single = queue.submit(Self.jobs(1, seed: 20), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 6 }
        async let second = queue.submit(Self.jobs(3, seed: 30), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 9 }
        runner.openAll()
        let reports = try await [blocker, volume, single, second]
        return (runner.batches.withLock { $0 }, reports[1])
    }

    func testRoundRobinTakesASliceFromEachRequestInTurn() async throws {
        let (batches, volume) = try await sharedBatches(.roundRobin)
        XCTAssertEqual(batches, [[1], [10, 20], [30, 11], [31, 12], [32, 13], [14]])
        // Spread over five batches, the volume draws exactly as when run whole (each slice from its own seed);
        // its maps agree to float rounding, which depends on how many images share a VQ-VAE pass.
        let whole = try Self.engine.run(Self.jobs(5, seed: 10))
        XCTAssertEqual(volume.results.map(\.restoredTokens), whole.map(\.restoredTokens))
        for (split, alone) in zip(volume.results, whole) {
            XCTAssertLessThan(zip(split.anomalyMap.scalars, alone.anomalyMap.scalars).map { abs($0 - $1) }.max() ?? 1, 1e-5)
        }
        XCTAssertEqual(volume.batchSlices.count, 5)
    }

    func testASliceArrivingWhileALongRequestRunsRidesInTheNextBatch() async throws {
        for order in QueueOrder.allCases {
            let runner = RecordingRunner(gated: true)
            let queue = makeQueue(runner, slices: 1, order: order)
            async let volume = queue.submit(Self.jobs(4, seed: 10), deadline: Self.later)
            runner.started.wait()  // the volume's first slice runs, the rest wait behind it
            runner.gate.signal()
            runner.started.wait()  // its second slice runs
            async let single = queue.submit(Self.jobs(1, seed: 20), deadline: Self.later)
            try await waitUntil { queue.depth.slices == 3 }
            runner.openAll()
            _ = try await [volume, single]
            XCTAssertEqual(runner.batches.withLock { $0 }, [[10], [11], [20], [12], [13]], "\(order)")
        }
    }

    func testShortestFirstServesTheRequestWithTheLeastWorkLeft() async throws {
        let (batches, _) = try await sharedBatches(.shortestFirst)
        XCTAssertEqual(batches, [[1], [20, 30], [31, 32], [10, 11], [12, 13], [14]])
    }

    func testTheCostBoundCountsRestorationsAndStepsAndAHeavySliceStillRunsAlone() async throws {
        let runner = RecordingRunner(gated: true)
        let queue = makeQueue(runner, cost: 4)
        async let blocker = queue.submit(Self.jobs(1, seed: 1), deadline: Self.later)
        runner.started.wait()
        async let pairs = queue.submit(Self.jobs(3, seed: 10, restorations: 2), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 3 }
        async let heavy = queue.submit(Self.jobs(1, seed: 20, steps: 8), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 4 }
        runner.openAll()
        _ = try await [blocker, pairs, heavy]
        // Costs 2, 2, 2 and 8 against a bound of 4: two pairs, then the heavy slice alone (it has waited), then the last pair.
        XCTAssertEqual(runner.batches.withLock { $0 }, [[1], [10, 11], [20], [12]])
    }

    func testAJobInTheRunningBatchStopsAtTheNextStepOnceItsRequestIsCancelled() async throws {
        let runner = RecordingRunner(gated: true)
        let queue = makeQueue(runner, slices: 2)
        let abandoned = Self.submission(queue, Self.jobs(1, seed: 1, steps: 4, everyStep: true), deadline: Self.later)
        runner.started.wait()  // taken into a batch, held before the engine runs it
        abandoned.cancel()
        let abandonedError = await Self.error(of: abandoned)
        XCTAssertEqual(abandonedError, .cancelled)
        runner.openAll()
        _ = try await queue.submit(Self.jobs(1, seed: 2, steps: 4, everyStep: true), deadline: Self.later)
        XCTAssertEqual(runner.stepsRun.withLock { $0 }, [[1], [4]], "the abandoned job stopped after its first step; the same job wanted ran all four")
    }

    func testShutDownRefusesTheWaitingStopsTheRunningBatchAtItsNextStepAndReturnsOnceTheWorkerEnded() async throws {
        let runner = RecordingRunner(gated: true)
        let queue = makeQueue(runner, slices: 1)
        let running = Self.submission(queue, Self.jobs(1, seed: 1, steps: 4, everyStep: true), deadline: Self.later)
        runner.started.wait()
        let waiting = Self.submission(queue, Self.jobs(1, seed: 2), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 1 }
        let ended = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            queue.shutDown()
            ended.signal()
        }
        let waitingError = await Self.error(of: waiting)
        XCTAssertEqual(waitingError, .stopped)
        XCTAssertEqual(ended.wait(timeout: .now() + 0.2), .timedOut, "returned while a batch was running")
        runner.openAll()
        XCTAssertEqual(ended.wait(timeout: .now() + 30), .success)
        _ = await running.result
        XCTAssertEqual(runner.stepsRun.withLock { $0 }, [[1]], "the running job stopped after its first step")
    }

    func testABatchThatIsNotFullWaitsAtMostTheMaximumWait() async throws {
        let runner = RecordingRunner(gated: false)
        let queue = makeQueue(runner, wait: .milliseconds(300))
        let started = ContinuousClock.now
        let report = try await queue.submit(Self.jobs(1, seed: 1), deadline: Self.later)
        XCTAssertGreaterThanOrEqual(report.queueWait, .milliseconds(290))
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(300))
    }

    func testAFullBatchDoesNotWait() async throws {
        let runner = RecordingRunner(gated: false)
        let queue = makeQueue(runner, slices: 2, wait: .seconds(30))
        let report = try await queue.submit(Self.jobs(2, seed: 1), deadline: Self.later)
        XCTAssertLessThan(report.queueWait, .seconds(5))
    }

    func testARequestPastItsDeadlineIsAnsweredThenAndItsSlicesNeverRun() async throws {
        let runner = RecordingRunner(gated: true)
        let queue = makeQueue(runner)
        async let blocker = queue.submit(Self.jobs(1, seed: 1), deadline: Self.later)
        runner.started.wait()
        let late = Self.submission(queue, Self.jobs(3, seed: 50), deadline: .now + .milliseconds(200))
        let lateError = await Self.error(of: late)
        XCTAssertEqual(lateError, .deadlineExceeded)
        XCTAssertEqual(queue.depth.slices, 0)
        runner.openAll()
        _ = try await blocker
        _ = try await queue.submit(Self.jobs(1, seed: 60), deadline: Self.later)
        XCTAssertEqual(runner.batches.withLock { $0 }, [[1], [60]])
    }

    func testACancelledRequestLeavesTheQueueAtOnce() async throws {
        let runner = RecordingRunner(gated: true)
        let queue = makeQueue(runner)
        async let blocker = queue.submit(Self.jobs(1, seed: 1), deadline: Self.later)
        runner.started.wait()
        let abandoned = Self.submission(queue, Self.jobs(2, seed: 70), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 2 }
        abandoned.cancel()
        let abandonedError = await Self.error(of: abandoned)
        XCTAssertEqual(abandonedError, .cancelled)
        XCTAssertEqual(queue.depth.slices, 0)
        runner.openAll()
        _ = try await blocker
        _ = try await queue.submit(Self.jobs(1, seed: 80), deadline: Self.later)
        XCTAssertEqual(runner.batches.withLock { $0 }, [[1], [80]])
    }

    func testTheSliceBoundRefusesWhatWouldPassIt() async throws {
        let runner = RecordingRunner(gated: true)
        let queue = makeQueue(runner, queued: 3)
        async let blocker = queue.submit(Self.jobs(1, seed: 1), deadline: Self.later)
        runner.started.wait()
        async let waiting = queue.submit(Self.jobs(2, seed: 10), deadline: Self.later)
        try await waitUntil { queue.depth.slices == 2 }
        let refused = Self.submission(queue, Self.jobs(2, seed: 20), deadline: Self.later)
        let error = await Self.error(of: refused)
        guard case .full(let detail)? = error else { return XCTFail("4 slices would pass the bound of 3, got \(String(describing: error))") }
        XCTAssertTrue(detail.contains("bound of 3"), detail)
        runner.openAll()
        _ = try await [blocker, waiting]
    }


    private static func submission(_ queue: InferenceQueue, _ jobs: [RestorationJob],
                                   deadline: ContinuousClock.Instant) -> Task<QueueReport, any Error> {
        Task { try await queue.submit(jobs, deadline: deadline) }
    }

    /// The queue error a submission ended with; nil when it gave results.
    private static func error(of submission: Task<QueueReport, any Error>) async -> QueueError? {
        if case .failure(let error) = await submission.result { return error as? QueueError }
        return nil
    }

    private struct Timeout: Error {}

    private func waitUntil(_ condition: @Sendable () -> Bool, line: UInt = #line) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                XCTFail("the queue did not reach the expected state in 10 s", line: line)
                throw Timeout()
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
