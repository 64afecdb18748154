// The engine's thread budget and the one loop that spends it.
//
//   Threads.count = 2            // the one place to set how many cores the kernels use
//
// BLAS itself always runs single-threaded; the kernels split their work (batch items, attention heads,
// blocks of GEMM rows or output pixels) into `Threads.count` chunks and run the chunks with
// Dispatch's concurrentPerform. docs/kernels.md has the measurement behind that choice.
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
    // concurrentPerform wants a @Sendable closure, and the bodies capture raw pointers. That is sound
    // here: concurrentPerform returns only after every chunk has run, and the kernels hand each chunk
    // disjoint parts of their output.
    withoutActuallyEscaping(body) { body in
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            body(count * chunk / chunks ..< count * (chunk + 1) / chunks)
        }
    }
}
