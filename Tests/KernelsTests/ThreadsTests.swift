import Dispatch
import Foundation
@testable import Kernels
import XCTest

final class ThreadsTests: XCTestCase {
    func testWithCountHoldsOnItsOwnThreadOnly() {
        let global = Threads.count
        let local = global + 1   // unlike the global count on any machine, one core included
        Threads.withCount(local) {
            XCTAssertEqual(Threads.count, local)
            // On another thread (sync could run the block on this one).
            nonisolated(unsafe) var elsewhere = 0
            let done = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                elsewhere = Threads.count
                done.signal()
            }
            done.wait()
            XCTAssertEqual(elsewhere, global)
            Threads.withCount(local + 1) { XCTAssertEqual(Threads.count, local + 1) }
            XCTAssertEqual(Threads.count, local)
        }
        XCTAssertEqual(Threads.count, global)
    }

    /// Every index is handed to exactly one range, and the ranges tile 0..<count in order, through the
    /// kernel workers (loops back to back, after the workers have gone to sleep, and with one chunk slow
    /// enough that whoever waits for it sleeps too). Each range writes only
    /// its own cells (no lock, which the thread sanitizer would not see through) and the caller reads them
    /// after the loop.
    func testParallelRangesHandEachIndexToOneRange() {
        let capacity = 40
        let visits = UnsafeMutableBufferPointer<Int>.allocate(capacity: capacity)
        let ends = UnsafeMutableBufferPointer<Int>.allocate(capacity: capacity)   // at a range's start: its end
        defer { visits.deallocate(); ends.deallocate() }
        nonisolated(unsafe) let (visitCells, endCells) = (visits, ends)
        for threads in [2, 3, 5] {
            Threads.withCount(threads) {
                for round in 0..<300 {
                    if round == 150 { Thread.sleep(forTimeInterval: 0.02) }   // past the workers' spin: they sleep, then wake
                    let count = round % (capacity - 3) + 1
                    visits.update(repeating: 0)
                    ends.update(repeating: -1)
                    parallelRanges(count) { range in
                        if round % 10 == 0 && range.lowerBound == 0 { Thread.sleep(forTimeInterval: 0.001) }
                        for index in range { visitCells[index] += 1 }
                        endCells[range.lowerBound] = range.upperBound
                    }
                    XCTAssertEqual(Array(visits.prefix(count)), Array(repeating: 1, count: count))
                    var (start, ranges) = (0, 0)
                    while start < count, ends[start] > start { (start, ranges) = (ends[start], ranges + 1) }
                    XCTAssertEqual(start, count, "the ranges do not tile 0..<\(count)")
                    XCTAssertEqual(ranges, min(count, threads))
                }
            }
        }
    }

    /// Loops started from several threads at once, and loops inside a chunk, each run all their work
    /// (one holds the kernel workers; the others use Dispatch's threads).
    func testConcurrentAndNestedLoopsEachRunAllTheirWork() {
        let callers = 4, loops = 200, outer = 6, inner = 10
        let cells = UnsafeMutableBufferPointer<Int>.allocate(capacity: callers * outer * inner)
        cells.update(repeating: 0)
        defer { cells.deallocate() }
        nonisolated(unsafe) let visits = cells
        DispatchQueue.concurrentPerform(iterations: callers) { caller in
            Threads.withCount(2) {
                for _ in 0..<loops {
                    parallelRanges(outer) { outerRange in
                        for o in outerRange {
                            parallelRanges(inner) { innerRange in
                                for i in innerRange { visits[(caller * outer + o) * inner + i] += 1 }
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(Array(cells), Array(repeating: loops, count: callers * outer * inner))
    }
}
