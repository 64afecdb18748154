import Kernels
import XCTest

final class QuantizationTests: XCTestCase {
    func testNearestCodeAndTiesGoToTheLowestIndex() throws {
        // Codes 0 and 2 are equal; position 0 lies on code 1, position 1 nearest to codes 0 and 2 alike.
        let codebook = Tensor(shape: [3, 2], scalars: [1, 1, -1, 0, 1, 1])
        let z = Tensor(shape: [1, 2, 1, 2], scalars: [-1, 0.9, 0, 1.2])  // [N, D, H, W]: D=0 row, then D=1
        XCTAssertEqual(nearestCodes(z, codebook: codebook), [1, 0])
    }

    func testNearestCodesMatchPyTorch() throws {
        let indices = try nearestCodes(kernelFixture("codes_z").tensor, codebook: kernelFixture("codes_codebook").tensor)
        XCTAssertEqual(indices, try kernelFixture("codes_indices").integers)
    }
}
