// The engine's thread budget and the one loop that spends it.
//
//   Threads.count = 2            // the one place to set how many cores the kernels use
//
// BLAS itself always runs single-threaded; the kernels split their work (batch items, attention heads,
// blocks of GEMM rows or output pixels) into `Threads.count` chunks and run the chunks on the calling
// thread and the kernel workers below. docs/kernels.md has the measurements behind both choices.
import CKernels
import Dispatch
import Synchronization

import Glibc

public enum Threads {
    /// How many chunks the kernels split parallel work into; initially the number of online CPUs. Inside
    /// `withCount` on the same thread, that call's count.
    public static var count: Int {
        get { localCount ?? threadCount.load(ordering: .relaxed) }
        set {
            precondition(newValue >= 1, "Threads.count must be at least 1, got \(newValue)")
            threadCount.store(newValue, ordering: .relaxed)
        }
    }

    /// Runs `body` with the kernels it calls on this thread splitting their work into `count` chunks,
    /// leaving the process-wide setting alone: several engine runs on separate threads, one core each.
    public static func withCount<Result>(_ count: Int, _ body: () throws -> Result) rethrows -> Result {
        precondition(count >= 1, "Threads.withCount needs at least 1, got \(count)")
        return try $localCount.withValue(count, operation: body)
    }

    // A task-local read from synchronous code is bound to the calling thread.
    @TaskLocal private static var localCount: Int?
}

private let threadCount = Atomic<Int>(max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))

/// Runs `body` over `0..<count` split into at most `Threads.count` contiguous ranges, concurrently
/// when there is more than one. Each range is handed over whole so the body can set up scratch
/// memory once per range.
func parallelRanges(_ count: Int, _ body: (Range<Int>) -> Void) {
    let chunks = min(count, Threads.count)
    if chunks <= 1 {
        if count > 0 { body(0..<count) }
        return
    }
    // The chunk bodies capture raw pointers and run on other threads. That is sound here: both paths
    // return only after every chunk has run, and the kernels hand each chunk disjoint parts of their output.
    withoutActuallyEscaping({ (chunk: Int) in body(count * chunk / chunks ..< count * (chunk + 1) / chunks) }) { chunkBody in
        nonisolated(unsafe) let chunkBody = chunkBody
        // A chunk that itself splits its work, or a second engine running on another thread, finds the
        // workers taken and uses Dispatch's pool.
        if !KernelWorkers.shared.perform(chunks, chunkBody) {
            DispatchQueue.concurrentPerform(iterations: chunks) { chunkBody($0) }
        }
    }
}

/// Threads that stay between the kernels' parallel loops, spinning a short while before they sleep.
///
/// Why not `DispatchQueue.concurrentPerform` alone: its threads sleep as soon as a loop ends, and waking
/// one cost about 40 µs per loop on this project's machines, more than many kernels' chunks take, and one
/// slice is hundreds of such loops (docs/kernels.md, *The kernel workers*). The spin covers the gaps
/// between the loops of a pass; between passes and between requests the workers sleep.
///
/// One loop at a time: `generation` is odd while a loop is open. The caller publishes the loop's body
/// and count, makes `generation` odd, runs chunks itself, waits until every chunk is done, makes it even
/// again and waits until no worker holds the body, so the body never outlives the call.
/// `@unchecked Sendable`: `loop` is written only while no worker can read it (generation even and
/// `workersInLoop` zero), and read only by a worker counted in `workersInLoop` during that generation.
private final class KernelWorkers: @unchecked Sendable {
    static let shared = KernelWorkers()

    /// How long a thread spins for the next loop (a worker) or for the last chunk (the caller) before it
    /// sleeps.
    private static let spinNanoseconds: UInt64 = 100_000

