import Kernels
import XCTest
@testable import Models

/// Table 1's token scores and the AR baseline's two decodings, on the parity checkpoint.
final class TokenScoresTests: XCTestCase {
    private var engine: Engine!
    private var fixture: ParityFixture!

    override func setUpWithError() throws {
        engine = try ParityModels.engine()
        fixture = try ParityFixture()
    }

    private func parameters(_ edit: (inout InferenceParameters) -> Void) -> InferenceParameters {
        var parameters = engine.defaults
        edit(&parameters)
        return parameters
    }

    func testDetectorScoresAreTheirProbabilities() throws {
        let tokens = try fixture.array("tokens").rows
        XCTAssertEqual(try engine.tokens(of: fixture.array("input").tensor), tokens)
        let atd = try engine.tokenScores(.atd, grids: tokens)
        XCTAssertEqual(atd, try XCTUnwrap(engine.atd).probabilities(tokens))
        let critic = try engine.tokenScores(.critic, grids: tokens)
        XCTAssertEqual(critic.flatMap { $0 }, sigmoid(try fixture.array("critic_logits").tensor).scalars.map { $0 }, accuracy: 1e-5)
    }

    func testARScoresAreTheRestorationsNLLWhenNothingIsReplaced() throws {
        // With λ_NLL out of reach every prefix is the input's: the raster pass scores = teacher forcing.
        let input = try fixture.array("input").tensor
        let kept = try XCTUnwrap(engine.run([RestorationJob(images: input, parameters: parameters {
            $0.method = .ar; $0.lambdaNLL = .greatestFiniteMagnitude; $0.restorations = 1 })]).first)
        let scores = try engine.tokenScores(.ar, grids: fixture.array("tokens").rows)
        XCTAssertEqual(scores.flatMap { $0 }, kept.tokenScores.scalars, accuracy: 1e-4)
    }

    func testMVTMScoresPredictEachTokenMaskedWithItsNeighboursVisible() throws {
        let tokens = try fixture.array("tokens").rows
        let scores = try engine.tokenScores(.mvtm, grids: tokens)
        let mvtm = try XCTUnwrap(engine.mvtm)
        let (grid, maskID) = (engine.vqvae.config.grid, mvtm.config.vocabSize - 1)
        // Token (row 3, column 5) is in group (1, 1): mask that group only and read its NLL directly.
        let position = 3 * grid + 5
        let masked = tokens.map { row in row.indices.map { $0 / grid % 2 == 1 && $0 % grid % 2 == 1 ? maskID : row[$0] } }
        let logProbabilities = logSoftmax(mvtm.logits(masked))
        let codes = logProbabilities.shape[2]
        for (s, row) in tokens.enumerated() {
            let expected = -logProbabilities.scalars[(s * grid * grid + position) * codes + row[position]]
            XCTAssertEqual(scores[s][position], expected, accuracy: 1e-5)
        }
        XCTAssertTrue(scores.joined().allSatisfy { $0 >= 0 && $0.isFinite })
    }

    func testARFullPassPerPositionGivesTheKVCacheRestoration() throws {
        let job = RestorationJob(images: try fixture.array("input").tensor, parameters: parameters {
            $0.method = .ar; $0.lambdaNLL = 3; $0.restorations = 2 })
        var fullPass = engine!
        fullPass.arDecoding = .fullPass
        let cached = try XCTUnwrap(engine.run([job]).first)
        let full = try XCTUnwrap(fullPass.run([job]).first)
        XCTAssertEqual(full.restoredTokens, cached.restoredTokens)
        XCTAssertGreaterThan(cached.steps[0].masked.joined().filter { $0 }.count, 0, "λ_NLL = 3 resamples some tokens")
        XCTAssertEqual(full.tokenScores.scalars, cached.tokenScores.scalars, accuracy: 1e-4)
    }

    func testAScorerWithoutItsNetworkIsRefused() throws {
        let partial = try Engine(Checkpoint(directory: Fixtures.checkpoint.path, only: [.vqvae]))
        XCTAssertThrowsError(try partial.tokenScores(.ar, grids: [[0]])) { error in
            XCTAssertEqual("\(error)", "token scorer 'ar' needs component 'ar', which this checkpoint does not have")
        }
    }

    func testImagesAndGridsThatDoNotFitAreRefused() throws {
        // The engine's entry points check what the networks below them only `precondition`.
        XCTAssertThrowsError(try engine.tokens(of: Tensor(zeros: [1, 1, 80, 80]))) { error in
            XCTAssertEqual("\(error)", "images must be [B ≥ 1, 1, 160, 160], got [1, 1, 80, 80]")
        }
        let grid = try fixture.array("tokens").rows[0]
        for (bad, scorer) in [([Array(grid.dropLast())], TokenScorer.atd), ([grid, grid.map { _ in 64 }], .mvtm)] {
            XCTAssertThrowsError(try engine.tokenScores(scorer, grids: bad)) { error in
                XCTAssertEqual("\(error)", "grid \(bad.count - 1) must hold 400 tokens in 0..<64")
            }
        }
    }
}

private func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "count", file: file, line: line)
    let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
    XCTAssertLessThanOrEqual(worst, accuracy, file: file, line: line)
}
