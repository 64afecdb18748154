import Dispatch
import Kernels
import Threading

/// How one batch uses the cores.
public enum BatchParallelism: String, Sendable, CaseIterable {
    /// The batch's slices are split into one group per kernel thread, balanced by cost, and each group runs
    /// single-threaded on its own core: no fork and join per kernel call, and each core's activations stay
    /// in its own cache. Falls back to `kernels` for a single slice.
    case slices
    /// The whole batch runs as one engine call whose every kernel splits its work over all threads.
    case kernels
}

extension Engine {
    /// Runs `jobs` with the given parallelism. Results come back in job order and do not depend on the
    /// split: each job draws from its own seed.
    public func run(_ jobs: [RestorationJob], parallelism: BatchParallelism) throws -> [RestorationResult] {
        let bounds = groupBounds(costs: jobs.map(\.parameters.restorations), groups: min(jobs.count, Threads.count))
        guard parallelism == .slices, bounds.count > 2 else { return try run(jobs) }
        let outcomes = LockedValue([Result<[RestorationResult], any Error>?](repeating: nil, count: bounds.count - 1))
        DispatchQueue.concurrentPerform(iterations: bounds.count - 1) { group in
            let outcome = Result { try Threads.withCount(1) { try run(Array(jobs[bounds[group] ..< bounds[group + 1]])) } }
            outcomes.withLock { $0[group] = outcome }
        }
        return try outcomes.withLock { $0 }.flatMap { try $0!.get() }
    }

    /// Runs one blank slice through every stage of the default method once (first-touch page faults, lazy
    /// allocations), so that the first request does not pay for them.
    public func warmUp() throws {
        let size = vqvae.config.resolution
        let blank = Tensor(shape: [1, vqvae.config.inChannels, size, size],
                           scalars: .init(repeating: 0, count: vqvae.config.inChannels * size * size))
        _ = try run([RestorationJob(images: blank, parameters: defaults)])
    }
}

/// Boundaries `[0, …, costs.count]` of at most `groups` contiguous, non-empty runs of about equal total cost.
func groupBounds(costs: [Int], groups: Int) -> [Int] {
    let total = costs.reduce(0, +)
    var bounds = [0]
    var accumulated = 0
    for (index, cost) in costs.enumerated().dropLast() {
        accumulated += cost
        // Cut after this job once the runs so far hold their share of the total.
        if bounds.count < groups && accumulated * groups >= total * bounds.count { bounds.append(index + 1) }
    }
    bounds.append(costs.count)
    return bounds
}
