import Foundation
import Imaging
import XCTest

/// Parity with `Training/mimood_train/preprocessing.py` on fixtures it computed. The tolerance is zero:
/// docs/preprocessing.md fixes every float32 operation and its order, so a faithful port reproduces the
/// reference bit for bit, and any difference is a deviation from the specification.
final class PreprocessingTests: XCTestCase {
    /// The anomaly map the fixtures map back: exact float32 values from integers, as in imaging_fixtures.py.
    private func anomalySlices(_ count: Int) -> [Float] {
        var values: [Float] = []
        for z in 0..<count {
            for row in 0..<160 {
                for column in 0..<160 { values.append(Float((row * 7 + column * 3 + z * 11) % 64) / 64) }
            }
        }
        return values
    }

    private func assertIdentical(_ actual: [Float], _ expected: [Float], _ what: String, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, what, line: line)
        let differing = zip(actual, expected).filter { $0.bitPattern != $1.bitPattern }
        let largest = differing.map { abs($0 - $1) }.max() ?? 0
        XCTAssertEqual(differing.count, 0, "\(what): \(differing.count) values differ, by up to \(largest)", line: line)
    }

    private func loadVolume(_ name: String?) throws -> Volume? {
        guard let name else { return nil }
        return try NIfTI.decode(fixtureBytes("preprocessing/\(name)")).volume
    }

    func testVolumesMatchTheReferenceBitForBit() throws {
        let cases = try FixtureIndex.load().preprocessing.cases
        for name in ["oblique", "qform_long"] {
            let expected = try XCTUnwrap(cases[name])
            let image = try NIfTI.decode(fixtureBytes("preprocessing/\(expected.image)"))
            let result = try Preprocessing.preprocess(image.volume, affine: try image.geometry.affine(),
                                                      brainMask: try loadVolume(expected.brain), lesionMask: try loadVolume(expected.lesion))
            XCTAssertEqual(result.clipValue, expected.clipValue, name)
            let geometry = result.geometry
            XCTAssertEqual(geometry.inputShape, expected.inputShape, name)
            XCTAssertEqual(geometry.orientation.axes, expected.axes, name)
            XCTAssertEqual(geometry.orientation.flips, expected.flips, name)
            XCTAssertEqual(geometry.spacing, expected.spacing, name)
            XCTAssertEqual(geometry.resampledShape, expected.resampledShape, name)
            XCTAssertEqual(geometry.cropStart, expected.cropStart, name)

            let slices = try fixtureArray("preprocessing/\(name)_slices.npy.gz")
            XCTAssertEqual(slices.shape, [result.sliceCount, 160, 160])
            assertIdentical(result.slices, slices.values, "\(name) slices")
            XCTAssertEqual(result.brain, try fixtureArray("preprocessing/\(name)_brain.npy.gz").values.map { $0 != 0 }, name)
            if expected.lesion != nil {
                let lesion = try fixtureArray("preprocessing/\(name)_lesion.npy.gz").values.map { $0 != 0 }
                XCTAssertEqual(result.lesion, lesion, name)
                XCTAssertTrue(lesion.contains(true))
            } else {
                XCTAssertNil(result.lesion)
            }

            let back = Preprocessing.slicesToVolume(anomalySlices(result.sliceCount), geometry: geometry)
            let expectedBack = try XCTUnwrap(try fixtureArray("preprocessing/\(name)_back.npy.gz").volume())
            XCTAssertEqual(back.shape, image.volume.shape)
            assertIdentical(back.voxels, expectedBack.voxels, "\(name) mapped back")
        }
    }

    func testATwoDimensionalImageOfAnotherSizeMatchesTheReference() throws {
        let expected = try XCTUnwrap(try FixtureIndex.load().preprocessing.cases["slice_200x150"])
        let image = try PNG.decode(fixtureBytes("preprocessing/slice_200x150.png")).grayscale()
        XCTAssertEqual([image.width, image.height], [200, 150])
        let result = try Preprocessing.prepareImage(image)
        XCTAssertEqual(result.sliceCount, 1)
        XCTAssertEqual(result.clipValue, expected.clipValue)
        XCTAssertEqual(result.geometry.cropStart, expected.cropStart)
        assertIdentical(result.slices, try fixtureArray("preprocessing/slice_200x150_slices.npy.gz").values, "slice")
        let back = Preprocessing.sliceToImage(anomalySlices(1), geometry: result.geometry)
        XCTAssertEqual([back.width, back.height], [200, 150])
        let expectedBack = try fixtureArray("preprocessing/slice_200x150_back.npy.gz")
        XCTAssertEqual(expectedBack.shape, [150, 200])
        assertIdentical(back.pixels, expectedBack.values, "slice mapped back")
    }

    func testPercentileOnBothInterpolationBranches() throws {
        let percentiles = try FixtureIndex.load().preprocessing.percentiles
        XCTAssertEqual(percentiles.count, 2)
        for (name, clipValue) in percentiles {
            let values = try NPY.decode(fixtureBytes("preprocessing/\(name)")).values
            let volume = Volume(shape: [5, values.count / 5, 1], voxels: values)
            XCTAssertEqual(try Preprocessing.preprocess(volume, affine: .identity).clipValue, clipValue, name)
        }
    }

    func testAPreprocessedSliceIsPassedThroughAndMapsBackToItself() throws {
        let pixels = (0..<(160 * 160)).map { Float($0 % 97) / 96 }
        let image = GrayImage(width: 160, height: 160, pixels: pixels)
        let result = try Preprocessing.prepareImage(image)
        XCTAssertEqual(result.slices, pixels)
        XCTAssertEqual(result.brain, pixels.map { $0 > 0 })
        XCTAssertEqual(result.clipValue, 1)
        XCTAssertEqual(Preprocessing.sliceToImage(pixels, geometry: result.geometry), image)

        var outOfRange = image
        outOfRange[3, 4] = 1.5
        assertThrows(PreprocessingError.notPreprocessed(minimum: 0, maximum: 1.5)) { try Preprocessing.prepareImage(outOfRange) }
        outOfRange[3, 4] = -0.25
        assertThrows(PreprocessingError.notPreprocessed(minimum: -0.25, maximum: 1)) { try Preprocessing.prepareImage(outOfRange) }
        outOfRange[3, 4] = .nan
        assertThrows(PreprocessingError.self, { try Preprocessing.prepareImage(outOfRange) }) { error in
            if case .notPreprocessed = error { return true }
            return false
        }
    }

    func testDisplayOrderPutsAnteriorUpAndThePatientsRightLeft() throws {
        // A 1 mm RAS volume with a box of brain; a one-voxel lesion marks a position to find on the slice.
        var volume = Volume(zeros: [100, 120, 3])
        for x in 20..<80 { for y in 20..<100 { for z in 0..<3 { volume[x, y, z] = 1 } } }
        func displayed(_ x: Int, _ y: Int) throws -> (row: Int, column: Int) {
            var lesion = Volume(zeros: volume.shape)
            lesion[x, y, 1] = 1
            let result = try Preprocessing.preprocess(volume, affine: .identity, lesionMask: lesion)
            // Brain box x 20…79 → window start 20 + floor((60 − 160) / 2) = −30; y 20…99 → −20.
            XCTAssertEqual(result.geometry.cropStart, [-30, -20])
            let index = try XCTUnwrap(result.lesion?.firstIndex(of: true))
            XCTAssertEqual(index / (160 * 160), 1, "slice z = 1")
            return (index % (160 * 160) / 160, index % 160)
        }
        let right = try displayed(79, 60)           // the patient's right is +x
        let left = try displayed(20, 60)
        XCTAssertEqual(right.column, 159 - (79 + 30))
        XCTAssertLessThan(right.column, left.column, "the patient's right is on the viewer's left")
        let anterior = try displayed(50, 99)        // anterior is +y
        let posterior = try displayed(50, 20)
        XCTAssertEqual(anterior.row, 159 - (99 + 20))
        XCTAssertLessThan(anterior.row, posterior.row, "anterior is up")
    }

    func testBadInputsAreRefusedWithAReason() throws {
        let volume = Volume(shape: [4, 4, 4], voxels: (0..<64).map { Float($0 % 5) })
        assertThrows(PreprocessingError.maskShapeMismatch(mask: "brain mask", maskShape: [4, 4, 3], imageShape: [4, 4, 4])) {
            try Preprocessing.preprocess(volume, affine: .identity, brainMask: Volume(zeros: [4, 4, 3]))
        }
        assertThrows(PreprocessingError.noBrain) { try Preprocessing.preprocess(Volume(zeros: [4, 4, 4]), affine: .identity) }
        assertThrows(PreprocessingError.noBrain) {
            try Preprocessing.preprocess(volume, affine: .identity, brainMask: Volume(zeros: [4, 4, 4]))
        }
        let negative = Volume(shape: [4, 4, 4], voxels: .init(repeating: -3, count: 64))
        assertThrows(PreprocessingError.nonPositiveClipValue(-3)) {
            try Preprocessing.preprocess(negative, affine: .identity, brainMask: Volume(shape: [4, 4, 4], voxels: .init(repeating: 1, count: 64)))
        }
        assertThrows(PreprocessingError.self, { try Preprocessing.preprocess(volume, affine: .diagonal(1, 0, 1)) }) { error in
            if case .degenerateAffine(let reason) = error { return reason.contains("zero or non-finite length") }
            return false
        }
        assertThrows(PreprocessingError.self, { try Preprocessing.preprocess(volume, affine: .diagonal(1, .nan, 1)) }) { error in
            if case .degenerateAffine = error { return true }
            return false
        }
        // From the shape and affine alone: the slices and largest grid, sizes past Int saturating, not trapping.
        let thin = try Preprocessing.resampledGrid(shape: [1, 1, 2], affine: .diagonal(1, 1, 1e6))
        XCTAssertEqual([thin.sliceCount, thin.largestVoxelCount], [1_000_001, 1_000_001])
        let absurd = try Preprocessing.resampledGrid(shape: [2, 2, 2], affine: .diagonal(1e30, 1, 1))
        XCTAssertEqual([absurd.sliceCount, absurd.largestVoxelCount], [2, .max])
        // Shrinking axes: the largest grid is the RAS copy, before the passes.
        XCTAssertEqual(try Preprocessing.resampledGrid(shape: [100, 10, 10], affine: .diagonal(0.5, 1, 1)).largestVoxelCount, 10_000)
        // A bogus 1e9 mm slice spacing must not allocate a huge grid.
        assertThrows(PreprocessingError.self, { try Preprocessing.preprocess(volume, affine: .diagonal(1, 1, 1e9)) }) { error in
            if case .tooLarge(let reason) = error { return reason.contains("more than 67108864") }
            return false
        }
    }
}
