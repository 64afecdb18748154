import Foundation
@testable import Kernels
import XCTest

/// The vector exp and erf behind softmax, SiLU, sigmoid and GELU, against libm over their useful range.
final class VectorMathTests: XCTestCase {
    func testExpIsWithinThreeUlpOfLibm() {
        for start in stride(from: -87.0, to: 88.0, by: 0.37) {
            let x = Vector((0..<16).map { Float(start) + Float($0) * 0.023 })
            let y = Kernels.exp(x)
            for lane in 0..<16 {
                let expected = Foundation.exp(Double(x[lane]))
                XCTAssertEqual(Double(y[lane]), expected, accuracy: 3 * Double(Float.ulpOfOne) * expected, "exp(\(x[lane]))")
            }
        }
    }

    func testExpUnderflowsToZeroAndSaturatesAboveTheFloatRange() {
        let y = Kernels.exp(Vector([-.infinity, -1000, -87.5, 0, 1, 100, 88.3, 89] + Array(repeating: 0, count: 8)))
        XCTAssertEqual(Array(y.indices.prefix(4).map { y[$0] }), [0, 0, 0, 1])
        XCTAssertEqual(y[4], Float(M_E), accuracy: 3e-7)
        XCTAssert(y[5].isFinite && y[5] == y[6] && y[6] == y[7], "\(y)")
    }

    func testErfIsWithinHalfAMillionthOfLibm() {
        for start in stride(from: -6.0, to: 6.0, by: 0.25) {
            let x = Vector((0..<16).map { Float(start) + Float($0) * 0.0156 })
            let y = Kernels.erf(x)
            for lane in 0..<16 {
                // The formula's own error is 1.5e-7; Float rounding in 1 − p·t·e^(−x²) adds up to ~3e-7 near 0.
                XCTAssertEqual(Double(y[lane]), Foundation.erf(Double(x[lane])), accuracy: 5e-7, "erf(\(x[lane]))")
            }
        }
    }

    func testMapVectorsCoversAPartialLastVector() {
        let input = (0..<37).map(Float.init)
        var output = [Float](repeating: -1, count: 37)
        input.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { output in
                mapVectors(input.baseAddress!, output.baseAddress!, count: 37) { $0 * 2 }
            }
        }
        XCTAssertEqual(output, input.map { $0 * 2 })
    }
}
