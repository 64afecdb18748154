import Foundation
import Kernels
import XCTest

final class SamplingTests: XCTestCase {
    func testGeneratorMatchesTheReferenceAlgorithm() {
        // SplitMix64 from seed 0 starts 0xE220A8397B1DCDAF (Vigna's splitmix64.c); the xoshiro256**
        // outputs below come from a separate Python transcription of Vigna's xoshiro256starstar.c.
        var rng = Xoshiro256StarStar(seed: 0)
        XCTAssertEqual((0..<3).map { _ in rng.next() },
                       [0x99EC_5F36_CB75_F2B4, 0xBF6E_1F78_4956_452A, 0x1A5F_849D_4933_E6E0])
    }

    func testSameSeedSameDraws() throws {
        let logits: [Float] = [0.5, -1, 2, 0, 1]
        var first = Xoshiro256StarStar(seed: 7), second = Xoshiro256StarStar(seed: 7), other = Xoshiro256StarStar(seed: 8)
        let a = try (0..<50).map { _ in try sampleCategorical(logits: logits, using: &first) }
        let b = try (0..<50).map { _ in try sampleCategorical(logits: logits, using: &second) }
        let c = try (0..<50).map { _ in try sampleCategorical(logits: logits, using: &other) }
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }

    func testFrequenciesFollowTheSoftmax() throws {
        // softmax([0, log 3, −∞]) = [0.25, 0.75, 0]
        let logits: [Float] = [0, logf(3), -.infinity]
        var rng = Xoshiro256StarStar(seed: 1)
        var counts = [0, 0, 0]
        for _ in 0..<20_000 { counts[try sampleCategorical(logits: logits, using: &rng)] += 1 }
        XCTAssertEqual(counts[2], 0)
        XCTAssertEqual(Double(counts[1]) / 20_000, 0.75, accuracy: 0.015)
    }

    func testRejectsRowsWithoutAFiniteLogit() {
        var rng = Xoshiro256StarStar(seed: 1)
        XCTAssertThrowsError(try sampleCategorical(logits: [Float](), using: &rng))
        XCTAssertThrowsError(try sampleCategorical(logits: [-Float.infinity, -.infinity], using: &rng))
        XCTAssertThrowsError(try sampleCategorical(logits: [Float.nan, 1], using: &rng))
    }
}
