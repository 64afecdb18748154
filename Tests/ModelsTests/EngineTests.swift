import Kernels
import XCTest
@testable import Models

/// The pipeline's behaviour beyond parity: seeds, per-job parameters in one call, the baselines, refusals.
final class EngineTests: XCTestCase {
    private var engine: Engine!
    private var fixture: ParityFixture!
    private var slices: [Tensor] = []

    override func setUpWithError() throws {
        engine = try ParityModels.engine()
        fixture = try ParityFixture()
        slices = unstack(try fixture.array("input").tensor).map { $0.reshaped([1] + $0.shape) }
    }

    private func parameters(_ edit: (inout InferenceParameters) -> Void = { _ in }) -> InferenceParameters {
        var parameters = engine.defaults
        edit(&parameters)
        return parameters
    }

    /// The same tokens and masks, and floats equal up to the rounding that another batch composition
    /// gives the kernels (GEMM blocking depends on the batch size).
    private func assertSame(_ a: RestorationResult, _ b: RestorationResult, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.restoredTokens, b.restoredTokens, "\(label): tokens", file: file, line: line)
        XCTAssertEqual(a.steps.map(\.masked), b.steps.map(\.masked), "\(label): masks", file: file, line: line)
        let pairs = [("scores", a.steps.flatMap { $0.scores.joined() }, b.steps.flatMap { $0.scores.joined() }),
                     ("anomaly map", a.anomalyMap.scalars, b.anomalyMap.scalars),
                     ("token scores", a.tokenScores.scalars, b.tokenScores.scalars)]
        for (name, x, y) in pairs {
            XCTAssertEqual(x.count, y.count, "\(label): \(name) count", file: file, line: line)
            let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-5, "\(label): \(name)", file: file, line: line)
        }
    }

    func testTheSameSeedGivesTheSameOutputAndAnotherSeedOtherDraws() throws {
        let job = RestorationJob(images: slices[1], parameters: parameters())
        let first = try XCTUnwrap(engine.run([job]).first)
        let second = try XCTUnwrap(engine.run([job]).first)
        XCTAssertEqual(first.restoredTokens, second.restoredTokens)
        XCTAssertEqual(first.steps, second.steps)
        XCTAssertEqual(first.restorations, second.restorations)
        XCTAssertEqual(first.anomalyMap, second.anomalyMap)
        XCTAssertGreaterThan(first.stepsRun, 0, "the fixture's λ masks tokens, so draws are made")

        var reseeded = job
        reseeded.parameters.seed += 1
        let third = try XCTUnwrap(engine.run([reseeded]).first)
        XCTAssertNotEqual(first.restoredTokens, third.restoredTokens)
    }

    func testJobsWithTheirOwnParametersInOneCallGiveTheirSoloResults() throws {
        let jobs = [
            RestorationJob(images: slices[0], parameters: parameters { $0.seed = 1 }),
            RestorationJob(images: slices[1], parameters: parameters { $0.lambda = 0.6; $0.steps = 1; $0.restorations = 3; $0.seed = 2 }),
            RestorationJob(images: slices[0], parameters: parameters { $0.lambda = 1 }),   // no probability exceeds 1
            RestorationJob(images: slices[1], parameters: parameters { $0.method = .mvtmCritic; $0.criticThreshold = 0.7; $0.combine = .mean }),
            RestorationJob(images: slices[1], parameters: parameters { $0.method = .ar; $0.lambdaNLL = 5; $0.restorations = 1 }),
        ]
        var batched: Engine = engine
        batched.maxSequencesPerPass = 3   // chunk boundaries inside jobs must not matter either
        let together = try batched.run(jobs)
        XCTAssertEqual(together.count, jobs.count)
        for (index, job) in jobs.enumerated() {
            let alone = try XCTUnwrap(self.engine.run([job]).first)
            assertSame(together[index], alone, "job \(index)")
            XCTAssertEqual(together[index].parameters, job.parameters)
            XCTAssertEqual(together[index].restoredTokens.count, job.parameters.restorations)
            XCTAssertEqual(together[index].restorations.shape, [1, job.parameters.restorations, 1, 160, 160])
            XCTAssertLessThanOrEqual(together[index].stepsRun, job.parameters.steps)
        }
        XCTAssertEqual(together[1].stepsRun, 1)
        XCTAssertEqual(together[2].stepsRun, 0)
        XCTAssertEqual(together[2].restoredTokens, Array(repeating: together[2].inputTokens[0], count: jobs[2].parameters.restorations))
        XCTAssertEqual(together[4].stepsRun, 1, "the AR baseline's raster pass")
        XCTAssertTrue(together.allSatisfy { $0.anomalyMap.scalars.allSatisfy { (0...1).contains($0) } })
    }

    func testTheDetectorScoresOnlySequencesThatChanged() throws {
        // Nothing above λ: one pass per image at step 0, not R.
        let still = try XCTUnwrap(engine.run([RestorationJob(images: try fixture.array("input").tensor,
                                                             parameters: parameters { $0.lambda = 1; $0.restorations = 4 })]).first)
        XCTAssertEqual(still.stepsRun, 0)
        XCTAssertEqual(still.sequencesScored, 2)

        // Resampling: after step 0, a step scores exactly the sequences whose tokens the step before changed
        // (replayed from the recorded draws; a draw may give back the token it replaces).
        let restorations = 4
        let job = RestorationJob(images: slices[1], parameters: parameters { $0.restorations = restorations; $0.steps = 8 })
        var sampler = RecordingSampler(inner: SeededSampler(seeds: [job.parameters.seed]))
        let result = try XCTUnwrap(engine.run([job], sampler: &sampler).first)
        XCTAssertGreaterThan(result.stepsRun, 2, "the fixture's λ resamples over several steps")
        var tokens = Array(repeating: result.inputTokens[0], count: restorations)
        var expected = 1
        for (step, record) in result.steps.enumerated() {
            for row in 0..<restorations {
                let before = tokens[row]
                for position in record.masked[row].indices where record.masked[row][position] {
                    tokens[row][position] = try XCTUnwrap(sampler.draws[DrawSite(job: 0, image: 0, restoration: row, step: step, position: position)])
                }
                if tokens[row] != before && step + 1 < job.parameters.steps { expected += 1 }
            }
        }
        XCTAssertTrue(tokens == result.restoredTokens, "the recorded draws replay the restoration")
        XCTAssertEqual(result.sequencesScored, expected)
        XCTAssertLessThan(result.sequencesScored, restorations * result.stepsRun)
    }

    func testTheGeneratorRunsOncePerDistinctInputAndKeepsTheLogitsOfARepeatedOne() throws {
        // Both slices with R = 4 and a λ that leaves few tokens masked, so masks repeat from step to step.
        let restorations = 4
        let job = RestorationJob(images: try fixture.array("input").tensor,
                                 parameters: parameters { $0.restorations = restorations; $0.steps = 8; $0.lambda = 0.2 })
        var sampler = RecordingSampler(inner: SeededSampler(seeds: [job.parameters.seed]))
        let reusing = try XCTUnwrap(engine.run([job], sampler: &sampler).first)
        var everyPass = try XCTUnwrap(engine)
        everyPass.reusesGeneratorPasses = false
        let unshared = try XCTUnwrap(everyPass.run([job]).first)
        XCTAssertEqual(reusing.restoredTokens, unshared.restoredTokens, "the same draws from the same logits")
        XCTAssertEqual(reusing.steps, unshared.steps)
        XCTAssertEqual(reusing.anomalyMap, unshared.anomalyMap)
        let maskedRows = reusing.steps.flatMap { $0.masked.map { $0.count { $0 } } }.filter { $0 > 0 }
        XCTAssertEqual(unshared.generatorPasses, maskedRows, "without reuse: one pass per sequence with masked tokens, each step")

        // Replay: a pass runs for each distinct input of a step that is not its sequence's input at its last pass.
        let images = job.images.shape[0]
        var tokens = reusing.inputTokens.flatMap { Array(repeating: $0, count: restorations) }
        var lastInput: [Int: [Int]] = [:]
        var expected: [Int] = []
        for (step, record) in reusing.steps.enumerated() {
            var seen = Set<[Int]>()
            for row in 0..<(images * restorations) where record.masked[row].contains(true) {
                let input = zip(tokens[row], record.masked[row]).map { $1 ? -1 : $0 }
                if lastInput[row] != input && seen.insert(input).inserted { expected.append(record.masked[row].count { $0 }) }
                lastInput[row] = input
            }
            for row in 0..<(images * restorations) {
                for position in record.masked[row].indices where record.masked[row][position] {
                    tokens[row][position] = try XCTUnwrap(sampler.draws[DrawSite(job: 0, image: row / restorations, restoration: row % restorations,
                                                                                 step: step, position: position)])
                }
            }
        }
        XCTAssertTrue(tokens == reusing.restoredTokens, "the recorded draws replay the restoration")
        XCTAssertEqual(reusing.generatorPasses, expected)
        let imagesMaskedAtStep0 = Set(reusing.steps[0].masked.indices.filter { reusing.steps[0].masked[$0].contains(true) }.map { $0 / restorations })
        XCTAssertLessThan(reusing.generatorPasses.count, maskedRows.count - (restorations - 1) * imagesMaskedAtStep0.count,
                          "beyond step 0's one pass per image, a sequence masked as at its last pass keeps its logits")
    }

    func testABackgroundOnlySliceSkipsTheNetworksAndHasAZeroMap() throws {
        let background = Tensor(zeros: [1, 1, 160, 160])
        let images = stack([unstack(slices[1])[0], unstack(background)[0]], leading: [2])
        for method in [InferenceMethod.mimOOD, .mvtmCritic, .ar] {
            let edit: (inout InferenceParameters) -> Void = { $0.method = method; $0.restorations = 2; $0.lambdaNLL = 5; $0.criticThreshold = 0.7 }
            let both = try XCTUnwrap(engine.run([RestorationJob(images: images, parameters: parameters(edit))]).first)
            let alone = try XCTUnwrap(engine.run([RestorationJob(images: slices[1], parameters: parameters(edit))]).first)
            XCTAssertEqual(both.sequencesScored, alone.sequencesScored, "\(method): the background slice is not scored")
            XCTAssertEqual(Array(both.restoredTokens.prefix(2)), alone.restoredTokens, "\(method)")
            XCTAssertEqual(Array(both.restoredTokens.suffix(2)), Array(repeating: both.inputTokens[1], count: 2), "\(method)")
            XCTAssertTrue(both.anomalyMap.scalars[25600...].allSatisfy { $0 == 0 }, "\(method): zero map")
            XCTAssertTrue(both.tokenScores.scalars[400...].allSatisfy { $0 == 0 }, "\(method): zero scores")
            XCTAssertTrue(both.restorations.scalars[(2 * 25600)...].allSatisfy { $0 == 0 }, "\(method): the restorations are the slice")
            XCTAssertTrue(both.steps.allSatisfy { !$0.masked[2].contains(true) && !$0.masked[3].contains(true) }, "\(method)")
            XCTAssertEqual(Array(both.anomalyMap.scalars[..<25600]), alone.anomalyMap.scalars, "\(method)")
        }
    }

    func testARBaselineScoresAreTheTeacherForcedNLLAndDrawsReplaceWhatExceedsLambda() throws {
        let input = try fixture.array("input").tensor
        let tokens = try fixture.array("tokens").rows
        let logits = try fixture.array("ar_logits").tensor   // PyTorch, teacher forcing on the input tokens
        let logProbabilities = logSoftmax(logits).scalars

        // Nothing exceeds λ_NLL: every prefix is the input's, so each score is PyTorch's NLL of the input token.
        let kept = try XCTUnwrap(engine.run([RestorationJob(images: input, parameters: parameters {
            $0.method = .ar; $0.lambdaNLL = .greatestFiniteMagnitude; $0.restorations = 1 })]).first)
        XCTAssertEqual(kept.restoredTokens, tokens)
        let scores = try XCTUnwrap(kept.steps.first).scores
        var worst: Float = 0
        for (image, row) in tokens.enumerated() {
            for (position, token) in row.enumerated() {
                worst = max(worst, abs(scores[image][position] + logProbabilities[(image * 400 + position) * 64 + token]))
            }
        }
        XCTAssertLessThan(worst, 1e-4)
        XCTAssertEqual(kept.tokenScores.scalars, scores.flatMap { $0 })

        // Every NLL exceeds −1: every token is drawn, at the sites the sampler is told.
        var sampler = ReplaySampler { site in (site.position * 7 + site.image + site.restoration) % 64 }
        let replaced = try XCTUnwrap(engine.run([RestorationJob(images: input, parameters: parameters {
            $0.method = .ar; $0.lambdaNLL = -1; $0.restorations = 2 })], sampler: &sampler).first)
        XCTAssertEqual(replaced.restoredTokens, (0..<4).map { row in (0..<400).map { ($0 * 7 + row / 2 + row % 2) % 64 } })
        XCTAssertTrue(replaced.steps[0].masked.allSatisfy { $0.allSatisfy { $0 } })
    }

    func testCriticBaselineScoresTheInputWithTheCritic() throws {
        let result = try XCTUnwrap(engine.run([RestorationJob(images: try fixture.array("input").tensor, parameters: parameters {
            $0.method = .mvtmCritic; $0.criticThreshold = 1 })]).first)
        XCTAssertEqual(result.stepsRun, 0)
        let expected = sigmoid(try fixture.array("critic_logits").tensor).scalars
        let worst = zip(result.tokenScores.scalars, expected).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worst, try fixture.tolerance("critic_logits"))
        XCTAssertEqual(result.tokenScores.shape, [2, 20, 20])
    }

    func testReplayThatRunsOutOfDrawsIsAnError() {
        var sampler = ReplaySampler { _ in nil }
        XCTAssertThrowsError(try engine.run([RestorationJob(images: slices[1], parameters: parameters())], sampler: &sampler)) { error in
            XCTAssertTrue("\(error)".contains("replay diverged: no recorded draw at job 0, image 0, restoration 0, step 0"), "\(error)")
        }
    }

    func testRefusesJobsItCannotRun() throws {
        let cases: [(RestorationJob, String)] = [
            (RestorationJob(images: Tensor(zeros: [1, 1, 128, 128]), parameters: parameters()), "images must be [B ≥ 1, 1, 160, 160], got [1, 1, 128, 128]"),
            (RestorationJob(images: Tensor(zeros: [0, 1, 160, 160]), parameters: parameters()), "images must be [B ≥ 1"),
            (RestorationJob(images: Tensor(shape: [1, 1, 160, 160], scalars: [.nan] + Array(repeating: 0, count: 25599)), parameters: parameters()),
             "image 0 holds a non-finite value"),
            (RestorationJob(images: slices[0], parameters: parameters { $0.avgPool = 6 }), "smoothing.avg_pool must be an odd window size"),
            (RestorationJob(images: slices[0], parameters: parameters { $0.steps = 0 }), "steps must be at least 1"),
            (RestorationJob(images: slices[0], parameters: parameters { $0.restorations = 0 }), "restorations must be at least 1"),
            (RestorationJob(images: slices[0], parameters: parameters { $0.lambda = .nan }), "lambda must be a finite number"),
        ]
        for (job, fragment) in cases {
            XCTAssertThrowsError(try engine.run([RestorationJob(images: slices[0], parameters: parameters()), job])) { error in
                XCTAssertTrue("\(error)".contains("job 1: " + fragment), "\(error) lacks \(fragment)")
            }
        }

        let partial = try Engine(Checkpoint(directory: Fixtures.checkpoint.path, only: [.vqvae, .atd, .mvtm]))
        XCTAssertThrowsError(try partial.validate(RestorationJob(images: slices[0], parameters: parameters { $0.method = .ar }))) { error in
            XCTAssertEqual("\(error)", "method 'ar' needs component 'ar', which this checkpoint does not have")
        }
        XCTAssertThrowsError(try Engine(Checkpoint(directory: Fixtures.checkpoint.path, only: [.atd]))) { error in
            XCTAssertTrue("\(error)".contains("every method needs the 'vqvae' component"), "\(error)")
        }
    }
}

/// Draws from another sampler, keeping every site's token.
private struct RecordingSampler: TokenSampler {
    var inner: SeededSampler
    var draws: [DrawSite: Int] = [:]

    mutating func draw(at site: DrawSite, logits: ArraySlice<Float>) throws -> Int {
        let token = try inner.draw(at: site, logits: logits)
        draws[site] = token
        return token
    }
}
