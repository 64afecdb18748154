import Dispatch
import Kernels
import XCTest

final class ThreadsTests: XCTestCase {
    func testWithCountHoldsOnItsOwnThreadOnly() {
        let global = Threads.count
        Threads.withCount(1) {
            XCTAssertEqual(Threads.count, 1)
            // On another thread (sync could run the block on this one).
            nonisolated(unsafe) var elsewhere = 0
            let done = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                elsewhere = Threads.count
                done.signal()
            }
            done.wait()
            XCTAssertEqual(elsewhere, global)
            Threads.withCount(3) { XCTAssertEqual(Threads.count, 3) }
            XCTAssertEqual(Threads.count, 1)
        }
        XCTAssertEqual(Threads.count, global)
    }
}
