import Foundation
import XCTest
import Evaluation

/// The measures on hand-computed cases, and against scikit-learn on the committed random fixture.
final class PrecisionRecallCurveTests: XCTestCase {
    func testAPerfectMapScoresOne() throws {
        let curve = PrecisionRecallCurve(scores: [0.9, 0.8, 0.3, 0.1], labels: [true, true, false, false])
        XCTAssertEqual(curve.averagePrecision, 1)
        XCTAssertEqual(curve.auroc, 1)
        let best = try XCTUnwrap(curve.bestDice)
        XCTAssertEqual(best.dice, 1)
        XCTAssertEqual(best.threshold, 0.8)
    }

    func testAnInvertedMapScoresAtTheFloor() throws {
        // Lesions score lowest: ROC area 0; precision reaches the positives only at the last two points.
        let curve = PrecisionRecallCurve(scores: [0.9, 0.8, 0.3, 0.1], labels: [false, false, true, true])
        XCTAssertEqual(curve.auroc, 0)
        // Points: (R 0, P 0), (R 0, P 0), (R ½, P ⅓), (R 1, P ½) → AP = ½·⅓ + ½·½.
        XCTAssertEqual(try XCTUnwrap(curve.averagePrecision), 1.0 / 6 + 1.0 / 4, accuracy: 1e-12)
        // Best F1 = 2·2 / (4 + 2) at threshold 0.1 (everything predicted).
        let best = try XCTUnwrap(curve.bestDice)
        XCTAssertEqual(best.dice, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(best.threshold, 0.1)
    }

    func testAnEmptyMaskHasNoPrecisionRecallMeasures() {
        let curve = PrecisionRecallCurve(scores: [0.9, 0.2, 0.5], labels: [false, false, false])
        XCTAssertNil(curve.averagePrecision)
        XCTAssertNil(curve.auroc)
        XCTAssertNil(curve.bestDice)
        XCTAssertNil(dice(scores: [0.9, 0.2], labels: [false, false], threshold: 0.5))
        XCTAssertEqual(curve.positives, 0)
        XCTAssertEqual(curve.negatives, 3)
    }

    func testTiedScoresEnterTogether() throws {
        // Two points only: {0.7 ×3} then {0.2 ×2}. A tie of one positive and two negatives counts as a
        // diagonal in ROC space and as one precision step.
        let curve = PrecisionRecallCurve(scores: [0.7, 0.2, 0.7, 0.7, 0.2], labels: [true, true, false, false, false])
        XCTAssertEqual(curve.thresholds, [0.7, 0.2])
        XCTAssertEqual(curve.truePositives, [1, 2])
        XCTAssertEqual(curve.falsePositives, [2, 3])
        // AP = ½·⅓ + ½·⅖.  AUROC: (0,0)→(⅔,½)→(1,1): ⅔·¼ + ⅓·¾ = 5/12.
        XCTAssertEqual(try XCTUnwrap(curve.averagePrecision), 1.0 / 6 + 1.0 / 5, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(curve.auroc), 5.0 / 12, accuracy: 1e-12)
        // F1: 2·1/(3 + 2) = 0.4 at 0.7, 2·2/(5 + 2) = 4/7 at 0.2.
        let best = try XCTUnwrap(curve.bestDice)
        XCTAssertEqual(best.dice, 4.0 / 7, accuracy: 1e-12)
        XCTAssertEqual(best.threshold, 0.2)
    }

    func testAllTiedIsChance() throws {
        let curve = PrecisionRecallCurve(scores: [Float](repeating: 0.5, count: 4), labels: [true, false, false, false])
        XCTAssertEqual(curve.auroc, 0.5)
        XCTAssertEqual(curve.averagePrecision, 0.25)
    }

    func testDiceAtAThreshold() throws {
        // Predicted {0, 1, 2} (≥ 0.5, the tie included), lesion {1, 2, 3}: 2·2 / (3 + 3).
        let value = try XCTUnwrap(dice(scores: [0.9, 0.5, 0.6, 0.1], labels: [false, true, true, true], threshold: 0.5))
        XCTAssertEqual(value, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(dice(scores: [0.1], labels: [true], threshold: 0.5), 0)
    }

    func testScikitLearnOnRandomData() throws {
        struct Fixture: Decodable {
            struct Case: Decodable {
                let name: String
                let scores: [Float]
                let labels: [Int]
                let average_precision, auroc, best_dice: Double
                let best_threshold: Float
            }
            let cases: [Case]
        }
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/evaluation/sklearn.json")
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        XCTAssertEqual(fixture.cases.count, 4)
        for item in fixture.cases {
            let curve = PrecisionRecallCurve(scores: item.scores, labels: item.labels.map { $0 == 1 })
            XCTAssertEqual(try XCTUnwrap(curve.averagePrecision), item.average_precision, accuracy: 1e-12, item.name)
            XCTAssertEqual(try XCTUnwrap(curve.auroc), item.auroc, accuracy: 1e-12, item.name)
            let best = try XCTUnwrap(curve.bestDice)
            XCTAssertEqual(best.dice, item.best_dice, accuracy: 1e-12, item.name)
            XCTAssertEqual(best.threshold, item.best_threshold, item.name)
        }
    }
}

final class TokenGridTests: XCTestCase {
    func testATokenIsTrueWhenItsPatchHoldsAnyTruePixel() {
        // One 4×4 slice in 2×2 patches: a pixel at (row 1, col 2) → token (0, 1); (3, 3) → token (1, 1).
        var mask = [Bool](repeating: false, count: 16)
        mask[1 * 4 + 2] = true
        mask[3 * 4 + 3] = true
        XCTAssertEqual(TokenGrid.anyInPatch(mask, size: 4, factor: 2), [false, true, false, true])
        // A second, empty slice stays empty.
        XCTAssertEqual(TokenGrid.anyInPatch(mask + [Bool](repeating: false, count: 16), size: 4, factor: 2).suffix(4),
                       [false, false, false, false])
    }

    func testPatchReductionsTakeOnlyThePixelsInsideTheMask() {
        // One 4×4 slice, pixel value = its index; the mask leaves out the first row and the last column.
        let scores = (0..<16).map(Float.init)
        let mask = (0..<16).map { $0 / 4 > 0 && $0 % 4 < 3 }
        // Token (0, 0): pixels 4, 5 inside; (0, 1): 6; (1, 0): 8, 9, 12, 13; (1, 1): 10, 14.
        XCTAssertEqual(TokenGrid.reduce(scores, inside: mask, size: 4, factor: 2, .mean), [4.5, 6, 10.5, 12])
        XCTAssertEqual(TokenGrid.reduce(scores, inside: mask, size: 4, factor: 2, .maximum), [5, 6, 13, 14])
        // A patch without a pixel inside scores 0.
        XCTAssertEqual(TokenGrid.reduce(scores, inside: [Bool](repeating: false, count: 16), size: 4, factor: 2, .maximum), [0, 0, 0, 0])
    }

    func testUpsamplingGivesEachPixelItsPatchsScore() {
        XCTAssertEqual(TokenGrid.upsample([1, 2, 3, 4], size: 4, factor: 2),
                       [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    }
}
