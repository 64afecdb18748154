import ArgumentParser
import Foundation
import Imaging
import Kernels
import Models

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
    @Option(help: "Python with torch for the reference run (default: .venv/bin/python of the repository).")
    var pytorch: String?
    @Flag(help: "Skip the PyTorch reference run.") var noPytorch = false

    func validate() throws {
        for (name, value) in [("--batch", batch), ("--restorations", restorations), ("--steps", steps), ("--repeats", repeats)]
        where value < 1 {
            throw ValidationError("\(name) must be at least 1, got \(value)")
        }
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

        _ = try engine.run([job])   // warm-up: page in the weights, grow the allocator
        var runs: [StageTimings] = []
        for _ in 0..<repeats {
            var sampler = SeededSampler(seeds: [parameters.seed])
            var timings = StageTimings()
            let results = try engine.run([job], sampler: &sampler, timings: &timings)
            guard results.first?.stepsRun == steps else { throw CLIError("expected all \(steps) steps to run") }
            runs.append(timings)
        }
        let median = { (stage: KeyPath<StageTimings, Duration>) in Bench.median(runs.map { Bench.seconds($0[keyPath: stage]) }) }
        let total = median(\.total)

        let transformerFLOPs = try transformerFLOPsPerStep(engine) * Double(steps * batch * restorations)
        let threads = Threads.count
        let peak = Processor.current.nominalPeakGFLOPS(cores: threads)
        print("mimood \(engine.manifest.name): batch \(batch), R = \(restorations), T = \(steps), \(threads) thread(s), \(blasDescription)")
        print(String(format: "  %.2f slices/s (median of %d runs after a warm-up)", Double(batch) / total, repeats))
        for (name, stage) in [("tokenize", \StageTimings.tokenize), ("restore", \.restore), ("decode", \.decode),
                              ("anomaly_map", \.anomalyMap), ("total", \.total)] {
            print(stageLine(name, median(stage)))
        }
        let rate = transformerFLOPs / median(\.restore) / 1e9
        print(String(format: "  Transformer passes: %.1f GFLOP in %.3f s = %.1f GFLOP/s, %.1f %% of the nominal peak %.0f GFLOP/s",
                     transformerFLOPs / 1e9, median(\.restore), rate, 100 * rate / peak, peak))
        print("  (peak = \(threads) cores × \(Processor.current.fmaPipes) FMA pipes × \(Processor.current.floatLanes) lanes × 2 × "
              + String(format: "%.3f GHz nominal, %@)", Processor.current.megahertz / 1000, Processor.current.model as NSString))
        guard !noPytorch else { return }
        let reference = try pytorchReference(modelDirectory: directory, input: inputPath, threads: threads)
        print("\(reference.engine): \(String(format: "%.2f", reference.slicesPerSecond)) slices/s, total \(String(format: "%.3f", reference.total)) s")
        for (name, seconds) in reference.stages { print(stageLine(name, seconds)) }
        print(String(format: "ratio (mimood / PyTorch speed, same run, same threads): %.2f", reference.total / total))
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

    /// `python -m mimood_train.bench --json` on the same checkpoint, input and sizes.
    private func pytorchReference(modelDirectory: String, input: String, threads: Int) throws -> Reference {
        let training = try RepositoryFiles.locate("Training/mimood_train", what: "the PyTorch reference")
        let repository = URL(fileURLWithPath: training).deletingLastPathComponent().deletingLastPathComponent()
        let python = pytorch ?? repository.appendingPathComponent(".venv/bin/python").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-m", "mimood_train.bench", "--json", "--model", modelDirectory, "--input", input,
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
                           + "\(python) -m mimood_train.bench --model \(modelDirectory)")
        }
        let order = ["tokenize", "restore", "decode", "anomaly_map", "total"]
        return Reference(engine: name, total: total, slicesPerSecond: rate,
                         stages: order.compactMap { key in seconds[key].map { (key, $0) } })
    }

    private func stageLine(_ name: String, _ seconds: Double) -> String {
        "  " + name.padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%9.3f s", seconds)
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}
