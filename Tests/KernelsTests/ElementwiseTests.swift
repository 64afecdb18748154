import Kernels
import XCTest

final class ElementwiseTests: XCTestCase {
    func testAdd() throws {
        let a = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
        XCTAssertEqual(add(a, a).scalars, [2, 4, 6, 8])
    }

    func testAddRepeatsOverLeadingDimensions() throws {
        // A position embedding [1, N=2, dim=2] added to both items of [B=2, N, dim].
        let x = Tensor(shape: [2, 2, 2], scalars: [0, 0, 0, 0, 10, 10, 10, 10])
        let positions = Tensor(shape: [1, 2, 2], scalars: [1, 2, 3, 4])
        XCTAssertEqual(add(x, positions).scalars, [1, 2, 3, 4, 11, 12, 13, 14])
    }

    func testPermuteMovesChannelsLast() throws {
        // [N=1, C=2, H=2, W=3] → [N, H, W, C]
        let x = Tensor(shape: [1, 2, 2, 3], scalars: (0..<12).map(Float.init))
        let y = permute(x, [0, 2, 3, 1])
        XCTAssertEqual(y.shape, [1, 2, 3, 2])
        XCTAssertEqual(y.scalars, [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11])
        XCTAssertEqual(permute(y, [0, 3, 1, 2]), x)
    }
}
