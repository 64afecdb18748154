import Detection
import Foundation
import Imaging
import Models
import XCTest

/// What a detection reports about a whole input: the triage scores are taken inside the brain.
final class DetectionResultTests: XCTestCase {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A slice with brain beside a blank one: `max_score`, `mean_score`, the share above a threshold and the
    /// histogram read the brain of the first only, whatever the map says in the background or on the blank slice.
    func testTriageScoresAreTakenInsideTheBrainOfSlicesWithBrain() throws {
        let engine = try Engine(Checkpoint(directory: Self.repository.appendingPathComponent("Tests/Fixtures/parity/checkpoint").path))
        let parity = try NPY.decode([UInt8](Data(contentsOf: Self.repository.appendingPathComponent("Tests/Fixtures/parity/input.npy"))))
        let area = Preprocessing.sliceSize * Preprocessing.sliceSize
        let slices = Array(parity.values.prefix(area)) + [Float](repeating: 0, count: area)
        let input = try DetectionInput(bytes: NPY.encode(shape: [2, 160, 160], float32: slices), preprocessed: true)
        var parameters = engine.defaults
        (parameters.restorations, parameters.steps) = (1, 1)
        let result = DetectionResult(input: input, parameters: parameters, results: try engine.run(input.jobs(parameters, slices: 0..<2)),
                                     grid: engine.vqvae.config.grid)

        let brain = (0..<area).filter { input.brain[$0] }
        XCTAssertGreaterThan(brain.count, DetectionResult.minimumBrainPixelsToShow)
        XCTAssertFalse(input.brain[area...].contains(true), "a blank slice has no brain")
        XCTAssertEqual(result.maximumScore, brain.map { result.sliceMaps[$0] }.max())
        XCTAssertEqual(result.meanScore, brain.map { result.sliceMaps[$0] }.reduce(0, +) / Float(brain.count), accuracy: 1e-6)
        let median = brain.map { result.sliceMaps[$0] }.sorted()[brain.count / 2]
        XCTAssertEqual(result.brainShare(above: median), Float(brain.filter { result.sliceMaps[$0] > median }.count) / Float(brain.count))
        XCTAssertEqual(result.brainShare(above: 1), 0)
        let histogram = result.brainMapHistogram(bins: 10)
        XCTAssertEqual(histogram.reduce(0, +), brain.count, "every brain pixel of the slice with brain, once")
        XCTAssertEqual(histogram, (0..<10).map { bin in
            brain.filter { min(Int(result.sliceMaps[$0] * 10), 9) == bin }.count
        })
        let outside = (0..<2 * area).filter { !input.brain[$0] }.map { result.sliceMaps[$0] }.max() ?? 0
        XCTAssertGreaterThan(outside, 0, "the map is not zero outside the brain, so the masking is what the test sees")
    }
}
