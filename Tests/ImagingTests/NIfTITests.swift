import Foundation
import Imaging
import XCTest
import ZlibCodec

final class NIfTITests: XCTestCase {
    private func assertAffine(_ affine: Affine, _ expected: [[Double]], accuracy: Double, _ message: String,
                              line: UInt = #line) {
        for row in 0..<4 {
            for column in 0..<4 {
                XCTAssertEqual(affine[row, column], expected[row][column], accuracy: accuracy,
                               "\(message) [\(row), \(column)]", line: line)
            }
        }
    }

    func testFilesWrittenByNibabelDecodeToItsValuesAndAffine() throws {
        let readable = try FixtureIndex.load().nifti.readable
        XCTAssertGreaterThanOrEqual(readable.count, 20)
        for (name, expected) in readable {
            let image = try NIfTI.decode(fixtureBytes("nifti/\(name)"))
            XCTAssertEqual(image.dimensionCount, expected.shape.count == 2 ? 2 : 3, name)
            XCTAssertEqual(image.volume.shape, Array((expected.shape + [1]).prefix(3)), name)
            XCTAssertEqual(image.volume.voxels, expected.values, name)
            XCTAssertEqual(Int(image.datatypeCode), expected.datatype, name)
            let affine = expected.affine
            // sform and pixdim affines are float32 fields widened: exact. nibabel builds the qform in
            // long double, we in double: equal to float64 rounding.
            let exact = image.geometry.sformCode > 0 || image.geometry.qformCode == 0
            assertAffine(try image.geometry.affine(), affine, accuracy: exact ? 0 : 1e-14, name)
        }
    }

    func testDataStartsAtVoxOffsetAfterExtensions() throws {
        let expected = try XCTUnwrap(try FixtureIndex.load().nifti.readable["with_extension.nii"])
        XCTAssertGreaterThan(try XCTUnwrap(expected.voxOffset), 352)
        let bytes = try fixtureBytes("nifti/with_extension.nii")
        XCTAssertEqual(try NIfTI.decode(bytes).volume.voxels, expected.values)
    }

    func testGzipIsRecognisedByItsMagicNotTheName() throws {
        let plain = try fixtureBytes("nifti/int16.nii")
        let compressed = try Zlib.compress(plain, format: .gzip)
        XCTAssertEqual(try NIfTI.decode(compressed), try NIfTI.decode(plain))
        let fromNibabel = try fixtureBytes("nifti/float32.nii.gz")
        XCTAssertEqual(Array(fromNibabel.prefix(2)), [0x1F, 0x8B])
        XCTAssertEqual(try NIfTI.decode(fromNibabel).volume.shape, [4, 3, 2])
    }

    func testRefusedFilesSayWhy() throws {
        XCTAssertEqual(try FixtureIndex.load().nifti.refused, ["three_time_points.nii": "badDimensions", "complex64.nii": "unsupportedDataType",
                                                              "rgb24.nii": "unsupportedDataType"])
        assertThrows(NIfTIError.badDimensions("the file holds 3 volumes (dim[4]); send a single 3-D volume")) {
            try NIfTI.decode(fixtureBytes("nifti/three_time_points.nii"))
        }
        assertThrows(NIfTIError.unsupportedDataType(code: 32, name: "complex64")) { try NIfTI.decode(fixtureBytes("nifti/complex64.nii")) }
        assertThrows(NIfTIError.unsupportedDataType(code: 128, name: "RGB24")) { try NIfTI.decode(fixtureBytes("nifti/rgb24.nii")) }
    }

    /// The little-endian int16 fixture with a header field overwritten.
    private func patched(_ offset: Int, _ bytes: [UInt8]) throws -> [UInt8] {
        var file = try fixtureBytes("nifti/int16.nii")
        file.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        return file
    }

