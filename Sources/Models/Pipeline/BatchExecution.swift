import Dispatch
import Kernels
import Threading

/// How one batch uses the cores.
public enum BatchParallelism: String, Sendable, CaseIterable {
    /// Each kernel thread takes the batch's next job (a slice, as the service and `mimood detect` make
    /// them) as soon as it is free and runs it single-threaded on its own core: no fork and join per
    /// kernel call, each core's activations stay in its own cache, and a core whose slices exited early
    /// takes more. Falls back to `kernels` for a single job.
    case slices
    /// The whole batch runs as one engine call, each pass split over the threads (`Engine.overCores`).
    case kernels
}

extension Engine {
    /// Runs `jobs` with the given parallelism. Results come back in job order and do not depend on the
    /// split: each job draws from its own seed.
    public func run(_ jobs: [RestorationJob], parallelism: BatchParallelism) throws -> [RestorationResult] {
        let workers = min(jobs.count, Threads.count)
        guard parallelism == .slices, workers > 1 else { return try run(jobs) }
        // A slice's cost is known only once it has run (early exit), so each core takes the next job from a
        // shared counter when it is free, rather than a share of the batch fixed beforehand. One job at a time
        // measured faster than chunks of 4 (docs/engine.md): better balance, and smaller activations.
        let next = LockedValue(0)
        let outcomes = LockedValue([Result<RestorationResult, any Error>?](repeating: nil, count: jobs.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while case let index = next.withLock({ counter in counter += 1; return counter - 1 }), index < jobs.count {
                let outcome = Result { try Threads.withCount(1) { try run([jobs[index]])[0] } }
                outcomes.withLock { $0[index] = outcome }
            }
        }
        return try outcomes.withLock { $0 }.map { try $0!.get() }
    }

    /// `pass` over `items`, one output per item, split into one share per thread, each share run
    /// single-threaded: one fork and join for the pass instead of one per kernel (which a core taken away
    /// for a moment, by request handling or the hypervisor, holds up), and each core's activations stay
    /// in its own cache. Measured faster than every kernel over every thread both for a lone slice and
    /// for the forced 32-slice batch (docs/engine.md, *A batch over the cores*). Shares differ by at most
    /// one item, which leaves a core idle for one item's share of the pass: a few items that do not
    /// divide evenly (3 sequences on 2 cores) therefore run as one pass over every thread instead, as does
    /// a single item.
    func overCores<Item, Output: Sendable>(_ items: [Item], _ pass: ([Item]) -> [Output]) -> [Output] {
        let parts = Threads.count
        guard parts > 1, items.count >= parts, items.count % parts == 0 || items.count >= 8 * parts else { return pass(items) }
        let outputs = LockedValue([[Output]](repeating: [], count: parts))
        withoutActuallyEscaping(pass) { pass in
            nonisolated(unsafe) let (pass, items) = (pass, items)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let share = Array(items[items.count * part / parts ..< items.count * (part + 1) / parts])
                let output = Threads.withCount(1) { pass(share) }
                outputs.withLock { $0[part] = output }
            }
        }
        return outputs.withLock { $0 }.flatMap { $0 }
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
