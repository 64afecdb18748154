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

    /// The `mimood` built beside this test bundle (both live in the build products folder), with these
    /// arguments; `environment` ("NAME=value") is set for it through env(1).
    private func mimood(_ arguments: [String], environment: [String] = []) throws -> (status: Int32, output: String, errors: String) {
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let executable = products.appendingPathComponent("mimood")
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            // A failure, not a skip: a suite that skips looks green while it tested nothing.
            throw MissingExecutable(folder: products.path)
        }
        let finished = environment.isEmpty ? try runProcess(executable.path, arguments)
            : try runProcess("/usr/bin/env", environment + [executable.path] + arguments)
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
        // The format is told by magic bytes, not by the name: gzip in a file named .nii.
        let packed = try write(NIfTI.encode(volume, geometry: geometry, compressed: true), "packed.nii")
        let npyVolume = try write(NPY.encode(volume), "stack.npy")
        // A raw slice of another size (the 2-D rule): 150 columns × 170 rows around the parity brain.
        let parity = try paritySlice().values
        var raw = GrayImage(width: 150, height: 170, pixels: [Float](repeating: 0, count: 150 * 170))
        for row in 5..<165 { for column in 0..<150 { raw[row, column] = parity[(row - 5) * 160 + column + 5] } }
        let png = try write(PNG.encode(PNGImage(gray: raw)), "raw.png")
        let out = folder.appendingPathComponent("out").path
        let run = try mimood(["detect", "--model", Self.checkpoint, "--out", out, "--restorations", "2", "--steps", "2",
                              "--batch", "4", slice, nifti, packed, npyVolume, png])
        XCTAssertEqual(run.status, 0, run.errors)
        XCTAssertTrue(run.output.contains("slice.npy: 1 slice(s)"), run.output)
        XCTAssertEqual(run.output.split(separator: "\n").count, 5, run.output)
        // Progress of the volumes (11 slices at 1 mm), in batches of 4.
        XCTAssertTrue(run.errors.contains("head: 4/11 slices") && run.errors.contains("head: 11/11 slices"), run.errors)

        XCTAssertEqual(try NPY.decode(read("slice_anomaly.npy", in: out)).shape, [160, 160])
        XCTAssertEqual(try NPY.decode(read("slice_tokens.npy", in: out)).shape, [20, 20])
        XCTAssertEqual(try NPY.decode(read("raw_anomaly.npy", in: out)).shape, [170, 150])
        XCTAssertEqual(try NPY.decode(read("raw_tokens.npy", in: out)).shape, [20, 20])
        let map = try NIfTI.decode(read("head_anomaly.nii.gz", in: out))
        XCTAssertEqual(map.volume.shape, [160, 160, 6])
        XCTAssertEqual(try map.geometry.affine(), try geometry.affine())
        XCTAssertTrue(map.volume.voxels.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertTrue(map.volume.voxels.contains { $0 > 0 })
        XCTAssertEqual(try NIfTI.decode(read("packed_anomaly.nii.gz", in: out)).volume, map.volume)
        XCTAssertEqual(try NPY.decode(read("head_anomaly.npy", in: out)).shape, [160, 160, 6])
        XCTAssertEqual(try NPY.decode(read("stack_anomaly.npy", in: out)).shape, [160, 160, 6])
        XCTAssertEqual(try NIfTI.decode(read("stack_anomaly.nii.gz", in: out)).volume.shape, [160, 160, 6])
        // The 6 slices at 2 mm become 11 slices at 1 mm (docs/preprocessing.md §3).
        XCTAssertEqual(try NPY.decode(read("head_tokens.npy", in: out)).shape, [11, 20, 20])
        for stem in ["slice", "head", "stack", "raw"] {
            let png = try PNG.decode(read("\(stem)_overlay.png", in: out))
            XCTAssertEqual([png.width, png.height], [160, 160], stem)
        }
    }

    func testPreprocessedSlicesPassUnchangedAndKeepTheirShape() throws {
        let parityInput = Self.repository.appendingPathComponent("Tests/Fixtures/parity/input.npy").path   // [2, 1, 160, 160]
        let slice = try write(NPY.encode(shape: [160, 160], float32: try paritySlice().values), "slice.npy")
        var values = try NPY.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: parityInput)))).values
        values[160 * 160 + 7] = 3   // slice 1 is not in [0, 1]
        let outOfRange = try write(NPY.encode(shape: [2, 160, 160], float32: values), "scaled.npy")
        let (volume, geometry) = try volume()
        let nifti = try write(NIfTI.encode(volume, geometry: geometry), "head.nii.gz")
        let out = folder.appendingPathComponent("out").path
        let run = try mimood(["detect", "--model", Self.checkpoint, "--out", out, "--restorations", "2", "--steps", "2",
                              "--preprocessed", parityInput, slice, outOfRange, nifti])
        XCTAssertEqual(run.status, 1)
        XCTAssertTrue(run.errors.contains("scaled.npy: slice 1: a 160×160 image is taken as already preprocessed"), run.errors)
        XCTAssertTrue(run.errors.contains("head.nii.gz: only .npy and PNG slices can be declared preprocessed"), run.errors)
        XCTAssertTrue(run.errors.contains("2 of 4 inputs failed"), run.errors)

        let maps = try NPY.decode(read("input_anomaly.npy", in: out))
        XCTAssertEqual(maps.shape, [2, 1, 160, 160])
        XCTAssertEqual(try NPY.decode(read("input_tokens.npy", in: out)).shape, [2, 20, 20])
        // Slice 0 of the stack runs with the seed of slice 0, like the single slice: the same map.
        let single = try NPY.decode(read("slice_anomaly.npy", in: out))
        XCTAssertEqual(Array(maps.values.prefix(160 * 160)), single.values)
    }

    func testBadInputsAreNamedAndTheGoodOnesStillWritten() throws {
        let good = try write(NPY.encode(shape: [160, 160], float32: try paritySlice().values), "good.npy")
        let corrupt = try write(Array(NPY.encode(shape: [160, 160], float32: try paritySlice().values).prefix(1000)), "corrupt.npy")
        let text = try write(Array("just text".utf8), "text.npy")
        let line = try write(NPY.encode(shape: [7], float32: [Float](repeating: 0.5, count: 7)), "line.npy")
        let truncated = try write(Array(NIfTI.encode(try volume().0, geometry: try volume().1, compressed: false).prefix(5000)),
                                  "truncated.nii")
        let missing = folder.appendingPathComponent("missing.nii.gz").path
        let directory = folder.appendingPathComponent("folder.npy")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let sameStem = folder.appendingPathComponent("other")
        try FileManager.default.createDirectory(at: sameStem, withIntermediateDirectories: true)
        let duplicate = sameStem.appendingPathComponent("good.npy").path
        try Data(contentsOf: URL(fileURLWithPath: good)).write(to: URL(fileURLWithPath: duplicate))
        let out = folder.appendingPathComponent("out").path
        let run = try mimood(["detect", "--model", Self.checkpoint, "--out", out, "--steps", "1", "--restorations", "1",
                              corrupt, good, missing, line, truncated, directory.path, duplicate, text])
        XCTAssertEqual(run.status, 1)
        XCTAssertTrue(run.errors.contains("corrupt.npy: the .npy data is truncated"), run.errors)
        XCTAssertTrue(run.errors.contains("text.npy: not a .npy, PNG, NIfTI-1 (.nii, .nii.gz) or DICOM image"), run.errors)
        XCTAssertTrue(run.errors.contains("missing.nii.gz: no such file"), run.errors)
        XCTAssertTrue(run.errors.contains("line.npy: a .npy input must be a 2-D slice or a 3-D volume"), run.errors)
        XCTAssertTrue(run.errors.contains("truncated.nii: the NIfTI file is truncated"), run.errors)
        XCTAssertTrue(run.errors.contains("folder.npy: a directory"), run.errors)
        XCTAssertTrue(run.errors.contains("other/good.npy: its outputs good_… would overwrite those of \(good)"), run.errors)
        XCTAssertTrue(run.errors.contains("7 of 8 inputs failed"), run.errors)
        XCTAssertEqual(try NPY.decode(read("good_anomaly.npy", in: out)).shape, [160, 160])
        XCTAssertTrue(run.output.contains("good.npy: 1 slice(s)"), run.output)
    }

    func testTheThresholdIsTheChosenMethodsAndMayBeNegative() throws {
        let slice = try write(NPY.encode(shape: [160, 160], float32: try paritySlice().values), "slice.npy")
        let out = folder.appendingPathComponent("out").path
        let everything = try mimood(["detect", "--model", Self.checkpoint, "--out", out, "--steps", "1", "--restorations", "1",
                                     "--threshold", "-1", slice])
        XCTAssertEqual(everything.status, 0, everything.errors)
        XCTAssertTrue(everything.output.contains("400 of 400 tokens above -1"), everything.output)
        XCTAssertTrue(everything.output.contains("steps run 1"), everything.output)
        // A threshold above every probability: nothing is resampled, no step runs.
        let critic = try mimood(["detect", "--model", Self.checkpoint, "--out", out, "--steps", "3", "--restorations", "1",
                                 "--method", "mvtm-critic", "--threshold", "1", slice])
        XCTAssertEqual(critic.status, 0, critic.errors)
        XCTAssertTrue(critic.output.contains("0 of 400 tokens above 1") && critic.output.contains("steps run 0"), critic.output)
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
        let batch = try mimood(["bench", "--model", Self.checkpoint, "--batch", "0"])
        XCTAssertEqual(batch.status, 64)
        XCTAssertTrue(batch.errors.contains("--batch must be at least 1"), batch.errors)
    }

    func testBenchReportsEveryStageAndTheTransformerRate() throws {
        let run = try mimood(["bench", "--model", Self.checkpoint, "--batch", "2", "--restorations", "2", "--steps", "2",
                              "--repeats", "1", "--threads", "1"])
        XCTAssertEqual(run.status, 0, run.errors)
        for stage in ["slices/s", "tokenize", "restore", "decode", "anomaly_map", "total", "BLAS: ", "vector kernels: ", "1 thread(s)",
                      "Transformer passes: ", "GFLOP/s", "of the multiply-add peak measured in this run"] {
            XCTAssertTrue(run.output.contains(stage), "\(stage) missing in:\n\(run.output)")
        }
        XCTAssertFalse(run.output.contains("pytorch"), run.output)
    }

    /// `--json`, what Benchmarks/Engine/compare.py reads; the built-in phantom input needs no file.
    func testBenchWritesOneJSONObject() throws {
        let run = try mimood(["bench", "--model", Self.checkpoint, "--batch", "2", "--restorations", "1", "--steps", "1",
                              "--repeats", "1", "--threads", "1", "--json"])
        XCTAssertEqual(run.status, 0, run.errors)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any], run.output)
        let seconds = try XCTUnwrap(report["seconds"] as? [String: Double], run.output)
        XCTAssertEqual(Set(seconds.keys), ["tokenize", "restore", "decode", "anomaly_map", "total"])
        XCTAssertTrue(seconds.values.allSatisfy { $0 > 0 && $0.isFinite }, run.output)
        XCTAssertEqual(report["batch"] as? Int, 2)
        XCTAssertGreaterThan(try XCTUnwrap(report["transformer_gflops_per_second"] as? Double), 0)
        XCTAssertGreaterThan(try XCTUnwrap(report["measured_peak_gflops"] as? Double), 0)
        XCTAssertNotNil(["avx512f", "avx2", "sse2"].firstIndex(of: try XCTUnwrap(report["vector_kernels"] as? String)), run.output)

        // MIMOOD_VECTOR_KERNELS picks a narrower copy of the C kernels; every x86-64 CPU runs the SSE2 one.
        let narrow = try mimood(["bench", "--model", Self.checkpoint, "--batch", "1", "--restorations", "1", "--steps", "1",
                                 "--repeats", "1", "--threads", "1", "--json"], environment: ["MIMOOD_VECTOR_KERNELS=sse2"])
        XCTAssertEqual(narrow.status, 0, narrow.errors)
        let narrowReport = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(narrow.output.utf8)) as? [String: Any], narrow.output)
        XCTAssertEqual(narrowReport["vector_kernels"] as? String, "sse2")
    }

    /// `--volume`: a whole volume as the service runs it, MIM-OOD beside the AR baseline; slices without brain
    /// skip the Transformers, and the early exits leave fewer detector sequences than every step would score.
    func testBenchTimesWholeVolumesWithTheWorkTheEarlyExitsLeft() throws {
        let (brain, geometry) = try volume()
        var volume = Volume(zeros: [160, 160, 9])
        for k in 0..<6 { for j in 0..<160 { for i in 0..<160 { volume[i, j, k] = brain[i, j, k] } } }
        let path = try write(NIfTI.encode(volume, geometry: geometry), "head.nii.gz")
        let run = try mimood(["bench", "--model", Self.checkpoint, "--volume", path, "--batch", "4", "--repeats", "1",
                              "--threads", "1", "--json"])
        XCTAssertEqual(run.status, 0, run.errors)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any], run.output)
        let rows = try XCTUnwrap(report["volumes"] as? [[String: Any]], run.output)
        XCTAssertEqual(rows.compactMap { $0["method"] as? String }, ["mim-ood", "ar"])
        for row in rows {
            let slices = try XCTUnwrap(row["slices"] as? Int)
            XCTAssertEqual(slices, 17, "9 slices of 2 mm resampled to 1 mm")
            XCTAssertEqual(row["background_only_slices"] as? Int, 5, "\(row)")
            let scored = try XCTUnwrap(row["detector_sequences"] as? Int), all = try XCTUnwrap(row["detector_sequences_without_early_exit"] as? Int)
            XCTAssertGreaterThan(scored, 0)
            XCTAssertLessThan(scored, all, "\(row)")
            XCTAssertGreaterThan(try XCTUnwrap(row["seconds"] as? Double), 0)
        }
        let table = try mimood(["bench", "--model", Self.checkpoint, "--volume", path, "--repeats", "1", "--threads", "1"])
        XCTAssertEqual(table.status, 0, table.errors)
        for column in ["no brain", "detector sequences (of all)", "MIM-OOD/AR", "head.nii.gz", "mim-ood", "ar "] {
            XCTAssertTrue(table.output.contains(column), "\(column) missing in:\n\(table.output)")
        }
    }

    /// `--slice`: single slices as the service runs concurrent requests, the engine's offline rate that
    /// scripts/bench-serve sets the service's beside; a volume is refused there.
    func testBenchTimesSingleSliceRequests() throws {
        let values = try paritySlice().values
        let first = try write(NPY.encode(shape: [160, 160], float32: values), "first.npy")
        let second = try write(NPY.encode(shape: [160, 160], float32: values.reversed()), "second.npy")
        let run = try mimood(["bench", "--model", Self.checkpoint, "--slice", first, "--slice", second, "--batch", "2",
                              "--repeats", "1", "--threads", "1", "--json"])
        XCTAssertEqual(run.status, 0, run.errors)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any], run.output)
        XCTAssertEqual(report["slices"] as? Int, 2)
        XCTAssertGreaterThan(try XCTUnwrap(report["slices_per_second"] as? Double), 0)

        let (brain, geometry) = try volume()
        let path = try write(NIfTI.encode(brain, geometry: geometry), "brain.nii.gz")
        let refused = try mimood(["bench", "--model", Self.checkpoint, "--slice", path, "--repeats", "1", "--threads", "1"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.errors.contains("--slice takes one 2-D slice"), refused.errors)
    }

    /// The comparison with PyTorch (scripts/bench-engine), on this build's binary and the repository's
    /// `.venv` (scripts/test creates it): every cell of the table is a positive number.
    func testTheEngineComparisonRunsThePyTorchReferenceSideBySide() throws {
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let run = try runProcess(Self.repository.appendingPathComponent(".venv/bin/python").path, [
            Self.repository.appendingPathComponent("Benchmarks/Engine/compare.py").path,
            "--mimood", products.appendingPathComponent("mimood").path, "--python", Self.repository.appendingPathComponent(".venv/bin/python").path,
            "--model", Self.checkpoint, "--batch", "2", "--restorations", "1", "--steps", "1", "--repeats", "1", "--threads", "1"])
        XCTAssertEqual(run.status, 0, run.errors)
        let lines = run.output.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains { $0.hasPrefix("stage") && $0.contains("pytorch") && $0.hasSuffix("speed ratio") }, run.output)
        for stage in ["tokenize", "restore", "decode", "anomaly_map", "total", "slices/s"] {
            let row = lines.first { $0.hasPrefix(stage + " ") }?.split(separator: " ") ?? []
            // name, ours (value [s]), PyTorch's (value [s]), ratio: every cell filled with a number.
            let numbers = row.compactMap { Double($0) }
            XCTAssertEqual(numbers.count, 3, "row \(stage) in:\n\(run.output)")
            XCTAssertTrue(numbers.allSatisfy { $0 > 0 && $0.isFinite }, "row \(stage) in:\n\(run.output)")
        }
    }

    /// Two labelled volumes in the synthetic set's layout: {id}_t2, {id}_brainmask, {id}_seg.
    private func labelledSet() throws -> String {
        let (volume, geometry) = try volume()
        let data = folder.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        var lesion = Volume(zeros: volume.shape)
        for k in 0..<6 { for j in 60..<90 { for i in 60..<90 { lesion[i, j, k] = 1 } } }
        let brain = Volume(shape: volume.shape, voxels: volume.voxels.map { $0 > 0 ? 1 : 0 })
        for id in ["a", "b"] {
            for (kind, content) in [("t2", volume), ("brainmask", brain), ("seg", lesion)] {
                try Data(NIfTI.encode(content, geometry: geometry)).write(to: data.appendingPathComponent("\(id)_\(kind).nii.gz"))
            }
        }
        return data.path
    }

    func testEvalWritesBothTablesAndResumesFromItsCache() throws {
        let data = try labelledSet()
        let out = folder.appendingPathComponent("eval").path
        let arguments = ["eval", "--model", Self.checkpoint, "--data", data, "--out", out, "--slices-per-volume", "2",
                         "--methods", "vqvae,ar-r4", "--threads", "1"]
        let first = try mimood(arguments + ["--timing-batch", "1", "--figures", "1"])
        XCTAssertEqual(first.status, 0, first.errors)
        let table1 = String(decoding: try read("table1.csv", in: out), as: UTF8.self).split(separator: "\n")
        // No lesion kinds, no prior: one group, the four networks' scorers and two baselines.
        XCTAssertEqual(table1.dropFirst().map { $0.prefix { $0 != "," } }, ["atd", "mvtm", "ar", "critic", "intensity", "vqvae-residual"])
        let table2 = String(decoding: try read("table2.csv", in: out), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(table2.dropFirst().map { $0.prefix { $0 != "," } }, ["vqvae", "ar-r4", "intensity", "ar-r4-full-pass"])
        XCTAssertTrue(first.output.contains("| AR restoration R=4 (full pass per position) |"), first.output)
        XCTAssertEqual(String(decoding: try read("per_volume.csv", in: out), as: UTF8.self).split(separator: "\n").count, 3)
        XCTAssertTrue(try read("figures/a.png", in: out).starts(with: [0x89, 0x50, 0x4E, 0x47]))

        // A rerun reads every map from the cache: the files stay as they were, the results too.
        let cached = URL(fileURLWithPath: out).appendingPathComponent("cache/2-slices")
        let files = try FileManager.default.subpathsOfDirectory(atPath: cached.path).filter { $0.hasSuffix(".npy") }
        XCTAssertEqual(files.count, 2 * (4 + 2), "two volumes × (four token scorers + two methods)")
        let dates = try files.map { try FileManager.default.attributesOfItem(atPath: cached.appendingPathComponent($0).path)[.modificationDate] as? Date }
        let before = try read("per_volume.csv", in: out)
        let second = try mimood(arguments + ["--timing-batch", "0", "--figures", "0"])
        XCTAssertEqual(second.status, 0, second.errors)
        XCTAssertEqual(try read("per_volume.csv", in: out), before)
        XCTAssertEqual(try files.map { try FileManager.default.attributesOfItem(atPath: cached.appendingPathComponent($0).path)[.modificationDate] as? Date }, dates)
    }

    func testEvalSweepWritesDiceAgainstEachAxisAndTheBestLambda() throws {
        let data = try labelledSet()
        let out = folder.appendingPathComponent("sweep").path
        let run = try mimood(["eval", "--sweep", "--model", Self.checkpoint, "--data", data, "--out", out, "--slices-per-volume", "1",
                              "--sweep-restorations", "1,2", "--sweep-steps", "1", "--sweep-lambdas", "0.5,0.9", "--threads", "1"])
        XCTAssertEqual(run.status, 0, run.errors)
        let rows = String(decoding: try read("sweep.csv", in: out), as: UTF8.self).split(separator: "\n").dropFirst()
        XCTAssertEqual(rows.map { $0.prefix { $0 != "," } }, ["R", "R", "T", "lambda", "lambda"])
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try read("sweep.json", in: out))) as? [String: Any])
        XCTAssertTrue([0.5, 0.9].contains(try XCTUnwrap(json["chosen_lambda"] as? Double)), "\(json)")
    }

    // MARK: - Baselines, lesion kinds and triage

    /// The parity slice as a 1 mm volume of 6 slices 2 mm apart (resampling keeps every value: the
    /// slices are equal), its voxel values × `gain`, and the 30×30 square at rows and columns 60–89
    /// set to `lesion` where there is brain. Returns the image and the square's brain voxels as a mask.
    private func squareLesionVolume(lesion value: Float?, gain: Float = 1000) throws -> (Volume, Volume, NIfTIGeometry) {
        let slice = try paritySlice().values
        var volume = Volume(zeros: [160, 160, 6])
        var lesion = Volume(zeros: volume.shape)
        for k in 0..<6 {
            for j in 0..<160 {
                for i in 0..<160 where slice[j * 160 + i] > 0 {
                    let inSquare = (60..<90).contains(i) && (60..<90).contains(j)
                    volume[i, j, k] = inSquare ? value ?? slice[j * 160 + i] * gain : slice[j * 160 + i] * gain
                    if inSquare && value != nil { lesion[i, j, k] = 1 }
                }
            }
        }
        return (volume, lesion, NIfTIGeometry(affine: Affine(rows: [[1, 0, 0, -80], [0, 1, 0, -80], [0, 0, 2, -6], [0, 0, 0, 1]])))
    }

    /// The parity checkpoint with a uniform `prior` (every code equally likely everywhere) added.
    private func checkpointWithUniformPrior() throws -> String {
        let directory = folder.appendingPathComponent("checkpoint")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Self.checkpoint), to: directory)
        let (positions, codes) = (400, 64)
        let header = Array(#"{"log_prob":{"dtype":"F32","shape":[400,64],"data_offsets":[0,\#(4 * positions * codes)]}}"#.utf8)
        var bytes = withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header
        for _ in 0..<(positions * codes) { bytes += withUnsafeBytes(of: logf(1 / Float(codes)).bitPattern.littleEndian, Array.init) }
        let file = directory.appendingPathComponent("prior.safetensors")
        try Data(bytes).write(to: file)
        let digest = try runProcess("/usr/bin/env", ["sha256sum", file.path]).output.prefix(64)
        let manifestURL = directory.appendingPathComponent("model.json")
        var manifest = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as? [String: Any])
        var components = try XCTUnwrap(manifest["components"] as? [String: Any])
        components["prior"] = ["file": "prior.safetensors", "sha256": String(digest), "num_parameters": positions * codes,
                               "architecture": ["kind": "token_prior", "n_positions": positions, "n_codes": codes, "alpha": 1.0, "sigma": 0.0],
                               "tensors": ["log_prob": ["dtype": "F32", "shape": [positions, codes]]]]
        manifest["components"] = components
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
        return directory.path
    }

    func testEvalBaselinesPerLesionKindAndTriage() throws {
        // Two lesion kinds as the synthetic generator records them: a square brighter than anything else, a dark one.
        let data = folder.appendingPathComponent("set/test_anomalous"), healthy = folder.appendingPathComponent("set/test")
        for directory in [data, healthy] { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
        let subjects: [(id: String, kind: String, value: Float)] = [("bright_0", "bright", 2000), ("dark_0", "dark", 20)]
        for subject in subjects {
            let (volume, lesion, geometry) = try squareLesionVolume(lesion: subject.value)
            let brain = Volume(shape: volume.shape, voxels: volume.voxels.map { $0 > 0 ? 1 : 0 })
            for (suffix, content) in [("t2", volume), ("brainmask", brain), ("seg", lesion)] {
                try Data(NIfTI.encode(content, geometry: geometry)).write(to: data.appendingPathComponent("\(subject.id)_\(suffix).nii.gz"))
            }
        }
        for (id, gain) in [("healthy_0", Float(1000)), ("healthy_1", 800)] {
            let (volume, _, geometry) = try squareLesionVolume(lesion: nil, gain: gain)
            try Data(NIfTI.encode(volume, geometry: geometry)).write(to: healthy.appendingPathComponent("\(id)_t2.nii.gz"))
        }
        let records = subjects.map { ["id": $0.id, "lesion_kind": $0.kind] }
        try JSONSerialization.data(withJSONObject: ["subjects": ["test_anomalous": records]])
            .write(to: folder.appendingPathComponent("set/dataset.json"))

        let out = folder.appendingPathComponent("eval").path
        let run = try mimood(["eval", "--model", try checkpointWithUniformPrior(), "--data", data.path, "--healthy", healthy.path,
                              "--out", out, "--slices-per-volume", "2", "--methods", "mim-ood-r4", "--timing-batch", "0",
                              "--figures", "0", "--threads", "1"])
        XCTAssertEqual(run.status, 0, run.errors)

        func rows(_ name: String) throws -> [String: [Substring]] {
            let lines = String(decoding: try read(name, in: out), as: UTF8.self).split(separator: "\n").dropFirst()
            return Dictionary(lines.map { line in
                let cells = line.split(separator: ",", omittingEmptySubsequences: false)
                return ("\(cells[0])/\(cells[2])", cells)
            }, uniquingKeysWith: { first, _ in first })
        }
        let table1 = try rows("table1.csv"), table2 = try rows("table2.csv")
        XCTAssertEqual(Set(table1.keys.map { $0.split(separator: "/")[0] }),
                       ["atd", "mvtm", "ar", "critic", "code-frequency", "intensity", "vqvae-residual"])
        XCTAssertEqual(Set(table1.keys.map { $0.split(separator: "/")[1] }), ["all", "bright", "dark"])
        // table1.csv: scorer, name, group, ap, auroc, …; table2.csv: row, name, group, method, R, T, threshold, dice, dice threshold, mean volume dice, ap, auroc, …
        let tokenIntensity = try XCTUnwrap(table1["intensity/bright"])
        XCTAssertEqual(Double(tokenIntensity[3]), 1, "the brightest patches are the lesion's: AP 1")
        XCTAssertEqual(Double(tokenIntensity[4]), 1)
        let pixelIntensity = try XCTUnwrap(table2["intensity/bright"])
        XCTAssertEqual([7, 10, 11].map { Double(pixelIntensity[$0]) }, [1, 1, 1], "best DICE, AP and AUROC of the brightest region")
        XCTAssertLessThan(try XCTUnwrap(Double(try XCTUnwrap(table2["intensity/dark"])[11])), 0.5, "a dark lesion ranks low")
        // A uniform prior scores every token alike: AUROC one half, at both levels.
        XCTAssertEqual(Double(try XCTUnwrap(table1["code-frequency/all"])[4]), 0.5)
        XCTAssertEqual(Double(try XCTUnwrap(table2["code-frequency/all"])[11]), 0.5)

        let triage = String(decoding: try read("triage.csv", in: out), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(triage.dropFirst().map { $0.prefix { $0 != "," } }, ["bright_0", "dark_0", "healthy_0", "healthy_1"])
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try read("results.json", in: out))) as? [String: Any])
        let triageRows = try XCTUnwrap((json["triage"] as? [String: Any])?["rows"] as? [[String: Any]])
        XCTAssertEqual(triageRows.count, 6, "max_score, mean_score, two percentiles of the map, the share above the "
                       + "checkpoint's map threshold and the intensity score: \(triageRows.map { $0["name"] ?? "" })")
        XCTAssertEqual(triage.first?.split(separator: ",").count, 10)
        XCTAssertTrue(triage.dropFirst().allSatisfy { line in
            let cells = line.split(separator: ",").compactMap { Double($0) }   // max, mean, p99, p99.9, share, …
            return cells.count == 8 && (0...1).contains(cells[4]) && cells[2] <= cells[3] && cells[3] <= cells[0] + 0.001
        }, "each volume's 99th ≤ 99.9th percentile ≤ max (to a bin), and a share in [0, 1]: \(triage)")
        let intensityRow = try XCTUnwrap(triageRows.last)
        XCTAssertEqual((intensityRow["auroc_per_kind"] as? [String: Double])?["bright"], 1, "\(intensityRow)")
        XCTAssertTrue(run.output.contains("## Triage: healthy volumes against volumes with lesion"), run.output)
        XCTAssertTrue(run.output.contains("## Per lesion kind"), run.output)
        let healthySlices = try XCTUnwrap((json["triage"] as? [String: Any])?["healthy_slices"] as? [[String: Double]])
        XCTAssertEqual(healthySlices.first?["slices"], 22, "two healthy volumes of 11 slices at 1 mm")
        XCTAssertTrue((0...8).contains(try XCTUnwrap(healthySlices.first?["mean_steps_run"])))
    }
}