    private func le16(_ value: Int16) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
    private func le32(_ value: Int32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
    private func le32(_ value: Float) -> [UInt8] { le32(Int32(bitPattern: value.bitPattern)) }

    func testMalformedHeadersGiveSpecificErrors() throws {
        let file = try fixtureBytes("nifti/int16.nii")
        assertThrows(NIfTIError.truncated(expected: 348, actual: 100)) { try NIfTI.decode(Array(file[..<100])) }
        assertThrows(NIfTIError.truncated(expected: 348, actual: 2)) { try NIfTI.decode(Array(file[..<2])) }
        assertThrows(NIfTIError.truncated(expected: 352 + 24 * 2, actual: 352 + 24 * 2 - 10)) { try NIfTI.decode(Array(file.dropLast(10))) }
        assertThrows(NIfTIError.badHeaderSize(349)) { try NIfTI.decode(self.patched(0, self.le32(Int32(349)))) }
        assertThrows(NIfTIError.badHeaderSize(0x4D55_4E93)) { try NIfTI.decode(NPY.encode(shape: [100], float32: .init(repeating: 0, count: 100))) }
        assertThrows(NIfTIError.nifti2NotSupported) { try NIfTI.decode(self.patched(0, self.le32(Int32(540)))) }
        assertThrows(NIfTIError.pairNotSupported) { try NIfTI.decode(self.patched(344, Array("ni1\0".utf8))) }
        assertThrows(NIfTIError.badMagic("abc")) { try NIfTI.decode(self.patched(344, Array("abc\0".utf8))) }
        assertThrows(NIfTIError.badDimensions("dim[0] is 0, not 1…7")) { try NIfTI.decode(self.patched(40, self.le16(0))) }
        assertThrows(NIfTIError.badDimensions("dim[0] is 9, not 1…7")) { try NIfTI.decode(self.patched(40, self.le16(9))) }
        assertThrows(NIfTIError.badDimensions("a 1-D image (dim[0] = 1) is not an image")) { try NIfTI.decode(self.patched(40, self.le16(1))) }
        assertThrows(NIfTIError.badDimensions("dim[2] is 0; every size must be at least 1")) { try NIfTI.decode(self.patched(44, self.le16(0))) }
        assertThrows(NIfTIError.badDimensions("dim[3] is -5; every size must be at least 1")) { try NIfTI.decode(self.patched(46, self.le16(-5))) }
        assertThrows(NIfTIError.badDimensions("dim[5] is 2; only 2-D images and 3-D volumes are accepted")) {
            try NIfTI.decode(self.patched(40, [6, 0, 4, 0, 3, 0, 2, 0, 1, 0, 2, 0, 1, 0]))
        }
        assertThrows(NIfTIError.unsupportedDataType(code: 3, name: "not a NIfTI-1 datatype")) { try NIfTI.decode(self.patched(70, self.le16(3))) }
        assertThrows(NIfTIError.badScaling("scl_slope is 2.0 but scl_inter is inf")) {
            try NIfTI.decode(self.patched(112, self.le32(Float(2)) + self.le32(Float.infinity)))
        }
        assertThrows(NIfTIError.badVoxOffset(.infinity)) { try NIfTI.decode(self.patched(108, self.le32(Float.infinity))) }
        assertThrows(NIfTIError.truncated(expected: 1_000_048, actual: 400)) { try NIfTI.decode(self.patched(108, self.le32(Float(1_000_000)))) }
        // A zero or non-finite slope means no scaling (nibabel's rule).
        let unscaled = try NIfTI.decode(file).volume
        XCTAssertEqual(try NIfTI.decode(self.patched(112, self.le32(Float(0)) + self.le32(Float(5)))).volume, unscaled)
        XCTAssertEqual(try NIfTI.decode(self.patched(112, self.le32(Float.nan) + self.le32(Float(5)))).volume, unscaled)
    }

    func testAbsurdSizesAreRefusedBeforeAllocating() throws {
        // 32767³ voxels claimed by a 400-byte file.
        let huge = try patched(40, [3, 0] + le16(32767) + le16(32767) + le16(32767))
        assertThrows(NIfTIError.tooLarge("32767 × 32767 × 32767 = 35181150961663 voxels, more than 67108864")) { try NIfTI.decode(huge) }
        let small = NIfTILimits(maximumVoxels: 10, maximumBytes: 1 << 20)
        assertThrows(NIfTIError.tooLarge("4 × 3 × 2 = 24 voxels, more than 10")) { try NIfTI.decode(self.patched(0, [0x5C, 1, 0, 0]), limits: small) }
        let tight = NIfTILimits(maximumVoxels: 1 << 20, maximumBytes: 380)
        assertThrows(NIfTIError.tooLarge("400 bytes, more than 380")) { try NIfTI.decode(self.patched(0, [0x5C, 1, 0, 0]), limits: tight) }
        // A gzip bomb: 64 MiB of zeros behind a valid header. Over the voxel limit it is refused from the
        // header, before inflating; within it, at the byte limit while checking the stream.
        let bomb = try Zlib.compress(file(padding: 64 << 20), format: .gzip, level: 9)
        XCTAssertLessThan(bomb.count, 200_000)
        assertThrows(NIfTIError.tooLarge("4 × 3 × 2 = 24 voxels, more than 10")) { try NIfTI.header(bomb, limits: small) }
        let bytesOnly = NIfTILimits(maximumVoxels: 1 << 20, maximumBytes: 1 << 20)
        assertThrows(NIfTIError.tooLarge("it decompresses to more than 1048576 bytes")) { try NIfTI.decode(bomb, limits: bytesOnly) }
        // A header asking for more than the byte limit is refused from the header, too.
        let wide = try Zlib.compress(patched(40, [3, 0] + le16(512) + le16(512) + le16(4)), format: .gzip)
        assertThrows(NIfTIError.tooLarge("the header asks for 2097504 bytes, more than 1048576")) { try NIfTI.header(wide, limits: bytesOnly) }
    }

    func testAVoxOffsetThatIsNoByteOffsetIsRefusedNeverTrapped() throws {
        // -1e20 used to trap converting to Int; every float that is no offset is an error of its own.
        for offset: Float in [-1e20, -1, -.infinity, .nan, 1e20, 1e30, Float(1 << 30) + 1024] {
            assertThrows(NIfTIError.self, { try NIfTI.decode(self.patched(108, self.le32(offset))) }) { error in
                guard case .badVoxOffset(let reported) = error else { return false }
                return reported == offset || (reported.isNaN && offset.isNaN)
            }
        }
        // Below 352 means 352, as the standard says for a single file.
        XCTAssertEqual(try NIfTI.decode(patched(108, le32(Float(0)))).volume, try NIfTI.decode(fixtureBytes("nifti/int16.nii")).volume)
        let gzip = try Zlib.compress(patched(108, le32(Float(-1e20))), format: .gzip)
        assertThrows(NIfTIError.badVoxOffset(-1e20)) { try NIfTI.header(gzip) }
    }

    func testTheHeaderAloneTellsTheCostAndAGzipIsKeptOnlyAsFarAsTheImage() throws {
        let plain = try fixtureBytes("nifti/int16.nii")
        let header = try NIfTI.header(Array(plain.prefix(348)))
        XCTAssertEqual(header.shape, [4, 3, 2])
        XCTAssertEqual(header.voxelCount, 24)
        XCTAssertEqual(header.dataOffset, 352)
        XCTAssertEqual(header.byteCount, 352 + 24 * 2)
        // Of a .nii.gz only the header is inflated: a stream cut right after it still gives it.
        let padded = try Zlib.compress(file(padding: 1 << 20), format: .gzip)
        XCTAssertEqual(try NIfTI.header(Array(padded.prefix(400))), header)
        // Decoding keeps the bytes the header asks for; the padding behind them is checked, not kept.
        XCTAssertEqual(try NIfTI.decode(padded).volume, try NIfTI.decode(plain).volume)
        XCTAssertEqual(try NIfTI.header(try fixtureBytes("nifti/with_extension.nii")).dataOffset,
                       try XCTUnwrap(try FixtureIndex.load().nifti.readable["with_extension.nii"]?.voxOffset))
    }

    private func file(padding: Int) throws -> [UInt8] {
        try fixtureBytes("nifti/int16.nii") + [UInt8](repeating: 0, count: padding)
    }

    func testCorruptAndTruncatedGzipAreCompressionErrors() throws {
        let compressed = try fixtureBytes("nifti/float32.nii.gz")
        assertThrows(NIfTIError.compression(.truncated)) { try NIfTI.decode(Array(compressed.dropLast(30))) }
        var corrupt = compressed
        corrupt[corrupt.count - 6] ^= 0xFF       // inside the CRC-32 trailer
        assertThrows(NIfTIError.compression(.corrupt("incorrect data check"))) { try NIfTI.decode(corrupt) }
    }

    func testQuaternionOfNormAboveOneIsABadGeometry() throws {
        var geometry = try NIfTI.decode(fixtureBytes("nifti/qform_only.nii")).geometry
        geometry.quaternion = [0.8, 0.7, 0]
        assertThrows(NIfTIError.self, { try geometry.affine() }) { error in
            if case .badGeometry(let reason) = error { return reason.contains("norm above 1") }
            return false
        }
    }

    /// Rotations of every kind (including half turns, where the quaternion's a is 0), with reflections,
    /// survive affine → qform → affine.
    func testQformFromAffineReproducesTheAffine() throws {
        let axes: [[Double]] = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3], [-1, 1, 1]]
        for axis in axes {
            for degrees in [0.0, 30, 90, 135, 180, 250] {
                for reflection in [1.0, -1.0] {
                    let r = rotation(axis: axis, degrees: degrees)
                    let sizes = [0.9, 1.3, 2.5 * reflection]
                    let rows = (0..<3).map { (row: Int) -> [Double] in (0..<3).map { r[row][$0] * sizes[$0] } + [Double(row) * 10 - 7] }
                    let affine = Affine(rows3x4: rows)
                    let geometry = NIfTIGeometry(affine: affine)
                    XCTAssertEqual(geometry.qformCode, 1)
                    XCTAssertEqual(geometry.pixdim[0], Float(reflection))
                    assertAffine(try geometry.qformAffine(), affine.rows, accuracy: 2e-6, "axis \(axis) \(degrees)° qfac \(reflection)")
                    assertAffine(geometry.sformAffine, affine.rows, accuracy: 1e-6, "sform")
                }
            }
        }
    }

    func testWrittenFilesLoadInNibabelWithTheSameAffine() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // An oblique, reflected affine with translation.
        let r = rotation(axis: [1, -2, 3], degrees: 17)
        let sizes = [0.92, 1.18, -2.45]
        let translation = [90.5, -126.25, -72]
        let affine = Affine(rows3x4: (0..<3).map { (row: Int) -> [Double] in (0..<3).map { r[row][$0] * sizes[$0] } + [translation[row]] })
        var volume = Volume(zeros: [5, 4, 3])
        for index in volume.voxels.indices { volume.voxels[index] = Float(index) * 0.25 - 3 }
        let path = directory.appendingPathComponent("map.nii.gz")
        try Data(NIfTI.encode(volume, geometry: NIfTIGeometry(affine: affine), description: "anomaly map")).write(to: path)
        let flat = directory.appendingPathComponent("slice.nii")
        let slice = Volume(shape: [6, 7, 1], voxels: (0..<42).map(Float.init))
        try Data(NIfTI.encode(slice, geometry: NIfTIGeometry(affine: .identity), dimensionCount: 2, compressed: false)).write(to: flat)

        let output = try runPython("""
            import sys, json, numpy as np, nibabel as nib
            image = nib.load(sys.argv[1])
            h = image.header
            data = np.asarray(image.dataobj)
            print(json.dumps({"sform": h.get_sform().tolist(), "qform": h.get_qform().tolist(), "affine": image.affine.tolist(),
                              "codes": [int(h['sform_code']), int(h['qform_code'])], "dtype": str(data.dtype),
                              "shape": list(data.shape), "values": data.ravel(order='F').tolist(),
                              "descrip": h['descrip'].item().decode(), "units": list(h.get_xyzt_units())}))
            flat = nib.load(sys.argv[2])
            print(json.dumps({"shape": list(flat.shape), "values": np.asarray(flat.dataobj).ravel(order='F').tolist()}))
            """, arguments: [path.path, flat.path])
        struct Loaded: Decodable {
            let sform: [[Double]]?, qform: [[Double]]?, affine: [[Double]]?, codes: [Int]?, dtype: String?
            let shape: [Int], values: [Float], descrip: String?, units: [String]?
        }
        let lines = output.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        let loaded = try JSONDecoder().decode(Loaded.self, from: Data(lines[0].utf8))
        let float32Affine = affine.rows.map { $0.map { Double(Float($0)) } }
        assertAffine(Affine(rows: try XCTUnwrap(loaded.affine)), float32Affine, accuracy: 0, "nibabel's affine")
        assertAffine(Affine(rows: try XCTUnwrap(loaded.sform)), float32Affine, accuracy: 0, "sform")
        // The qform holds the same rigid transform, in float32 quaternion and voxel-size fields.
        assertAffine(Affine(rows: try XCTUnwrap(loaded.qform)), affine.rows, accuracy: 1e-5, "qform")
        XCTAssertEqual(loaded.codes, [1, 1])
        XCTAssertEqual(loaded.dtype, "float32")
        XCTAssertEqual(loaded.shape, [5, 4, 3])
        XCTAssertEqual(loaded.values, volume.voxels)
        XCTAssertEqual(loaded.descrip, "anomaly map")
        XCTAssertEqual(loaded.units, ["mm", "sec"])
        let flatLoaded = try JSONDecoder().decode(Loaded.self, from: Data(lines[1].utf8))
        XCTAssertEqual(flatLoaded.shape, [6, 7])
        XCTAssertEqual(flatLoaded.values, slice.voxels)
    }

    func testAnOutputCopiesTheInputGeometry() throws {
        // The preprocessing fixture has a sform (code 2) and a different qform (code 1): both must survive.
        let input = try NIfTI.decode(fixtureBytes("preprocessing/oblique.nii.gz"))
        XCTAssertEqual([input.geometry.sformCode, input.geometry.qformCode], [2, 1])
        let output = try NIfTI.decode(NIfTI.encode(Volume(zeros: input.volume.shape), geometry: input.geometry))
        XCTAssertEqual(output.geometry, input.geometry)
        XCTAssertEqual(try output.geometry.affine(), try input.geometry.affine())
        XCTAssertEqual(output.datatypeCode, 16)
    }
}

/// The rotation by `degrees` about `axis` (Rodrigues' formula).
private func rotation(axis: [Double], degrees: Double) -> [[Double]] {
    let norm = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).squareRoot()
    let (x, y, z) = (axis[0] / norm, axis[1] / norm, axis[2] / norm)
    let (c, s) = (cos(degrees * .pi / 180), sin(degrees * .pi / 180))
    let t = 1 - c
    return [[t * x * x + c, t * x * y - s * z, t * x * z + s * y],
            [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
            [t * x * z - s * y, t * y * z + s * x, t * z * z + c]]
}
