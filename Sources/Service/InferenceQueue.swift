import Dispatch
import Foundation
import Models
import Threading

/// The order in which waiting requests share the worker (docs/service.md, *The inference queue*).
public enum QueueOrder: String, Sendable, CaseIterable {
    /// Each batch takes one slice from each waiting request in turn; a request served moves behind the others,
    /// and a newcomer goes ahead of every request already served.
    case roundRobin = "round-robin"
    /// Each batch takes from the waiting request with the least work left first (ties: the earliest).
    case shortestFirst = "shortest-first"
}

/// Bounds of the inference queue (docs/service.md, *The inference queue*).
public struct QueueLimits: Sendable, Equatable {
    /// Most slices in one batch; 1 turns batching off.
    public var batchMaxSlices: Int
    /// Most cost (slices × restorations × steps, see `RestorationJob.cost`) in one batch: the work unit
    /// a waiting request may have to wait for. A single slice always runs.
    public var batchMaxCost: Int
    /// How long the oldest waiting slice waits for others before a batch that is not full runs.
    public var batchMaxWait: Duration
    /// Slices waiting (not yet in a batch); a request that would go beyond is refused.
    public var maxQueuedSlices: Int
    public var order: QueueOrder

    public init(batchMaxSlices: Int, batchMaxCost: Int, batchMaxWait: Duration, maxQueuedSlices: Int, order: QueueOrder = .roundRobin) {
        (self.batchMaxSlices, self.batchMaxCost, self.batchMaxWait) = (batchMaxSlices, batchMaxCost, batchMaxWait)
        (self.maxQueuedSlices, self.order) = (maxQueuedSlices, order)
    }
}

extension InferenceParameters {
    /// Work of one slice in units of one restoration's detect-and-resample step: R × T (the AR baseline
    /// ignores T; its single raster pass is charged as `arRasterPassSteps` steps).
    public var sliceCost: Int {
        switch method {
        case .mimOOD, .mvtmCritic: restorations * steps
        case .ar: restorations * Self.arRasterPassSteps
        }
    }

    /// The default model's T.
    static let arRasterPassSteps = 8
}

extension RestorationJob {
    /// Its slices' `sliceCost`: what it takes from a batch's `batchMaxCost`.
    public var cost: Int { images.shape[0] * parameters.sliceCost }
}

/// Why the queue did not produce a request's results (or a `ResourcePool` wait ended without its amount).
public enum QueueError: Error, Sendable, Equatable {
    /// The queue holds too many slices to take this request's; the text says how many.
    case full(String)
    case deadlineExceeded
    /// The caller's task was cancelled (its client went away).
    case cancelled
    case stopped
    /// The engine failed on a batch holding this request's slices.
    case engineFailed(String)
}

/// A request's trip through the queue, for its response's timings.
public struct QueueReport: Sendable {
    /// One result per job, in order.
    public let results: [RestorationResult]
    /// From `submit` to the start of the first batch that held one of its slices.
    public let queueWait: Duration
    /// From that start to the end of the last such batch.
    public let inference: Duration
    /// Slices in each batch the request rode in, and how many requests shared it.
    public let batchSlices: [Int]
    public let batchRequests: [Int]
}

/// What one batch was, for metrics and logs.
public struct BatchRecord: Sendable {
    public let slices: Int
    public let requests: Int
    /// Its jobs' `RestorationJob.cost`.
    public let cost: Int
    public let duration: Duration
    public let failed: Bool
}

/// The queue's contents now, for metrics and admission.
public struct QueueDepth: Sendable, Equatable {
    public let requests: Int
    public let slices: Int
}

/// The shared inference queue with dynamic batching. Slices of every request (one restoration job per
/// slice) wait; one worker thread forms a batch of at most `batchMaxSlices` slices and `batchMaxCost` cost,
/// taking slices from the waiting requests in the queue's `order` (round robin or shortest first), waiting
/// at most `batchMaxWait` for a batch to fill, runs it through `run` (the engine: one batch at a time),
/// and hands each request its results when its last slice is done. A long request is thus served one
/// batch-sized share at a time, and a short one that arrives behind it waits for the running batch only. Requests
/// cancelled, or past their deadline, leave the queue at once: their waiting slices are never run, and
/// those in the running batch stop at its next step (`RestorationJob.isAbandoned`).
///
/// `@unchecked Sendable`: every mutable property is guarded by `condition`.
public final class InferenceQueue: @unchecked Sendable {
    public typealias BatchRunner = @Sendable ([RestorationJob]) throws -> [RestorationResult]

    /// Guarded by the queue's `condition`, like the queue itself.
    private final class Request: @unchecked Sendable {
        /// Set once, before the request is queued.
        var jobs: [RestorationJob]
        let submitted: ContinuousClock.Instant
        var results: [RestorationResult?]
        /// The first job not yet taken into a batch.
        var nextJob = 0
        var completedJobs = 0
        var firstBatchStart: ContinuousClock.Instant?
        var batchSlices: [Int] = []
        var batchRequests: [Int] = []
        var continuation: CheckedContinuation<QueueReport, any Error>?
        /// Answered (results, error, cancellation or deadline): nothing more happens to it.
        var isFinished = false
        var outcome: Result<QueueReport, QueueError>?

