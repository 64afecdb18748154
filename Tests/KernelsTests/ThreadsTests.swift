import Dispatch
import Kernels
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
}
