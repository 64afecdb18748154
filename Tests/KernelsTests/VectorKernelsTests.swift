import CKernels
import Foundation
import Kernels
import XCTest

/// The C kernels (CKernels) in every copy this CPU runs: their exp and erf against libm, and the fused
/// attention against a Double reference on the Transformers' real shape.
final class VectorKernelsTests: XCTestCase {
    func testTheWidestCopyThisCPURunsIsSelected() {
        let flags = Processor.current.flags
        let widest = flags.isSuperset(of: ["avx512f", "avx512dq", "avx512vl", "avx512bw"]) ? "avx512f"
            : flags.isSuperset(of: ["avx2", "fma"]) ? "avx2" : "sse2"
        XCTAssertEqual(String(cString: ck_instruction_set()), widest)
        XCTAssertEqual(ck_select_instruction_set("avx1024"), 0)
        XCTAssertEqual(String(cString: ck_instruction_set()), widest, "an unknown name changes nothing")
    }

    func testSigmoidIsWithinFourUlpOfLibm() {
        // 1/(1 + e^−x): exp's error (3 ulp) passes through, plus the division's rounding.
        let x = Tensor(shape: [1000], scalars: (0..<1000).map { Float($0) * 0.16 - 80 })
        forEachInstructionSet { set in
            let y = sigmoid(x)
            for (input, output) in zip(x.scalars, y.scalars) {
                let expected = 1 / (1 + Foundation.exp(-Double(input)))
                XCTAssertEqual(Double(output), expected, accuracy: 4 * Double(Float.ulpOfOne) * expected, "\(set): σ(\(input))")
            }
        }
    }

    func testGELUIsWithinAMillionthOfTheErfDefinition() {
        // erf by Abramowitz–Stegun is within 5·10⁻⁷; GELU multiplies that by |x|/2.
        let x = Tensor(shape: [1200], scalars: (0..<1200).map { Float($0) * 0.01 - 6 })
        forEachInstructionSet { set in
            for (input, output) in zip(x.scalars, gelu(x).scalars) {
                let value = Double(input)
                let expected = value / 2 * (1 + Foundation.erf(value / 2.squareRoot()))
                XCTAssertEqual(Double(output), expected, accuracy: 1e-6 * max(1, abs(value)), "\(set): GELU(\(input))")
            }
        }
    }

    func testSoftmaxUnderflowsToZeroAndSumsToOne() {
        let x = Tensor(shape: [1, 19], scalars: [-.infinity, -1000, -87.5, 0, 88, 88] + (0..<13).map { Float($0) })
        forEachInstructionSet { set in
            let y = softmax(x).scalars
            XCTAssertEqual(Array(y.prefix(4)), [0, 0, 0, 0], set)
            XCTAssertEqual(y[4], 0.5, accuracy: 1e-6, set)
            XCTAssertEqual(y.reduce(0, +), 1, accuracy: 1e-6, set)
        }
    }

    func testFusedAttentionMatchesADoubleReferenceOnTheTransformersShape() {
        // 400 tokens and heads of 32 features (the shipped Transformers), and two sequences of a shape
        // that pads everything: 37 tokens, 3 heads of 20 features.
        for (batch, tokens, heads, headDim) in [(1, 400, 2, 32), (2, 37, 3, 20)] {
            let dim = heads * headDim
            var generator = Xoshiro256StarStar(seed: UInt64(tokens))
            let qkv = Tensor(shape: [batch, tokens, 3 * dim],
                             scalars: (0..<batch * tokens * 3 * dim).map { _ in Float.random(in: -2...2, using: &generator) })
            for causal in [false, true] {
                let expected = referenceAttention(qkv, heads: heads, causal: causal)
                forEachInstructionSet { set in
                    assertClose(attention(qkv, heads: heads, causal: causal), expected, tolerance: 2e-6,
                                "\(set), \(tokens) tokens, causal \(causal):")
                }
            }
        }
    }

    /// softmax(q·kᵀ/√hd)·v per sequence and head, in Double.
    private func referenceAttention(_ qkv: Tensor, heads: Int, causal: Bool) -> Tensor {
        let (batch, tokens, dim) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
        let headDim = dim / heads
        var out = [Float](repeating: 0, count: batch * tokens * dim)
        func at(_ item: Int, _ token: Int, _ feature: Int) -> Double { Double(qkv.scalars[(item * tokens + token) * 3 * dim + feature]) }
        for item in 0..<batch {
            for head in 0..<heads {
                let base = head * headDim
                for i in 0..<tokens {
                    let seen = causal ? i + 1 : tokens
                    var scores = [Double](repeating: 0, count: seen)
                    for j in 0..<seen {
                        for f in 0..<headDim { scores[j] += at(item, i, base + f) * at(item, j, dim + base + f) }
                        scores[j] /= Double(headDim).squareRoot()
                    }
                    let maximum = scores.max()!
                    var sum = 0.0
                    for j in 0..<seen {
                        scores[j] = Foundation.exp(scores[j] - maximum)
                        sum += scores[j]
                    }
                    for f in 0..<headDim {
                        var value = 0.0
                        for j in 0..<seen { value += scores[j] * at(item, j, 2 * dim + base + f) }
                        out[(item * tokens + i) * dim + base + f] = Float(value / sum)
                    }
                }
            }
        }
        return Tensor(shape: [batch, tokens, dim], scalars: out)
    }
}
