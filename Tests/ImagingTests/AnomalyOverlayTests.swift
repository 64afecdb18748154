import Imaging
import XCTest

final class AnomalyOverlayTests: XCTestCase {
    /// A 4×3 slice: gray ramp, and scores 0 … 0.9 in steps of 0.1 (then two above the upper bound).
    private let slice = GrayImage(width: 4, height: 3, pixels: (0..<12).map { Float($0) / 11 })
    private let scores = GrayImage(width: 4, height: 3, pixels: (0..<12).map { Float($0) / 10 })

    private func rgb(_ image: PNGImage, _ index: Int) -> [Int] {
        (0..<3).map { Int(image.samples[3 * index + $0]) }
    }

    func testLowScoresLeaveTheSliceGray() {
        let overlay = AnomalyOverlay.render(image: slice, scores: scores)
        XCTAssertEqual(overlay.color, .rgb)
        XCTAssertEqual(overlay.bitDepth, 8)
        for index in 0...1 {      // scores 0 and 0.1 ≤ lowerScore
            let gray = Int((slice.pixels[index] * 255).rounded())
            XCTAssertEqual(rgb(overlay, index), [gray, gray, gray])
        }
        let gray = Int((slice.pixels[2] * 255).rounded())
        XCTAssertNotEqual(rgb(overlay, 2), [gray, gray, gray], "0.2 is above the lower bound")
    }

    func testScoresAboveTheUpperBoundGetTheBrightestColourAtMaximumOpacity() {
        XCTAssertEqual(OverlayStyle.standard, OverlayStyle(lowerScore: 0.1, upperScore: 0.5, maximumOpacity: 0.8))
        let overlay = AnomalyOverlay.render(image: slice, scores: scores, style: .standard)
        // magma(1.0) ≈ (0.987, 0.991, 0.750), blended at 0.8 over the gray.
        for index in [5, 9, 11] {
            let gray = slice.pixels[index]
            let alpha: Float = 0.8
            let expected = [0.987, 0.991, 0.750].map { Int((((1 - alpha) * gray + alpha * $0) * 255 + 0.5).rounded(.down)) }
            XCTAssertEqual(rgb(overlay, index), expected, "score \(scores.pixels[index])")
        }
    }

    func testColourBrightensMonotonicallyWithTheScore() throws {
        // On a black slice with opacity 1, the drawn colour is the map itself: its luminance must rise.
        let black = GrayImage(width: 101, height: 1, pixels: .init(repeating: 0, count: 101))
        let ramp = GrayImage(width: 101, height: 1, pixels: (0...100).map { Float($0) / 100 })
        let overlay = AnomalyOverlay.render(image: black, scores: ramp,
                                            style: try XCTUnwrap(OverlayStyle(lowerScore: 0, upperScore: 1, maximumOpacity: 1)))
        let luminance = (0...100).map { index -> Double in
            let (r, g, b) = (Double(overlay.samples[3 * index]), Double(overlay.samples[3 * index + 1]), Double(overlay.samples[3 * index + 2]))
            return 0.2126 * r + 0.7152 * g + 0.0722 * b
        }
        // Score t shows at opacity t, so luminance grows from 0 (8-bit rounding can hold it for one step).
        for index in 1...100 { XCTAssertGreaterThanOrEqual(luminance[index], luminance[index - 1], "at \(index)") }
        for index in stride(from: 5, through: 100, by: 5) { XCTAssertGreaterThan(luminance[index], luminance[index - 5], "at \(index)") }
        XCTAssertEqual(Array(overlay.samples[300...302]), [252, 253, 191])
    }

    func testInvalidStylesAreRejected() {
        XCTAssertNil(OverlayStyle(lowerScore: 0.5, upperScore: 0.5, maximumOpacity: 0.8))
        XCTAssertNil(OverlayStyle(lowerScore: .nan, upperScore: 0.5, maximumOpacity: 0.8))
        XCTAssertNil(OverlayStyle(lowerScore: 0, upperScore: 0.5, maximumOpacity: 1.5))
    }

    func testNaNScoresDrawNothing() {
        let nan = GrayImage(width: 4, height: 3, pixels: .init(repeating: .nan, count: 12))
        XCTAssertEqual(AnomalyOverlay.render(image: slice, scores: nan), AnomalyOverlay.render(image: slice, scores: GrayImage(
            width: 4, height: 3, pixels: .init(repeating: 0, count: 12))))
    }
}
