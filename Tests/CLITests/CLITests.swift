import Foundation
import Imaging
import TestSupport
import XCTest

/// `mimood` run as a user runs it: the built executable in a subprocess, on real files, with the
/// parity checkpoint (tiny, so the tests are quick).
final class CLITests: XCTestCase {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    private static let checkpoint = repository.appendingPathComponent("Tests/Fixtures/parity/checkpoint").path
    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("mimood-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// The `mimood` built beside this test bundle (both live in the build products folder).
    private func mimood(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let executable = products.appendingPathComponent("mimood")
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw XCTSkip("no mimood executable beside the tests in \(products.path); build it with `swift build`")
        }
        let finished = try runProcess(executable.path, arguments)
        return (finished.status, finished.output, finished.errors)
    }

    private func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let url = folder.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    private func read(_ name: String, in directory: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent(name)))
    }

    /// The parity input's first slice, a preprocessed 160×160 image in [0, 1].
    private func paritySlice() throws -> NPYArray {
        let url = Self.repository.appendingPathComponent("Tests/Fixtures/parity/input.npy")
        let stack = try NPY.decode([UInt8](Data(contentsOf: url)))
        return NPYArray(shape: [160, 160], values: Array(stack.values.prefix(160 * 160)))
    }

    /// A small anisotropic volume: the slice's brain, 6 slices thick, at 1.2 × 1.0 × 2.0 mm.
    private func volume() throws -> (Volume, NIfTIGeometry) {
        let slice = try paritySlice().values
        var volume = Volume(zeros: [160, 160, 6])
        for k in 0..<6 { for j in 0..<160 { for i in 0..<160 { volume[i, j, k] = slice[j * 160 + i] * 1000 } } }
        let affine = Affine(rows: [[1.2, 0, 0, -90], [0, 1, 0, -80], [0, 0, 2, -6], [0, 0, 0, 1]])
        return (volume, NIfTIGeometry(affine: affine))
    }

    func testDetectWritesEveryOutputOnTheInputsGridForEachFormat() throws {
        let slice = try write(NPY.encode(shape: [160, 160], float32: try paritySlice().values), "slice.npy")
        let (volume, geometry) = try volume()
        let nifti = try write(NIfTI.encode(volume, geometry: geometry), "head.nii.gz")
        let npyVolume = try write(NPY.encode(volume), "stack.npy")
        let out = folder.appendingPathComponent("out").path
        let run = try mimood(["detect", "--model", Self.checkpoint, "--out", out, "--restorations", "2", "--steps", "2",
                              slice, nifti, npyVolume])
        XCTAssertEqual(run.status, 0, run.errors)
        XCTAssertTrue(run.output.contains("slice.npy: 1 slice(s)"), run.output)

        XCTAssertEqual(try NPY.decode(read("slice_anomaly.npy", in: out)).shape, [160, 160])
        XCTAssertEqual(try NPY.decode(read("slice_tokens.npy", in: out)).shape, [20, 20])
        let map = try NIfTI.decode(read("head_anomaly.nii.gz", in: out))
        XCTAssertEqual(map.volume.shape, [160, 160, 6])
        XCTAssertEqual(try map.geometry.affine(), try geometry.affine())
        XCTAssertTrue(map.volume.voxels.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertEqual(try NPY.decode(read("head_anomaly.npy", in: out)).shape, [160, 160, 6])
        XCTAssertEqual(try NPY.decode(read("stack_anomaly.npy", in: out)).shape, [160, 160, 6])
        let slices = try NPY.decode(read("head_tokens.npy", in: out)).shape
        XCTAssertEqual(slices.suffix(2), [20, 20])
        for stem in ["slice", "head", "stack"] {
            let png = try PNG.decode(read("\(stem)_overlay.png", in: out))
            XCTAssertEqual([png.width, png.height], [160, 160], stem)
        }
    }

    func testBadInputsAreNamedAndTheGoodOnesStillWritten() throws {
        let good = try write(NPY.encode(shape: [160, 160], float32: try paritySlice().values), "good.npy")
        let corrupt = try write(Array("\u{93}NUMPY not really".utf8), "corrupt.npy")
        let line = try write(NPY.encode(shape: [7], float32: [Float](repeating: 0.5, count: 7)), "line.npy")
        let missing = folder.appendingPathComponent("missing.nii.gz").path
        let out = folder.appendingPathComponent("out").path
        let run = try mimood(["detect", "--model", Self.checkpoint, "--out", out, "--steps", "1", "--restorations", "1",
                              corrupt, good, missing, line])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.errors.contains("corrupt.npy:"), run.errors)
        XCTAssertTrue(run.errors.contains("missing.nii.gz: cannot read the file"), run.errors)
        XCTAssertTrue(run.errors.contains("line.npy: a .npy input must be a 2-D slice or a 3-D volume"), run.errors)
        XCTAssertTrue(run.errors.contains("3 of 4 inputs failed"), run.errors)
        XCTAssertNoThrow(try NPY.decode(read("good_anomaly.npy", in: out)))
    }

    func testOutOfRangeParametersAndAMissingModelAreRefusedWithTheirNames() throws {
        let slice = try write(NPY.encode(shape: [160, 160], float32: try paritySlice().values), "slice.npy")
        let out = folder.appendingPathComponent("out").path
        let zero = try mimood(["detect", "--model", Self.checkpoint, "--out", out, "--restorations", "0", slice])
        XCTAssertNotEqual(zero.status, 0)
        XCTAssertTrue(zero.errors.contains("restorations"), zero.errors)
        let method = try mimood(["detect", "--model", Self.checkpoint, "--out", out, "--method", "magic", slice])
        XCTAssertNotEqual(method.status, 0)
        XCTAssertTrue(method.errors.contains("--method must be one of mim-ood"), method.errors)
        let model = try mimood(["detect", "--model", folder.appendingPathComponent("nowhere").path, "--out", out, slice])
        XCTAssertNotEqual(model.status, 0)
        XCTAssertTrue(model.errors.contains("cannot load the model"), model.errors)
    }

    func testBenchReportsEveryStageAndTheTransformerRate() throws {
        let run = try mimood(["bench", "--model", Self.checkpoint, "--batch", "2", "--restorations", "2", "--steps", "2",
                              "--repeats", "1", "--threads", "1", "--no-pytorch"])
        XCTAssertEqual(run.status, 0, run.errors)
        for stage in ["slices/s", "tokenize", "restore", "decode", "anomaly_map", "total", "GFLOP/s", "nominal peak"] {
            XCTAssertTrue(run.output.contains(stage), "\(stage) missing in:\n\(run.output)")
        }
    }
}
