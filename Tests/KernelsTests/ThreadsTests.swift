import Dispatch
import Kernels
import XCTest

final class ThreadsTests: XCTestCase {
    func testWithCountHoldsOnItsOwnThreadOnly() {
        let global = Threads.count
        Threads.withCount(1) {
            XCTAssertEqual(Threads.count, 1)
            let elsewhere = DispatchQueue(label: "elsewhere").sync { Threads.count }
            XCTAssertEqual(elsewhere, global)
            Threads.withCount(3) { XCTAssertEqual(Threads.count, 3) }
            XCTAssertEqual(Threads.count, 1)
        }
        XCTAssertEqual(Threads.count, global)
    }
}
