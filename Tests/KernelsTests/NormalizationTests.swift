import Kernels
import XCTest

final class NormalizationTests: XCTestCase {
    func testGroupNormNormalisesEachGroupThenAppliesPerChannelAffine() throws {
        // Two groups of two channels with one position each: group 1 is [1, 3], group 2 is [5, 5].
        let x = Tensor(shape: [1, 4, 1, 1], scalars: [1, 3, 5, 5])
        let y = groupNorm(x, groups: 2, weight: Tensor(shape: [4], scalars: [1, 2, 1, 1]),
                              bias: Tensor(shape: [4], scalars: [0, 0, 7, 0]), eps: 0)
        // Group 1: mean 2, variance 1 → [−1, 1], channel 1 scaled by 2. Group 2: variance 0 and eps 0
        // would divide by zero, so use eps in the second call.
        XCTAssertEqual(Array(y.scalars[0..<2]), [-1, 2])
        let z = groupNorm(x, groups: 2, weight: Tensor(shape: [4], scalars: [1, 2, 1, 1]),
                              bias: Tensor(shape: [4], scalars: [0, 0, 7, 0]), eps: 1e-6)
        XCTAssertEqual(Array(z.scalars[2..<4]), [7, 0])
        XCTAssertEqual(z.scalars[0], -1 / (1 + 1e-6).squareRoot(), accuracy: 1e-6)
    }

    func testGroupNormMatchesPyTorch() throws {
        try forEachInstructionSet { set in
            let y = try groupNorm(kernelFixture("groupnorm_input").tensor, groups: 4,
                                  weight: kernelFixture("groupnorm_weight").tensor,
                                  bias: kernelFixture("groupnorm_bias").tensor, eps: 1e-6)
            assertClose(y, try kernelFixture("groupnorm_output").tensor, tolerance: 1e-5, set)
            let fused = try groupNorm(kernelFixture("groupnorm_input").tensor, groups: 4,
                                      weight: kernelFixture("groupnorm_weight").tensor,
                                      bias: kernelFixture("groupnorm_bias").tensor, eps: 1e-6, activation: .silu)
            assertClose(fused, silu(y), tolerance: 1e-6, "\(set), with SiLU:")
        }
    }

    /// The parity fixture: encoder.down.3.block.0.norm1 of the fixture checkpoint (32 groups, eps 1e-6).
    func testGroupNormMatchesTheParityCheckpointLayer() throws {
        let parity = repositoryRoot.appendingPathComponent("Tests/Fixtures/parity")
        let weights = parity.appendingPathComponent("checkpoint/vqvae.safetensors")
        let y = try groupNorm(NPYArray(contentsOf: parity.appendingPathComponent("groupnorm_input.npy")).tensor, groups: 32,
                              weight: safetensorsTensor("encoder.down.3.block.0.norm1.weight", in: weights),
                              bias: safetensorsTensor("encoder.down.3.block.0.norm1.bias", in: weights), eps: 1e-6)
        assertClose(y, try NPYArray(contentsOf: parity.appendingPathComponent("groupnorm_output.npy")).tensor, tolerance: 1e-4)
    }

    func testLayerNormNormalisesEachRow() throws {
        let x = Tensor(shape: [2, 2], scalars: [1, 3, -4, 6])
        let y = layerNorm(x, weight: Tensor(shape: [2], scalars: [1, 1]), bias: Tensor(shape: [2], scalars: [0, 0.5]), eps: 0)
        XCTAssertEqual(y.scalars, [-1, 1.5, -1, 1.5])
    }

    func testLayerNormMatchesPyTorch() throws {
        try forEachInstructionSet { set in
            let y = try layerNorm(kernelFixture("layernorm_input").tensor, weight: kernelFixture("layernorm_weight").tensor,
                                  bias: kernelFixture("layernorm_bias").tensor, eps: 1e-5)
            assertClose(y, try kernelFixture("layernorm_output").tensor, tolerance: 1e-5, set)
        }
    }

    func testL2NormalizeDividesEveryVectorAlongTheAxisByItsLength() throws {
        // [1, 2, 1, 3]: three 2-vectors along axis 1, (3, 4), (0, 0) and (−1, 0); the zero vector stays zero.
        let x = Tensor(shape: [1, 2, 1, 3], scalars: [3, 0, -1, 4, 0, 0])
        XCTAssertEqual(l2Normalize(x, axis: 1, eps: 1e-6).scalars, [0.6, 0, -1, 0.8, 0, 0])
        let rows = Tensor(shape: [2, 2], scalars: [0, 2, 0.25, 0])
        XCTAssertEqual(l2Normalize(rows, axis: 1, eps: 0.5).scalars, [0, 1, 0.5, 0])   // shorter than eps: divided by eps
    }
}
