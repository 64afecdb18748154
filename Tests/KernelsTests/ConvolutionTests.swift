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
        try forEachInstructionSet { set in
            for threads in [1, 2, 5] {
                for c in cases {
                    let y = try Threads.withCount(threads) {
                        try conv2d(kernelFixture(c.input).tensor, weight: kernelFixture(c.weight).tensor,
                                   bias: kernelFixture(c.bias).tensor, stride: c.stride, padding: c.padding)
                    }
                    assertClose(y, try kernelFixture(c.output).tensor, tolerance: 2e-5, "\(set), \(c.output):")
                }
            }
        }
    }

    func testStrideOneConvolutionsMatchADoubleReferenceOnUnevenShapes() {
        // With AVX-512, the direct kernel: output channels not a multiple of its 8, rows shorter and longer
        // than its 48-position tile, an uneven kernel with uneven padding, and the decoder's one-channel
        // conv_out. Winograd's (3×3, padding 1, 32 columns or more, 8 output channels or more): odd heights
        // and widths (a tile row of 17 tiles, the last one column wide), output channels not a multiple of 8,
        // and an image cut into blocks of rows by the scratch budget, the last block shorter.
        let cases: [(input: [Int], outChannels: Int, kernel: (Int, Int), padding: Padding)] = [
            ([2, 3, 7, 11], 10, (3, 3), 1),
            ([1, 5, 9, 53], 3, (5, 3), Padding(top: 2, left: 1, bottom: 0, right: 2)),
            ([1, 4, 20, 20], 1, (3, 3), 1),
            ([2, 3, 7, 33], 10, (3, 3), 1),
            ([1, 40, 14, 96], 24, (3, 3), 1),
        ]
        for c in cases {
            var generator = Xoshiro256StarStar(seed: UInt64(c.outChannels))
            func random(_ shape: [Int]) -> Tensor {
                Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &generator) })
            }
            let x = random(c.input)
            // Scaled by 1/√fan-in as PyTorch initialises a layer, so that outputs stay near 1 and the
            // tolerance is relative to them (the im2col + BLAS paths sum 360 terms for the widest case).
            let fanIn = c.input[1] * c.kernel.0 * c.kernel.1
            let drawn = random([c.outChannels, c.input[1], c.kernel.0, c.kernel.1])
            let weight = Tensor(shape: drawn.shape, scalars: drawn.scalars.map { $0 / Float(fanIn).squareRoot() })
            let bias = random([c.outChannels])
            let expected = referenceConvolution(x, weight: weight, bias: bias, padding: c.padding)
            forEachInstructionSet { set in
                for threads in [1, 3] {
                    let y = Threads.withCount(threads) { conv2d(x, weight: weight, bias: bias, padding: c.padding) }
                    assertClose(y, expected, tolerance: 1e-5, "\(set), \(threads) threads, input \(c.input):")
                }
            }
        }
    }

    /// Stride-1 cross-correlation with zero padding, in Double.
    private func referenceConvolution(_ x: Tensor, weight: Tensor, bias: Tensor, padding: Padding) -> Tensor {
        let (batch, inChannels, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (outChannels, kernelHeight, kernelWidth) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let outHeight = height + padding.top + padding.bottom - kernelHeight + 1
        let outWidth = width + padding.left + padding.right - kernelWidth + 1
        var out = [Float](repeating: 0, count: batch * outChannels * outHeight * outWidth)
        for n in 0..<batch {
            for o in 0..<outChannels {
                for oy in 0..<outHeight {
                    for ox in 0..<outWidth {
                        var sum = Double(bias.scalars[o])
                        for c in 0..<inChannels {
                            for ky in 0..<kernelHeight {
                                for kx in 0..<kernelWidth {
                                    let (iy, ix) = (oy + ky - padding.top, ox + kx - padding.left)
                                    guard (0..<height).contains(iy), (0..<width).contains(ix) else { continue }
                                    sum += Double(x.scalars[((n * inChannels + c) * height + iy) * width + ix])
                                        * Double(weight.scalars[((o * inChannels + c) * kernelHeight + ky) * kernelWidth + kx])
                                }
                            }
                        }
                        out[((n * outChannels + o) * outHeight + oy) * outWidth + ox] = Float(sum)
                    }
                }
            }
        }
        return Tensor(shape: [batch, outChannels, outHeight, outWidth], scalars: out)
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