    private let busy = Atomic<Bool>(false)
    private let generation = Atomic<Int>(0)
    private let nextChunk = Atomic<Int>(0)
    private let chunksDone = Atomic<Int>(0)
    private let workersInLoop = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let callerSleeps = Atomic<Bool>(false)
    private nonisolated(unsafe) var loop: (chunks: Int, body: (Int) -> Void)?
    /// Grown only under `mutex`; read without it by each loop, which needs the lock only to start workers.
    private let workerCount = Atomic<Int>(0)
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Signalled when a loop opens (to sleeping workers) and when its last chunk ends (to a sleeping caller).
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    private init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(finished, nil)
    }

    /// Runs `body(0)` … `body(chunks − 1)` on this thread and the workers; false, having run nothing,
    /// when another loop holds the workers.
    func perform(_ chunks: Int, _ body: @escaping (Int) -> Void) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        startWorkers(upTo: chunks - 1)
        loop = (chunks, body)
        nextChunk.store(0, ordering: .relaxed)
        chunksDone.store(0, ordering: .relaxed)
        generation.add(1, ordering: .sequentiallyConsistent)   // odd: open
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(mutex)
        }
        let ran = runChunks(body, of: chunks)
        if ran > 0 { chunksDone.add(ran, ordering: .sequentiallyConsistent) }
        awaitChunks(chunks)
        generation.add(1, ordering: .sequentiallyConsistent)   // even: closed to workers that come late
        // A worker counted here is between two atomic operations: spin, then give up the core if it was
        // descheduled there.
        if !Self.spin(until: { workersInLoop.load(ordering: .sequentiallyConsistent) == 0 }) {
            while workersInLoop.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
        }
        loop = nil
        return true
    }

    /// Spins, then sleeps, until all `chunks` chunks are done. Sleeping matters when the cores are
    /// shared (the service's request handling): a waiting thread that spun on would keep the core from the
    /// worker it waits for.
    private func awaitChunks(_ chunks: Int) {
        guard !Self.spin(until: { chunksDone.load(ordering: .acquiring) == chunks }) else { return }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        callerSleeps.store(true, ordering: .sequentiallyConsistent)
        defer { callerSleeps.store(false, ordering: .sequentiallyConsistent) }
        while chunksDone.load(ordering: .sequentiallyConsistent) < chunks { pthread_cond_wait(finished, mutex) }
    }

    /// Counts a worker's chunks as done and wakes the caller if these were the last and it sleeps.
    private func report(_ ran: Int, of chunks: Int) {
        guard ran > 0, chunksDone.add(ran, ordering: .sequentiallyConsistent).newValue == chunks,
              callerSleeps.load(ordering: .sequentiallyConsistent) else { return }
        pthread_mutex_lock(mutex)
        pthread_cond_signal(finished)
        pthread_mutex_unlock(mutex)
    }

    /// Claims and runs chunks until none is left; returns how many it ran.
    private func runChunks(_ body: (Int) -> Void, of chunks: Int) -> Int {
        var ran = 0
        while case let chunk = nextChunk.wrappingAdd(1, ordering: .relaxed).oldValue, chunk < chunks {
            body(chunk)
            ran += 1
        }
        return ran
    }

    private func startWorkers(upTo wanted: Int) {
        guard workerCount.load(ordering: .relaxed) < wanted else { return }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while workerCount.load(ordering: .relaxed) < wanted {
            var thread = pthread_t()
            let started = pthread_create(&thread, nil, { _ in KernelWorkers.shared.workLoop() }, nil)
            guard started == 0 else { return }   // the loop still runs: the caller takes every chunk left
            pthread_detach(thread)
            workerCount.add(1, ordering: .relaxed)
        }
    }

    private func workLoop() -> Never {
        var finished = 0   // the last generation this worker took part in
        while true {
            let current = awaitOpenLoop(after: finished)
            finished = current
            workersInLoop.add(1, ordering: .sequentiallyConsistent)
            // The caller may have closed this loop, and even opened the next one, in the meantime.
            if generation.load(ordering: .sequentiallyConsistent) == current {
                let (ran, chunks) = takePart()
                report(ran, of: chunks)
            }
            workersInLoop.subtract(1, ordering: .sequentiallyConsistent)
        }
    }

    /// Runs chunks of the open loop; returns how many, and the loop's count. The loop's body is released
    /// before this returns.
    private func takePart() -> (ran: Int, chunks: Int) {
        guard let (chunks, body) = loop else { return (0, 0) }
        return (runChunks(body, of: chunks), chunks)
    }

    /// Spins until `condition` holds (true) or `spinNanoseconds` have passed (false).
    private static func spin(until condition: () -> Bool) -> Bool {
        let deadline = DispatchTime.now().uptimeNanoseconds + spinNanoseconds
        var spins = 0
        while !condition() {
            spins += 1
            if spins % 64 == 0 && DispatchTime.now().uptimeNanoseconds > deadline { return false }
            ck_spin_pause()
        }
        return true
    }

    /// Spins, then sleeps, until a loop other than `finished` is open; returns its generation.
    private func awaitOpenLoop(after finished: Int) -> Int {
        func openLoop() -> Int? {
            let current = generation.load(ordering: .sequentiallyConsistent)
            return current & 1 == 1 && current != finished ? current : nil
        }
        var open: Int?
        if Self.spin(until: { open = openLoop(); return open != nil }), let open { return open }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        sleepers.add(1, ordering: .sequentiallyConsistent)
        defer { sleepers.subtract(1, ordering: .sequentiallyConsistent) }
        while true {
            if let open = openLoop() { return open }
            pthread_cond_wait(wake, mutex)
        }
    }
}
