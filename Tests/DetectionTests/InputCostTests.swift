import Foundation
import Imaging
import XCTest
import ZlibCodec
import Detection

/// The hostile inputs of issue 14, each refused from its header with the limit it exceeds, and the cost
/// of ordinary inputs agreeing with what decoding and preprocessing then do.
final class InputCostTests: XCTestCase {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func fixture(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Self.repository.appendingPathComponent("Tests/Fixtures/imaging/" + path)))
    }

    /// A little-endian float32 NIfTI of `shape` with one voxel per value, voxel sizes `pixdim`, no forms.
    private func nifti(_ shape: [Int], pixdim: [Float] = [1, 1, 1], patch: (offset: Int, bytes: [UInt8])? = nil) throws -> [UInt8] {
        let volume = Volume(shape: shape, voxels: (0..<shape.reduce(1, *)).map { Float($0 % 7 + 1) })
        var geometry = NIfTIGeometry(affine: .identity)
        (geometry.qformCode, geometry.sformCode) = (0, 0)
        geometry.pixdim = [1] + pixdim + [1, 1, 1, 1]
        var bytes = try NIfTI.encode(volume, geometry: geometry, compressed: false)
        if let patch { bytes.replaceSubrange(patch.offset ..< patch.offset + patch.bytes.count, with: patch.bytes) }
        return bytes
    }

    /// The preamble and header of a `.npy` with `shape` and no data at all.
    private func npyHeader(_ shape: [Int], descr: String = "<f4") -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        let text = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }\n".utf8)
        return [0x93] + Array("NUMPY".utf8) + [2, 0] + withUnsafeBytes(of: UInt32(text.count).littleEndian, Array.init) + text
    }

    private func assertRefused(_ bytes: [UInt8], preprocessed: Bool = false, _ kind: InputError.Kind, limit: InputError.Limit? = nil,
                               containing fragment: String, line: UInt = #line) {
        for attempt in ["InputCost", "DetectionInput"] {
            do {
                if attempt == "InputCost" {
                    _ = try InputCost(bytes: bytes, preprocessed: preprocessed)
                } else {
                    _ = try DetectionInput(bytes: bytes, preprocessed: preprocessed)
                }
                XCTFail("\(attempt) accepted it", line: line)
            } catch {
                XCTAssertEqual(error.kind, kind, "\(attempt): \(error)", line: line)
                XCTAssertEqual(error.limit, limit, "\(attempt): \(error)", line: line)
                XCTAssertTrue(error.description.contains(fragment), "\(attempt): \(error)", line: line)
                XCTAssertLessThan(error.description.count, 600, attempt, line: line)
            }
        }
    }

    func testAVoxOffsetOfMinus1e20IsAMalformedHeaderNotATrap() throws {
        let bytes = try nifti([4, 4, 2], patch: (108, withUnsafeBytes(of: Float(-1e20).bitPattern.littleEndian, Array.init)))
        assertRefused(bytes, .malformed, containing: "vox_offset -1e+20")
        assertRefused(try Zlib.compress(bytes, format: .gzip), .malformed, containing: "vox_offset -1e+20")
    }

    func testThinVolumesThatResampleToAMillionSlicesAreRefusedFromTheHeader() throws {
        // 1×1×2 voxels 10^6 mm apart: 10^6 + 1 slices at 1 mm.
        let thin = try nifti([1, 1, 2], pixdim: [1, 1, 1e6])
        assertRefused(thin, .tooLarge, limit: .slices, containing: "1000001 slices")
        // Of a .nii.gz only the header is needed: the stream cut right after it is refused the same way.
        let compressed = try Zlib.compress(thin, format: .gzip)
        XCTAssertThrowsError(try InputCost(bytes: Array(compressed.prefix(compressed.count - 10)), preprocessed: false)) { error in
            XCTAssertEqual((error as? InputError)?.limit, .slices)
        }
        // A .npy of shape (1, 1, 1000000): its header alone, without a data byte, is enough to refuse it.
        assertRefused(npyHeader([1, 1, 1_000_000]), .tooLarge, limit: .slices, containing: "1000000 slices")
        // A grid too large in the plane, with few slices.
        assertRefused(try nifti([2, 2, 2], pixdim: [1e5, 1e5, 1]), .tooLarge, limit: .resampledVoxels, containing: "voxels")
    }

    func testArraysOfOtherDimensionsAreRefusedFromTheHeader() {
        assertRefused(npyHeader(Array(repeating: 1, count: 26)), .unprocessable, containing: "(26 dimensions)")
        assertRefused(npyHeader([5, 160, 160, 2]), preprocessed: true, .unprocessable, containing: "[5, 160, 160, 2]")
        assertRefused(npyHeader([0, 160, 160]), preprocessed: true, .unprocessable, containing: "[0, 160, 160]")
        assertRefused(npyHeader([4, 0, 3]), .unprocessable, containing: "2-D slice or a 3-D volume")
    }

    func testAFiveMebibyteHeaderIsQuotedShort() {
        let descr = String(repeating: "\u{1}<", count: 5 << 19)
        assertRefused(npyHeader([6], descr: descr), .unprocessable, containing: "(5242880 characters)")
    }

    func testAVolumeTooLongForNIfTIHasNoNIfTIAnswer() throws {
        let long = try InputCost(bytes: NPY.encode(shape: [40000, 1, 1], float32: .init(repeating: 1, count: 40000)), preprocessed: false)
        XCTAssertEqual(long.volumeShape, [40000, 1, 1])
        XCTAssertTrue(try XCTUnwrap(long.niftiOutputRefusal).contains("32767"))
        let slice = try InputCost(bytes: NPY.encode(shape: [30, 20], float32: .init(repeating: 1, count: 600)), preprocessed: false)
        XCTAssertTrue(try XCTUnwrap(slice.niftiOutputRefusal).contains("not a volume"))
        XCTAssertNil(try InputCost(bytes: try nifti([3, 4, 5]), preprocessed: false).niftiOutputRefusal)
    }

    func testTheCostOfOrdinaryInputsIsWhatDecodingAndPreprocessingDo() throws {
        var limits = DetectionInput.Limits()
        limits.maximumSlices = 512
        let inputs: [(name: String, bytes: [UInt8], preprocessed: Bool)] = [
            ("oblique.nii.gz", try fixture("preprocessing/oblique.nii.gz"), false),
            ("qform_long.nii", try fixture("preprocessing/qform_long.nii"), false),
            ("slice_200x150.png", try fixture("preprocessing/slice_200x150.png"), false),
            ("fortran_3d.npy", try fixture("npy/fortran_3d.npy"), false),
            ("a 2-D .npy", NPY.encode(shape: [30, 20], float32: (0..<600).map { Float($0) }), false),
            ("preprocessed slices", NPY.encode(shape: [2, 1, 160, 160], float32: .init(repeating: 0.5, count: 2 * 25600)), true),
        ]
        for (name, bytes, preprocessed) in inputs {
            let cost = try InputCost(bytes: bytes, preprocessed: preprocessed, limits: limits)
            let input = try DetectionInput(bytes: bytes, preprocessed: preprocessed, limits: limits)
            XCTAssertEqual(cost.format, input.format, name)
            XCTAssertEqual(cost.outputSlices, input.sliceCount, name)
            XCTAssertGreaterThanOrEqual(cost.peakBytes, cost.decodedBytes + input.slices.count * 4, name)
            switch input.kind {
            case .volume(let geometry, _):
                XCTAssertEqual(cost.volumeShape, geometry.inputShape, name)
                XCTAssertEqual(cost.inputVoxels, geometry.inputShape.reduce(1, *), name)
                // Float32 values; twice for the Fortran-order array; with the inflated stream for the .nii.gz.
                let values = cost.inputVoxels * 4
                XCTAssertEqual(cost.decodedBytes - values, name == "fortran_3d.npy" ? values : name == "oblique.nii.gz"
                               ? try NIfTI.header(bytes).byteCount : 0, name)
                XCTAssertGreaterThanOrEqual(cost.resampledVoxels, geometry.resampledShape.reduce(1, *), name)
            case .image(let geometry):
                XCTAssertNil(cost.volumeShape, name)
                XCTAssertEqual(cost.resampledVoxels, geometry.resampledShape.reduce(1, *), name)
            case .slices(let shape):
                XCTAssertEqual(cost.resampledVoxels, shape.reduce(1, *), name)
            }
        }
    }
    /// Headers at the limits one size sets (the service's `decode_max_bytes`): each is let through, and
    /// none may cost more than `largestPeakBytes`, what a memory budget must hold for one decode.
    func testNoInputUnderTheLimitsCostsMoreThanTheLargestPeak() throws {
        var limits = DetectionInput.Limits(maximumDecodedBytes: 1 << 22)
        limits.maximumSlices = 512
        let values = (1 << 22) / 4
        XCTAssertEqual([limits.maximumElements, limits.png.maximumPixels, limits.nifti.maximumVoxels, limits.maximumResampledVoxels],
                       [values, values, values, values])
        func png(width: Int, height: Int, depth: UInt8, color: UInt8, interlace: UInt8) -> [UInt8] {
            func bigEndian(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian, Array.init) }
            let body = Array("IHDR".utf8) + bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [depth, color, 0, 0, interlace]
            return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + bigEndian(13) + body + bigEndian(Zlib.crc32(body))
        }
        // Its stream (vox_offset + voxels) within the 4 MiB.
        var niftiHeader = try nifti([128, 128, 63])
        niftiHeader.removeSubrange(400...)
        let inputs: [(name: String, bytes: [UInt8], preprocessed: Bool)] = [
            ("16-bit RGBA PNG, interlaced", png(width: 2048, height: 512, depth: 16, color: 6, interlace: 1), false),
            ("wide 16-bit RGBA PNG", png(width: 16384, height: values / 16384, depth: 16, color: 6, interlace: 0), false),
            (".npy volume", npyHeader([256, 128, 32]), false),
            ("float32 NIfTI header", niftiHeader, false),
            ("preprocessed slices", npyHeader([40, 160, 160]), true),
        ]
        let largest = InputCost.largestPeakBytes(limits)
        for (name, bytes, preprocessed) in inputs {
            let cost = try InputCost(bytes: bytes, preprocessed: preprocessed, limits: limits)
            XCTAssertLessThanOrEqual(cost.peakBytes, largest, name)
        }
        // One value more than the limit is refused, from the header.
        XCTAssertThrowsError(try InputCost(bytes: npyHeader([values + 1]), preprocessed: false, limits: limits))
    }
}
