import Kernels
import XCTest
@testable import Models

/// Every intermediate of Tests/Fixtures/parity against what PyTorch computed from the same checkpoint.
final class ParityTests: XCTestCase {
    private var fixture: ParityFixture!
    private var engine: Engine!

    override func setUpWithError() throws {
        engine = try ParityModels.engine()
        fixture = try ParityFixture()
    }

    // MARK: - Single layers

    /// The parity VQ-VAE's encoder, Taming's.
    private func tamingEncoder() throws -> TamingEncoder<Tensor> {
        let encoder: TamingEncoder<Tensor>? = if case .taming(let encoder) = engine.vqvae.weights.encoder { encoder } else { nil }
        return try XCTUnwrap(encoder, "the parity VQ-VAE has Taming's encoder")
    }

    func testGroupNorm() throws {
        let x = try fixture.array("groupnorm_input").tensor
        try fixture.assertClose(tamingEncoder().down[3].stage.blocks[0].norm1(x), "groupnorm_output")   // encoder.down.3.block.0.norm1
    }

    func testResnetBlockWithShortcut() throws {
        let x = try fixture.array("resblock_input").tensor
        let block = try tamingEncoder().down[2].stage.blocks[0]   // encoder.down.2.block.0, 32 → 64 channels
        XCTAssertNotNil(block.ninShortcut)
        try fixture.assertClose(block(x), "resblock_output")
    }

    func testAttnBlock() throws {
        let x = try fixture.array("attnblock_input").tensor
        try fixture.assertClose(tamingEncoder().mid.attention(x), "attnblock_output")   // encoder.mid.attn_1
    }

    func testTransformerBlockAndEmbedding() throws {
        let atd = try XCTUnwrap(engine.atd)
        let tokens = try fixture.array("tokens").rows
        try fixture.assertClose(atd.embed(tokens), "transformer_block_input")
        try fixture.assertClose(atd.weights.blocks[0](fixture.array("transformer_block_input").tensor), "transformer_block_output")
    }

    // MARK: - Whole networks

    func testEncoderTokensAndDecoder() throws {
        let input = try fixture.array("input").tensor
        try fixture.assertClose(engine.vqvae.encode(input), "encoder_output")
        XCTAssertEqual(engine.vqvae.tokenize(input), try fixture.array("tokens").rows)
        try fixture.assertClose(engine.vqvae.decode(fixture.array("tokens").rows), "decoded")
    }

    func testTheLocalTokenizerEncoderTokensAndDecoder() throws {
        let vqvae = try VQVAE(XCTUnwrap(Checkpoint(directory: Fixtures.localCheckpoint.path).components[.vqvae]))
        XCTAssertEqual(vqvae.config.encoder, .patch)
        XCTAssertTrue(vqvae.config.l2Codes)
        let input = try fixture.array("input").tensor
        try fixture.assertClose(vqvae.encode(input), "local_encoder_output")
        XCTAssertEqual(vqvae.tokenize(input), try fixture.array("local_tokens").rows)
        try fixture.assertClose(vqvae.decode(fixture.array("local_tokens").rows), "local_decoded")
    }

    func testDetectors() throws {
        let tokens = try fixture.array("tokens").rows
        let probabilities = try XCTUnwrap(engine.atd).probabilities(tokens)
        try fixture.assertClose(Tensor(shape: [2, 20, 20], scalars: probabilities.flatMap { $0 }), "atd_probabilities")
        try fixture.assertClose(XCTUnwrap(engine.critic).logits(tokens).reshaped([2, 400]), "critic_logits")
    }

    func testMVTMOnMaskedTokens() throws {
        let tokens = try fixture.array("tokens").rows
        let mask = try fixture.array("mvtm_mask").rows
        let maskID = fixture.index.pipeline.maskID
        let masked = zip(tokens, mask).map { row, mask in zip(row, mask).map { $1 != 0 ? maskID : $0 } }
        XCTAssertTrue(masked.joined().contains(maskID))
        try fixture.assertClose(XCTUnwrap(engine.mvtm).logits(masked), "mvtm_logits")
    }