        init(jobs: [RestorationJob], submitted: ContinuousClock.Instant) {
            self.jobs = jobs
            self.submitted = submitted
            results = Array(repeating: nil, count: jobs.count)
        }

        var waitingJobs: Int { jobs.count - nextJob }
        /// Cost of one slice of this request (its slices share their parameters).
        var jobCost: Int { jobs.first?.cost ?? 1 }
        var waitingCost: Int { waitingJobs * jobCost }
    }

    /// A slice range of one request, taken into a batch.
    private typealias Portion = (request: Request, jobs: Range<Int>)

    public let limits: QueueLimits
    private let run: BatchRunner
    private let onBatch: @Sendable (BatchRecord) -> Void
    private let clock = ContinuousClock()
    private let condition = NSCondition()
    private var waiting: [Request] = []
    private var waitingSlices = 0
    private var waitingCost = 0
    private var isStopping = false
    /// Set by `shutDown`: every job counts as abandoned.
    private var isShutDown = false
    /// Signalled when the worker's loop ends.
    private let workerEnded = DispatchSemaphore(value: 0)

    public init(limits: QueueLimits, onBatch: @escaping @Sendable (BatchRecord) -> Void = { _ in },
                run: @escaping BatchRunner) {
        self.limits = limits
        self.run = run
        self.onBatch = onBatch
        let worker = Thread { [self] in workLoop() }
        worker.name = "InferenceQueue"
        worker.start()
    }

    public var depth: QueueDepth {
        locked { QueueDepth(requests: waiting.count, slices: waitingSlices) }
    }

    /// Stops the worker once the waiting slices are done; later submissions are refused.
    public func stop() {
        locked {
            isStopping = true
            condition.broadcast()
        }
    }

    /// For the process's exit: refuses the waiting requests (`.stopped`), has the running batch stop at its
    /// next step, and returns once the worker has ended — the process must not exit under a running batch
    /// (its buffers are torn down while the kernels still read them).
    public func shutDown() {
        let refused: [Request] = locked {
            isStopping = true
            isShutDown = true
            condition.broadcast()
            return waiting
        }
        for request in refused { finish(request, .failure(.stopped)) }
        workerEnded.wait()
        workerEnded.signal()
    }

    // MARK: Submitting

