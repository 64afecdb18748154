import ArgumentParser
import Foundation
import Imaging
import Kernels
import Models
import Threading

/// `mimood bench`: the restoration pipeline's speed on a batch, beside PyTorch's on the same weights.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the pipeline on a batch (every step forced to run) and the PyTorch reference side by side.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Slices in the batch.") var batch = 32
    @Option(help: "Restorations per slice (R).") var restorations = 4
    @Option(help: "Detect-and-resample steps (T); all of them run.") var steps = 8
    @Option(help: "Timed runs after one warm-up; medians are reported.") var repeats = 3
    @Option(help: ".npy slice [160,160] or stack [N,160,160], tiled to the batch (default: the parity input).")
    var input: String?
    @Option(help: "Python with torch for the reference run (default: $MIMOOD_PYTHON, else .venv/bin/python of the repository).")
    var pytorch: String?
    @Flag(help: "Skip the PyTorch reference run.") var noPytorch = false
    @Option(help: "Peak GFLOP/s to compare with, e.g. measured by `KernelsBenchmark peak` (default: the nominal peak).")
    var peakGflops: Double?

    func validate() throws {
        for (name, value) in [("--batch", batch), ("--restorations", restorations), ("--steps", steps), ("--repeats", repeats)]
        where value < 1 {
            throw ValidationError("\(name) must be at least 1, got \(value)")
        }
        if let peakGflops, !(peakGflops > 0 && peakGflops.isFinite) {
            throw ValidationError("--peak-gflops must be a positive number, got \(peakGflops)")
        }
        if noPytorch && pytorch != nil { throw ValidationError("--pytorch and --no-pytorch exclude each other") }
    }

    func run() throws {
        let (engine, directory) = try modelOptions.engine()
        let inputPath = try input ?? RepositoryFiles.locate("Tests/Fixtures/parity/input.npy", what: "the benchmark input")
        let images = try batchTensor(from: inputPath)
        var parameters = engine.defaults
        parameters.method = .mimOOD
        parameters.lambda = -1   // below every probability: all T steps resample every token, as PyTorch's bench does
        parameters.steps = steps
        parameters.restorations = restorations
        let job = RestorationJob(images: images, parameters: parameters)

        printError("warm-up run (batch \(batch), R = \(restorations), T = \(steps))")
        _ = try engine.run([job])   // page in the weights, grow the allocator
        var runs: [StageTimings] = []
        for run in 1...repeats {
            var sampler = SeededSampler(seeds: [parameters.seed])
            var timings = StageTimings()
            let results = try engine.run([job], sampler: &sampler, timings: &timings)
            guard results.first?.stepsRun == steps else { throw CLIError("expected all \(steps) steps to run") }
            runs.append(timings)
            printError("run \(run)/\(repeats): \(String(format: "%.3f", timings.total.inSeconds)) s")
        }
        let median = { (stage: KeyPath<StageTimings, Duration>) in Bench.median(runs.map { $0[keyPath: stage].inSeconds }) }
        let ours = Bench.stages.map { (name, path) in (name, median(path)) }

        let threads = Threads.count
        var reference: Reference?, referenceFailure: Error?
        if !noPytorch {
            printError("the PyTorch reference (Training/tools/bench.py) on the same checkpoint, input and sizes, \(threads) thread(s)")
            do { reference = try pytorchReference(modelDirectory: directory, input: inputPath, threads: threads) }
            catch { referenceFailure = error }
        }

        print("mimood bench: \(engine.manifest.name) (\(directory)), batch \(batch), R = \(restorations), T = \(steps), "
              + "every step run (λ = −1), \(threads) thread(s)")
        print("BLAS: \(blasDescription); median of \(repeats) run(s) after a warm-up")
        printTable(ours: ours, reference: reference)

        let transformerFLOPs = try transformerFLOPsPerStep(engine) * Double(steps * batch * restorations)
        let restore = median(\.restore)
        let rate = transformerFLOPs / restore / 1e9
        let processor = Processor.current
        let nominal = processor.nominalPeakGFLOPS(cores: threads)
        print(String(format: "Transformer passes: %.1f GFLOP in %.3f s (restore stage) = %.1f GFLOP/s", transformerFLOPs / 1e9, restore, rate))
        if let peakGflops {
            print(String(format: "  %.1f %% of the given peak %.0f GFLOP/s", 100 * rate / peakGflops, peakGflops))
        }
        print(String(format: "  %.1f %% of the nominal peak %.0f GFLOP/s = %d thread(s) × %d FMA pipes × %d lanes × 2 × %.3f GHz (%@)",
                     100 * rate / nominal, nominal, threads, processor.fmaPipes, processor.floatLanes, processor.megahertz / 1000,
                     processor.model as NSString))
        if let referenceFailure { throw referenceFailure }
    }

    /// The stages `Engine.run` times, in pipeline order, with PyTorch bench's names.
    private static var stages: [(String, KeyPath<StageTimings, Duration>)] {
        [("tokenize", \.tokenize), ("restore", \.restore), ("decode", \.decode), ("anomaly_map", \.anomalyMap), ("total", \.total)]
    }

    /// Seconds per stage and slices per second, ours beside PyTorch's with the speed ratio
    /// (> 1: mimood is faster).
    private func printTable(ours: [(String, Double)], reference: Reference?) {
        func cell(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
        let width = max(16, (reference?.engine.count ?? 0) + 2)
        var rows: [(name: String, ours: String, reference: String, ratio: Double)] = ours.map { name, seconds in
            let theirs = reference?.stages.first { $0.0 == name }?.1 ?? .nan
            return (name, String(format: "%.3f s", seconds), String(format: "%.3f s", theirs), theirs / seconds)
        }
        let rate = Double(batch) / (ours.last?.1 ?? .nan), referenceRate = reference?.slicesPerSecond ?? .nan
        rows.append(("slices/s", String(format: "%.2f", rate), String(format: "%.2f", referenceRate), rate / referenceRate))
        print("stage".padding(toLength: 12, withPad: " ", startingAt: 0) + cell("mimood", 10)
              + (reference.map { cell($0.engine, width) + cell("speed ratio", 13) } ?? ""))
        for row in rows {
            print(row.name.padding(toLength: 12, withPad: " ", startingAt: 0) + cell(row.ours, 10)
                  + (reference == nil ? "" : cell(row.reference, width) + cell(String(format: "%.2f", row.ratio), 13)))
        }
    }

    /// The batch: slices of the .npy file, repeated in order to fill it.
    private func batchTensor(from path: String) throws -> Tensor {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
        let array = try NPY.decode([UInt8](data))
        let size = Preprocessing.sliceSize, area = size * size
        guard array.shape.suffix(2) == [size, size], array.values.count >= area else {
            throw CLIError("\(path): expected slices of \(size)×\(size), got shape \(array.shape)")
        }
        let available = array.values.count / area
        let scalars = (0..<batch).flatMap { index in array.values[(index % available) * area ..< (index % available + 1) * area] }
        return sliceTensor(scalars[...], count: batch, size: size)
    }

    /// FLOPs of one ATD pass and one MVTM pass over one sequence, counting 2·M·N·K per matrix product:
    /// per block QKV (2·n·d·3d), scores and weighted values (2 · 2·n²·d), output projection (2·n·d²),
    /// MLP (2 · 2·n·d·h); then the head (2·n·d·out). Norms, softmax and GELU are not counted.
    private func transformerFLOPsPerStep(_ engine: Engine) throws -> Double {
        try [Component.atd, .mvtm].reduce(0.0) { sum, component in
            guard let network = engine.network(component) else { throw CLIError("the model has no \(component.rawValue)") }
            let c = network.config
            let (n, d, h) = (Double(c.nPositions), Double(c.dim), Double(c.mlpHidden))
            let block = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * h
            return sum + Double(c.depth) * block + 2 * n * d * Double(c.outputWidth)
        }
    }

    private struct Reference {
        let engine: String
        let total: Double
        let slicesPerSecond: Double
        let stages: [(String, Double)]
    }

    /// `python Training/tools/bench.py --json` on the same checkpoint, input and sizes.
    private func pytorchReference(modelDirectory: String, input: String, threads: Int) throws -> Reference {
        let script = try RepositoryFiles.locate("Training/tools/bench.py", what: "the PyTorch reference")
        let repository = URL(fileURLWithPath: script).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let python = pytorch ?? ProcessInfo.processInfo.environment["MIMOOD_PYTHON"]
            ?? repository.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw CLIError("no Python at \(python) for the PyTorch reference: pass --pytorch PYTHON (one with torch), "
                           + "set MIMOOD_PYTHON, or skip it with --no-pytorch")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, "--json", "--model", modelDirectory, "--input", input,
                             "--batch", "\(batch)", "--restorations", "\(restorations)", "--steps", "\(steps)",
                             "--repeats", "\(repeats)", "--threads", "\(threads)"]
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = repository.appendingPathComponent("Training").path
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        do { try process.run() } catch { throw CLIError("cannot run \(python) for the PyTorch reference: \(error)") }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let seconds = json["seconds"] as? [String: Double], let total = seconds["total"],
              let rate = json["slices_per_second"] as? Double, let name = json["engine"] as? String else {
            throw CLIError("the PyTorch reference failed (exit \(process.terminationStatus)); run it alone: "
                           + "\(python) \(script) --model \(modelDirectory)")
        }
        let order = ["tokenize", "restore", "decode", "anomaly_map", "total"]
        return Reference(engine: name, total: total, slicesPerSecond: rate,
                         stages: order.compactMap { key in seconds[key].map { (key, $0) } })
    }


    private static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}
