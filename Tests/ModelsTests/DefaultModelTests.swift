import Foundation
import Kernels
import XCTest
@testable import Models

/// The shipped Models/default: it loads (every hash and shape checked), and on real trained weights the
/// engine agrees with PyTorch (Tests/Fixtures/default-model, from `Training/tools/fixtures.py --default-model`).
final class DefaultModelTests: XCTestCase {
    private let fixtures = Fixtures.repositoryRoot.appendingPathComponent("Tests/Fixtures/default-model")

    private func engine() throws -> Engine {
        try Engine(Checkpoint(directory: Fixtures.repositoryRoot.appendingPathComponent("Models/default").path))
    }

    func testTokensAndTheATDHeatmapMatchPyTorch() throws {
        let engine = try engine()
        let input = try ParityFixture().array("input").tensor            // [2, 1, 160, 160]
        let expectedTokens = try NumpyArray(contentsOf: fixtures.appendingPathComponent("tokens.npy")).integers
        let margins = try NumpyArray(contentsOf: fixtures.appendingPathComponent("token_margins.npy")).floats
        let expectedHeatmap = try NumpyArray(contentsOf: fixtures.appendingPathComponent("atd_probabilities.npy")).floats

        // A trained codebook has near-ties: compare the positions whose decision float32 cannot flip. The
        // local tokenizer's codes are unit vectors, so its gaps are small, and the background's one latent
        // sits 2e-6 from a tie (164 of these 800 positions).
        let tokens = engine.vqvae.tokenize(input).flatMap { $0 }
        let decided = margins.indices.filter { margins[$0] >= 1e-4 }
        XCTAssertGreaterThan(decided.count, margins.count * 3 / 4)
        XCTAssertEqual(decided.filter { tokens[$0] != Int(expectedTokens[$0]) }, [], "positions whose token differs")

        // The ATD on PyTorch's own tokens, so a near-tie above cannot move the comparison.
        let sequences = stride(from: 0, to: expectedTokens.count, by: 400).map { start in
            expectedTokens[start..<start + 400].map(Int.init)
        }
        let atd = try XCTUnwrap(engine.atd)
        let heatmap = atd.probabilities(sequences).flatMap { $0 }
        let worst = zip(heatmap, expectedHeatmap).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worst, 1e-4)
    }

    func testTheDefaultParametersRestoreASliceIntoAMapInTheUnitInterval() throws {
        let engine = try engine()
        XCTAssertEqual(engine.defaults.method, .mimOOD)
        let slice = try ParityFixture().array("input").tensor
        var parameters = engine.defaults
        parameters.restorations = 2
        parameters.steps = 2
        let result = try XCTUnwrap(engine.run([RestorationJob(images: slice, parameters: parameters)]).first)
        XCTAssertEqual(result.anomalyMap.shape, [2, 1, 160, 160])
        XCTAssertEqual(result.tokenScores.shape, [2, 20, 20])
        XCTAssertTrue(result.anomalyMap.scalars.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertTrue(result.tokenScores.scalars.allSatisfy { $0 >= 0 && $0 <= 1 })
    }
}