    /// Queues one job per slice and returns their results once the last is done. Throws `QueueError`:
    /// `.full` when the slices do not fit, `.deadlineExceeded` at `deadline`, `.cancelled` when the
    /// calling task is cancelled — in each case the request's waiting slices leave the queue.
    public func submit(_ jobs: [RestorationJob], deadline: ContinuousClock.Instant) async throws -> QueueReport {
        let request = Request(jobs: jobs, submitted: clock.now)
        // The running batch polls this between steps, so that work nobody waits for stops early.
        let isAbandoned: @Sendable () -> Bool = { [weak self, weak request] in
            guard let self, let request else { return true }
            return locked { request.isFinished || isShutDown }
        }
        request.jobs = jobs.map { job in
            var job = job
            job.isAbandoned = isAbandoned
            return job
        }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + max(.zero, deadline - clock.now).dispatchInterval)
        timer.setEventHandler { [weak self, weak request] in
            if let self, let request { self.finish(request, .failure(.deadlineExceeded)) }
        }
        // Active before anything can release it: Dispatch traps when an inactive source is released.
        timer.activate()
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let refusal: QueueError? = locked {
                    if case .failure(let error)? = request.outcome { return error }  // cancelled before this ran
                    let refusal: QueueError? = if isStopping {
                        .stopped
                    } else if waitingSlices + jobs.count > limits.maxQueuedSlices {
                        .full("\(waitingSlices) slices are waiting; \(jobs.count) more would pass the bound of \(limits.maxQueuedSlices)")
                    } else {
                        nil
                    }
                    if let refusal {
                        request.isFinished = true
                        return refusal
                    }
                    request.continuation = continuation
                    // Round robin: a newcomer goes ahead of the requests already served, so that it rides
                    // in the next batch rather than behind another share of a long request.
                    waiting.insert(request, at: waiting.firstIndex { $0.nextJob > 0 } ?? waiting.endIndex)
                    waitingSlices += jobs.count
                    waitingCost += request.waitingCost
                    condition.broadcast()
                    return nil
                }
                if let refusal { continuation.resume(throwing: refusal) }
            }
        } onCancel: {
            finish(request, .failure(.cancelled))
        }
    }

    /// Answers `request` unless it is answered already; its waiting slices leave the queue.
    private func finish(_ request: Request, _ outcome: Result<QueueReport, QueueError>) {
        let continuation: CheckedContinuation<QueueReport, any Error>? = locked {
            guard !request.isFinished else { return nil }
            request.isFinished = true
            request.outcome = outcome
            if let index = waiting.firstIndex(where: { $0 === request }) {
                waiting.remove(at: index)
                waitingSlices -= request.waitingJobs
                waitingCost -= request.waitingCost
            }
            defer { request.continuation = nil }
            return request.continuation
        }
        continuation?.resume(with: outcome.mapError { $0 as any Error })
    }

    // MARK: The worker

    private func workLoop() {
        while let batch = nextBatch() {
            let jobs = batch.flatMap { portion in portion.jobs.map { portion.request.jobs[$0] } }
            let started = clock.now
            let outcome = Result { try run(jobs) }
            let ended = clock.now
            let record = BatchRecord(slices: jobs.count, requests: batch.count,
                                     cost: batch.reduce(0) { $0 + $1.jobs.count * $1.request.jobCost },
                                     duration: ended - started, failed: (try? outcome.get()) == nil)
            deliver(outcome, to: batch, started: started, ended: ended)
            onBatch(record)
        }
        workerEnded.signal()
    }

    /// Waits until a batch is due, then takes it from the waiting requests in the queue's order; nil once
    /// stopping and empty.
    private func nextBatch() -> [Portion]? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            guard let oldest = waiting.map(\.submitted).min() else {
                if isStopping { return nil }
                condition.wait()
                continue
            }
            let due = oldest + limits.batchMaxWait
            let full = waitingSlices >= limits.batchMaxSlices || waitingCost >= limits.batchMaxCost
            if full || isStopping || clock.now >= due { break }
            _ = condition.wait(until: Date(timeIntervalSinceNow: (due - clock.now).inSeconds))
        }
        return takeBatch()
    }

    /// Fills a batch up to `batchMaxSlices` and `batchMaxCost` (its first slice regardless of cost): round
    /// robin takes one slice from each request per pass and then moves the requests it served behind the
    /// others; shortest first takes all it can from the request with the least work left, then the next.
    /// Each request's slices leave in their own order, so its portion of a batch is one contiguous range.
    private func takeBatch() -> [Portion] {
        let visitOrder = switch limits.order {
        case .roundRobin: waiting
        // Stable: among equal remaining costs, the earlier request first.
        case .shortestFirst: waiting.enumerated().sorted { ($0.element.waitingCost, $0.offset) < ($1.element.waitingCost, $1.offset) }.map(\.element)
        }
        let takenPerVisit = limits.order == .roundRobin ? 1 : Int.max
        var counts = [Int](repeating: 0, count: visitOrder.count)
        var slices = 0, cost = 0
        var tookAny = true
        while tookAny && slices < limits.batchMaxSlices {
            tookAny = false
            for (index, request) in visitOrder.enumerated() {
                var taken = 0
                while taken < takenPerVisit, counts[index] < request.waitingJobs, slices < limits.batchMaxSlices,
                      slices == 0 || cost + request.jobCost <= limits.batchMaxCost {
                    counts[index] += 1
                    taken += 1
                    slices += 1
                    cost += request.jobCost
                }
                tookAny = tookAny || taken > 0
            }
        }
        var batch: [Portion] = []
        for (request, count) in zip(visitOrder, counts) where count > 0 {
            batch.append((request, request.nextJob ..< request.nextJob + count))
            request.nextJob += count
            waitingSlices -= count
            waitingCost -= count * request.jobCost
        }
        let served = Set(batch.map { ObjectIdentifier($0.request) })
        // Round robin: those served go behind those that were not, in the order they were served.
        waiting = waiting.filter { !served.contains(ObjectIdentifier($0)) }
            + batch.map(\.request).filter { $0.waitingJobs > 0 }
        return batch
    }

    private func deliver(_ outcome: Result<[RestorationResult], any Error>, to batch: [Portion],
                         started: ContinuousClock.Instant, ended: ContinuousClock.Instant) {
        let slices = batch.reduce(0) { $0 + $1.jobs.count }
        var answers: [(Request, Result<QueueReport, QueueError>)] = []
        locked {
            var results = (try? outcome.get())?[...]
            for (request, range) in batch {
                let mine = results?.prefix(range.count)
                results = results?.dropFirst(range.count)
                guard !request.isFinished else { continue }
                guard let mine, mine.count == range.count else {
                    let reason = outcome.failureDescription ?? "the engine returned too few results"
                    answers.append((request, .failure(.engineFailed(reason))))
                    continue
                }
                request.firstBatchStart = request.firstBatchStart ?? started
                request.batchSlices.append(slices)
                request.batchRequests.append(batch.count)
                for (index, result) in zip(range, mine) { request.results[index] = result }
                request.completedJobs += range.count
                if request.completedJobs == request.jobs.count {
                    let first = request.firstBatchStart ?? started
                    answers.append((request, .success(QueueReport(
                        results: request.results.compactMap { $0 }, queueWait: first - request.submitted,
                        inference: ended - first, batchSlices: request.batchSlices, batchRequests: request.batchRequests))))
                }
            }
        }
        for (request, answer) in answers { finish(request, answer) }
    }

    private func locked<Value>(_ body: () throws -> Value) rethrows -> Value {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }
}

extension Result where Failure == any Error {
    var failureDescription: String? {
        if case .failure(let error) = self { return "\(error)" }
        return nil
    }
}
