import Kernels
import XCTest

final class PoolingTests: XCTestCase {
    func testOneDimensionalWindowsClipAtTheBorders() throws {
        let x = Tensor(shape: [4], scalars: [3, 1, 2, 8])
        XCTAssertEqual(minPool(x, window: [3]).scalars, [1, 1, 1, 2])
        XCTAssertEqual(averagePool(x, window: [3]).scalars, [2, 2, 11 / 3, 5])
    }

    func testTwoDimensionalWindowOnlyTouchesTrailingDimensions() throws {
        // Two 2×2 images in a batch: a 3×3 window covers each whole image, never the other one.
        let x = Tensor(shape: [2, 2, 2], scalars: [1, 2, 3, 4, 10, 20, 30, 40])
        XCTAssertEqual(minPool(x, window: [3, 3]).scalars, [1, 1, 1, 1, 10, 10, 10, 10])
        XCTAssertEqual(averagePool(x, window: [3, 3]).scalars, [2.5, 2.5, 2.5, 2.5, 25, 25, 25, 25])
    }

    func testPoolsMatchPyTorch() throws {
        let x2 = try kernelFixture("pool2d_input").tensor
        XCTAssertEqual(minPool(x2, window: [3, 3]), try kernelFixture("minpool2d_output").tensor)
        assertClose(averagePool(x2, window: [7, 7]), try kernelFixture("avgpool2d_output").tensor, tolerance: 1e-6)
        let x3 = try kernelFixture("pool3d_input").tensor
        XCTAssertEqual(minPool(x3, window: [3, 3, 3]), try kernelFixture("minpool3d_output").tensor)
        assertClose(averagePool(x3, window: [3, 7, 7]), try kernelFixture("avgpool3d_output").tensor, tolerance: 1e-6)
    }
}
