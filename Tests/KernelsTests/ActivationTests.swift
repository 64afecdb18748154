import Kernels
import XCTest

final class ActivationTests: XCTestCase {
    func testPointValues() {
        let x = Tensor(shape: [3], scalars: [-1, 0, 1])
        // Φ(1) = 0.8413447, σ(1) = 0.7310586.
        XCTAssertEqual(gelu(x).scalars[0], -0.1586553, accuracy: 1e-6)
        XCTAssertEqual(gelu(x).scalars[1], 0)
        XCTAssertEqual(gelu(x).scalars[2], 0.8413447, accuracy: 1e-6)
        XCTAssertEqual(silu(x).scalars[2], 0.7310586, accuracy: 1e-6)
        XCTAssertEqual(silu(x).scalars[0], -0.2689414, accuracy: 1e-6)
        XCTAssertEqual(sigmoid(x).scalars, [0.26894143, 0.5, 0.7310586])
    }

    func testSoftmaxIsStableForLargeLogits() {
        let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 1000, 1001, -Float.infinity])
        let y = softmax(x)
        XCTAssertEqual(y.shape, [2, 3])
        for (value, expected) in zip(y.scalars, [0.09003057, 0.24472847, 0.66524096, 0.26894142, 0.7310586, 0] as [Float]) {
            XCTAssertEqual(value, expected, accuracy: 1e-6)
        }
        XCTAssertEqual(logSoftmax(x).scalars[4], -0.31326169, accuracy: 1e-6)
        XCTAssertEqual(logSoftmax(x).scalars[5], -.infinity)
    }

    func testActivationsMatchPyTorch() throws {
        let x = try kernelFixture("activation_input").tensor
        try forEachInstructionSet { set in
            assertClose(gelu(x), try kernelFixture("gelu_output").tensor, tolerance: 1e-6, set)
            assertClose(silu(x), try kernelFixture("silu_output").tensor, tolerance: 1e-6, set)
            assertClose(softmax(x), try kernelFixture("softmax_output").tensor, tolerance: 1e-6, set)
        }
        assertClose(logSoftmax(x), try kernelFixture("log_softmax_output").tensor, tolerance: 1e-5)
    }
}