    /// What the restoration asks for: the MVTM's logits at the masked tokens only, whose last block runs
    /// for those rows alone. They equal those rows of the whole pass exactly (each row's arithmetic is the
    /// same), and so PyTorch's within the whole pass's tolerance.
    func testMVTMLogitsAtTheMaskedTokensOnly() throws {
        let mvtm = try XCTUnwrap(engine.mvtm)
        let tokens = try fixture.array("tokens").rows
        let mask = try fixture.array("mvtm_mask").rows
        let maskID = fixture.index.pipeline.maskID
        for (row, rowMask) in zip(tokens, mask) {
            let masked = zip(row, rowMask).map { $1 != 0 ? maskID : $0 }
            let positions = rowMask.indices.filter { rowMask[$0] != 0 }
            let whole = mvtm.logits([masked])
            let codes = whole.shape[2]
            let expected = positions.flatMap { whole.scalars[$0 * codes ..< ($0 + 1) * codes] }
            let atPositions = mvtm.logits(masked, at: positions)
            XCTAssertEqual(atPositions.shape, [positions.count, codes])
            XCTAssertEqual(atPositions.scalars, expected)
            XCTAssertEqual(mvtm.logits(masked, at: []).shape, [0, codes])
        }
    }

    func testARFullCausalPass() throws {
        try fixture.assertClose(XCTUnwrap(engine.ar).logits(fixture.array("ar_input").rows), "ar_logits")
    }

    func testARIncrementalDecodingGivesTheFullPassLogits() throws {
        let ar = try XCTUnwrap(engine.ar)
        let input = try fixture.array("ar_input").rows
        let full = ar.logits(input)   // [2, 400, 64]
        let codes = full.shape[2]
        var cache = ar.makeCache(sequences: input.count)
        var stepped: [Float] = []   // [400, 2, 64] in step order
        for position in 0..<input[0].count {
            stepped += ar.step(input.map { $0[position] }, cache: &cache).scalars
        }
        var worst: Float = 0
        for position in 0..<input[0].count {
            for s in 0..<input.count {
                for k in 0..<codes {
                    let a = stepped[(position * input.count + s) * codes + k]
                    let b = full.scalars[(s * input[0].count + position) * codes + k]
                    worst = max(worst, abs(a - b))
                }
            }
        }
        XCTAssertLessThan(worst, 2e-5, "incremental vs full causal logits")
        // And against PyTorch, reassembled into [B, N, K].
        var reordered: [Float] = []
        for s in 0..<input.count {
            for position in 0..<input[0].count {
                let start = (position * input.count + s) * codes
                reordered += stepped[start ..< start + codes]
            }
        }
        try fixture.assertClose(Tensor(shape: full.shape, scalars: reordered), "ar_logits")
    }

    // MARK: - The whole MIM-OOD run, replaying PyTorch's draws

    func testPipelineReplayingTheRecordedDraws() throws {
        let pipeline = fixture.index.pipeline
        let samples = try fixture.array("pipeline_samples")   // [steps_run, B, R, 20, 20]
        let (images, restorations, positions) = (samples.shape[1], samples.shape[2], 400)
        var sampler = ReplaySampler { site in
            guard site.job == 0, site.step < samples.shape[0] else { return nil }
            return samples.ints[((site.step * images + site.image) * restorations + site.restoration) * positions + site.position]
        }
        var parameters = engine.defaults
        parameters.lambda = Float(pipeline.lambda)
        parameters.steps = pipeline.steps
        parameters.restorations = pipeline.restorations
        parameters.combine = .mean
        parameters.temperature = Float(pipeline.temperature)
        parameters.minPool = pipeline.minPool
        parameters.avgPool = pipeline.avgPool
        let input = try fixture.array("input").tensor
        let result = try XCTUnwrap(engine.run([RestorationJob(images: input, parameters: parameters)], sampler: &sampler).first)

        XCTAssertEqual(result.inputTokens, try fixture.array("tokens").rows)
        XCTAssertEqual(result.stepsRun, pipeline.stepsRun)
        let scores = try fixture.array("pipeline_scores")
        let masks = try fixture.array("pipeline_masks")
        let stepSize = images * restorations * positions
        for (t, step) in result.steps.enumerated() {
            let stepScores = Tensor(shape: Array(scores.shape.dropFirst()), scalars: step.scores.flatMap { $0 })
            let expected = Array(scores.floats[t * stepSize ..< (t + 1) * stepSize])
            let worst = zip(stepScores.scalars, expected).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, try fixture.tolerance("pipeline_scores"), "step \(t) scores")
            XCTAssertEqual(step.masked.flatMap { $0 }, masks.ints[t * stepSize ..< (t + 1) * stepSize].map { $0 != 0 }, "step \(t) mask")
        }
        XCTAssertEqual(result.restoredTokens.flatMap { $0 }, try fixture.array("pipeline_tokens").ints)
        try fixture.assertClose(result.tokenScores, "pipeline_token_heatmap")
        try fixture.assertClose(result.restorations, "pipeline_restorations")
        try fixture.assertClose(result.anomalyMap, "anomaly_map_mean")

        parameters.combine = .softmaxWeighted
        try fixture.assertClose(engine.anomalyMap(input, result.restorations, parameters), "anomaly_map_softmax")
    }
}
