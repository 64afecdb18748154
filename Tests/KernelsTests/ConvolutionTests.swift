import Kernels
import XCTest

final class ConvolutionTests: XCTestCase {
    func testThreeByThreeOnesWithPaddingCountsNeighbours() throws {
        let x = Tensor(shape: [1, 1, 3, 3], scalars: Array(repeating: 1, count: 9))
        let weight = Tensor(shape: [1, 1, 3, 3], scalars: Array(repeating: 1, count: 9))
        let y = conv2d(x, weight: weight, bias: Tensor(shape: [1], scalars: [0.5]), padding: 1)
        XCTAssertEqual(y.shape, [1, 1, 3, 3])
        XCTAssertEqual(y.scalars, [4, 6, 4, 6, 9, 6, 4, 6, 4].map { $0 + 0.5 })
    }

    func testDownsamplerPadsRightAndBottomThenStridesByTwo() throws {
        // Input 0...15 in a 4×4 image, a 3×3 kernel of ones: each output sums its window of the image
        // padded by one zero row below and one zero column on the right.
        let x = Tensor(shape: [1, 1, 4, 4], scalars: (0..<16).map(Float.init))
        let weight = Tensor(shape: [1, 1, 3, 3], scalars: Array(repeating: 1, count: 9))
        let y = conv2d(x, weight: weight, stride: 2, padding: Padding(top: 0, left: 0, bottom: 1, right: 1))
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.scalars, [45, 39, 66, 50])
    }

    func testConvolutionsMatchPyTorch() throws {
        let cases: [(input: String, weight: String, bias: String, output: String, stride: Int, padding: Padding)] = [
            ("conv3x3_input", "conv3x3_weight", "conv3x3_bias", "conv3x3_output", 1, 1),
            ("downsample_input", "downsample_weight", "downsample_bias", "downsample_output", 2,
             Padding(top: 0, left: 0, bottom: 1, right: 1)),
            ("downsample_input", "downsample_weight", "downsample_bias", "conv3x3_stride2_output", 2, 1),
            ("conv1x1_input", "conv1x1_weight", "conv1x1_bias", "conv1x1_output", 1, 0),
            ("conv1x1_input", "conv1x1_weight", "conv1x1_bias", "conv1x1_stride2_output", 2, 0),
        ]
        for threads in [1, 2, 5] {
            for c in cases {
                let y = try Threads.withCount(threads) {
                    try conv2d(kernelFixture(c.input).tensor, weight: kernelFixture(c.weight).tensor,
                               bias: kernelFixture(c.bias).tensor, stride: c.stride, padding: c.padding)
                }
                assertClose(y, try kernelFixture(c.output).tensor, tolerance: 2e-5)
            }
        }
    }

    func testUpsampleRepeatsEachPixelTwiceEachWay() throws {
        let x = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        let y = upsampleNearest2x(x)
        XCTAssertEqual(y.shape, [1, 1, 4, 4])
        XCTAssertEqual(y.scalars, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
        XCTAssertEqual(try upsampleNearest2x(kernelFixture("upsample_input").tensor),
                       try kernelFixture("upsample_output").tensor)
    }
}
