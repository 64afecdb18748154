import ArgumentParser
import Foundation
import Imaging
import JSON
import Kernels
import Models
import Threading

/// `mimood bench`: the restoration pipeline's speed on a batch, per stage. scripts/bench-engine runs it
/// beside the PyTorch reference on the same weights (Benchmarks/Engine).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the pipeline on a batch, every step forced to run, per stage.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Slices in the batch.") var batch = 32
    @Option(help: "Restorations per slice (R).") var restorations = 4
    @Option(help: "Detect-and-resample steps (T); all of them run.") var steps = 8
    @Option(help: "Timed runs after one warm-up; medians are reported.") var repeats = 3
    @Option(help: ".npy slice [160,160] or stack [N,160,160], tiled to the batch (default: a built-in phantom slice).")
    var input: String?
    @Flag(help: "Print one JSON object (what scripts/bench-engine reads) instead of the table.") var json = false
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
    }

    func run() throws {
        let (engine, directory) = try modelOptions.engine()
        let images = try input.map(batchTensor(from:)) ?? phantomBatch()
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
        let transformerFLOPs = try transformerFLOPsPerStep(engine) * Double(steps * batch * restorations)
        let restore = median(\.restore)
        let rate = transformerFLOPs / restore / 1e9
        let processor = Processor.current
        let nominal = processor.nominalPeakGFLOPS(cores: threads)
        if json {
            let report = JSONObject([
                "engine": .string("mimood"), "model": .string(engine.manifest.name), "threads": .integer(threads),
                "batch": .integer(batch), "restorations": .integer(restorations), "steps": .integer(steps),
                "repeats": .integer(repeats), "blas": .string(blasDescription),
                "seconds": .object(ours.reduce(into: JSONObject()) { $0[$1.0] = .number($1.1) }),
                "slices_per_second": .number(Double(batch) / (ours.last?.1 ?? .nan)),
                "transformer_gflop": .number(transformerFLOPs / 1e9), "transformer_gflops_per_second": .number(rate),
                "nominal_peak_gflops": .number(nominal),
            ])
            print(JSONValue.object(report).jsonText)
            return
        }
        print("mimood bench: \(engine.manifest.name) (\(directory)), batch \(batch), R = \(restorations), T = \(steps), "
              + "every step run (λ = −1), \(threads) thread(s)")
        print("BLAS: \(blasDescription); median of \(repeats) run(s) after a warm-up")
        for (name, seconds) in ours { print(name.padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%8.3f s", seconds)) }
        print("slices/s".padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%8.2f", Double(batch) / (ours.last?.1 ?? .nan)))
        print(String(format: "Transformer passes: %.1f GFLOP in %.3f s (restore stage) = %.1f GFLOP/s", transformerFLOPs / 1e9, restore, rate))
        if let peakGflops {
            print(String(format: "  %.1f %% of the given peak %.0f GFLOP/s", 100 * rate / peakGflops, peakGflops))
        }
        print(String(format: "  %.1f %% of the nominal peak %.0f GFLOP/s = %d thread(s) × %d FMA pipes × %d lanes × 2 × %.3f GHz (%@)",
                     100 * rate / nominal, nominal, threads, processor.fmaPipes, processor.floatLanes, processor.megahertz / 1000,
                     processor.model as NSString))
    }

    /// The stages `Engine.run` times, in pipeline order, with PyTorch bench's names.
    private static var stages: [(String, KeyPath<StageTimings, Duration>)] {
        [("tokenize", \.tokenize), ("restore", \.restore), ("decode", \.decode), ("anomaly_map", \.anomalyMap), ("total", \.total)]
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

    /// A batch of one phantom slice, so that the shipped binary needs no file: an ellipse of "tissue" with
    /// a darker core, the kind of content the encoder sees (with every step forced, content barely matters).
    private func phantomBatch() -> Tensor {
        let size = Preprocessing.sliceSize
        let slice = (0..<size * size).map { index -> Float in
            let (y, x) = (Float(index / size) / Float(size) - 0.5, Float(index % size) / Float(size) - 0.5)
            let radius = (x * x) / 0.16 + (y * y) / 0.2
            return radius > 1 ? 0 : radius < 0.3 ? 0.35 : 0.6 + 0.1 * sin(40 * x) * cos(30 * y)
        }
        return sliceTensor((0..<batch).flatMap { _ in slice }[...], count: batch, size: size)
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

    private static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}
