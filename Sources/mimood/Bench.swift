import ArgumentParser
import Detection
import Foundation
import Imaging
import JSON
import Kernels
import Models
import Threading

/// `mimood bench`: the restoration pipeline's speed on a batch, per stage. scripts/bench-engine runs it
/// beside the PyTorch reference on the same weights (Benchmarks/Engine). With `--volume`, whole volumes
/// instead, as the service runs them (early exit, the checkpoint's settings), MIM-OOD beside the AR baseline.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the pipeline on a batch, every step forced to run, per stage; or whole volumes (--volume) or single-slice requests (--slice) as the service runs them.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Slices in the batch.") var batch = 32
    @Option(help: "Restorations per slice (R).") var restorations = 4
    @Option(help: "Detect-and-resample steps (T); all of them run.") var steps = 8
    @Option(help: "Timed runs after one warm-up; medians are reported.") var repeats = 3
    @Option(help: ".npy slice [160,160] or stack [N,160,160], tiled to the batch (default: a built-in phantom slice).")
    var input: String?
    @Flag(help: "Print one JSON object (what scripts/bench-engine reads) instead of the table.") var json = false
    @Option(name: .customLong("volume"), help: ArgumentHelp(
        "A whole volume (.nii, .nii.gz, 3-D .npy) to time instead of the forced batch, run as the service runs it with the "
        + "checkpoint's settings, MIM-OOD beside the AR baseline (KV cache) when the checkpoint has it; repeatable. --batch is then the slices per engine call."))
    var volumes: [String] = []
    @Option(name: .customLong("slice"), help: ArgumentHelp(
        "A 2-D slice (.npy, PNG) to time as one request to the service is run: repeatable; each is its own job with the "
        + "checkpoint's settings, --batch jobs per engine call (the engine's offline rate beside scripts/bench-serve's)."))
    var slices: [String] = []

    func validate() throws {
        for (name, value) in [("--batch", batch), ("--restorations", restorations), ("--steps", steps), ("--repeats", repeats)]
        where value < 1 {
            throw ValidationError("\(name) must be at least 1, got \(value)")
        }
        if !volumes.isEmpty && !slices.isEmpty { throw ValidationError("--volume and --slice time different things; give one of them") }
    }

    func run() throws {
        var (engine, directory) = try modelOptions.engine()
        if !volumes.isEmpty { return try benchVolumes(engine, directory: directory) }
        if !slices.isEmpty { return try benchSlices(engine, directory: directory) }
        let images = try input.map(batchTensor(from:)) ?? phantomBatch()
        var parameters = engine.defaults
        parameters.method = .mimOOD
        parameters.lambda = -1   // below every probability: all T steps resample every token, as PyTorch's bench does
        parameters.steps = steps
        parameters.restorations = restorations
        // Every masked sequence is all [MASK]: the engine would run one generator pass for all of them.
        engine.reusesGeneratorPasses = false
        // One job per slice, each with its own seed: a tiled slice sharing one seed would draw the same
        // restorations as its copies, and the engine decodes a repeated token grid once.
        let area = Preprocessing.sliceSize * Preprocessing.sliceSize
        let jobs = (0..<batch).map { index in
            var own = parameters
            own.seed = parameters.seed &+ UInt64(index)
            return RestorationJob(images: sliceTensor(images.scalars[index * area ..< (index + 1) * area], count: 1, size: Preprocessing.sliceSize),
                                  parameters: own)
        }

        printError("warm-up run (batch \(batch), R = \(restorations), T = \(steps))")
        _ = try engine.run(jobs)   // page in the weights, grow the allocator
        var runs: [StageTimings] = []
        var transformerFLOPs = 0.0
        for run in 1...repeats {
            var sampler = SeededSampler(seeds: jobs.map(\.parameters.seed))
            var timings = StageTimings()
            let results = try engine.run(jobs, sampler: &sampler, timings: &timings)
            guard results.allSatisfy({ $0.stepsRun == steps }) else { throw CLIError("expected all \(steps) steps to run") }
            // The ATD scores one sequence per slice at step 0 (its restorations are still the input), then every
            // changed one; the MVTM runs for each sequence with masked tokens, its last block for those rows only.
            transformerFLOPs = try passFLOPs(engine, results)
            runs.append(timings)
            printError("run \(run)/\(repeats): \(String(format: "%.3f", timings.total.inSeconds)) s")
        }
        let median = { (stage: KeyPath<StageTimings, Duration>) in Bench.median(runs.map { $0[keyPath: stage].inSeconds }) }
        let ours = Bench.stages.map { (name, path) in (name, median(path)) }

        let threads = Threads.count
        let restore = median(\.restore)
        let rate = transformerFLOPs / restore / 1e9
        // The peak on the same threads, just after the timed runs: machines of one kind differ (a Zen 4
        // core runs one 16-wide FMA per cycle, a Zen 5 core two) and so does a shared host from hour to hour.
        let peak = Processor.current.measuredPeakGFLOPS(threads: threads)
        if json {
            let report = JSONObject([
                "engine": .string("mimood"), "model": .string(engine.manifest.name), "threads": .integer(threads),
                "batch": .integer(batch), "restorations": .integer(restorations), "steps": .integer(steps),
                "repeats": .integer(repeats), "blas": .string(blasDescription), "vector_kernels": .string(vectorInstructionSet),
                "seconds": .object(ours.reduce(into: JSONObject()) { $0[$1.0] = .number($1.1) }),
                "slices_per_second": .number(Double(batch) / (ours.last?.1 ?? .nan)),
                "transformer_gflop": .number(transformerFLOPs / 1e9), "transformer_gflops_per_second": .number(rate),
                "measured_peak_gflops": .number(peak),
            ])
            print(JSONValue.object(report).jsonText)
            return
        }
        print("mimood bench: \(engine.manifest.name) (\(directory)), batch \(batch), R = \(restorations), T = \(steps), "
              + "every step run (λ = −1), \(threads) thread(s)")
        print("BLAS: \(blasDescription); vector kernels: \(vectorInstructionSet); median of \(repeats) run(s) after a warm-up")
        for (name, seconds) in ours { print(name.padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%8.3f s", seconds)) }
        print("slices/s".padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%8.2f", Double(batch) / (ours.last?.1 ?? .nan)))
        print(String(format: "Transformer passes: %.1f GFLOP in %.3f s (restore stage) = %.1f GFLOP/s", transformerFLOPs / 1e9, restore, rate))
        print(String(format: "  %.1f %% of the multiply-add peak measured in this run, %.0f GFLOP/s on %d thread(s) (%@)",
                     100 * rate / peak, peak, threads, Processor.current.model as NSString))
    }

    /// Each volume through `Detect.restore` with MIM-OOD and with the AR baseline, the same slices in one run:
    /// the median seconds of `repeats` runs after a warm-up, and the work the early exits left (detector
    /// sequences scored, against every step of every restoration of every slice).
    private func benchVolumes(_ engine: Engine, directory: String) throws {
        var (mimOOD, ar) = (engine.defaults, engine.defaults)
        (mimOOD.method, ar.method) = (.mimOOD, .ar)
        let inputs = try volumes.map { path in (path, try DetectionInput(bytes: fileContents(path), preprocessed: false)) }
        printError("warm-up run (one batch of \(inputs[0].0))")
        _ = try engine.run(inputs[0].1.jobs(mimOOD, slices: 0..<min(batch, inputs[0].1.sliceCount)), parallelism: .slices)
        var rows: [JSONValue] = []
        if !json {
            print("mimood bench: \(engine.manifest.name) (\(directory)), whole volumes, \(Threads.count) thread(s), \(batch) slices per call, "
                  + "median of \(repeats) run(s); R = \(mimOOD.restorations), T = \(mimOOD.steps), λ = \(format(Float(mimOOD.lambda))), "
                  + "λ_NLL = \(format(Float(ar.lambdaNLL)))")
            print("volume                          slices  no brain  method    seconds  slices/s  steps  detector sequences (of all)  "
                  + "generator sequences (of masked)  MIM-OOD/AR")
        }
        for (path, input) in inputs {
            let backgroundOnly = engine.backgroundOnly(sliceTensor(input.slices[...], count: input.sliceCount, size: Preprocessing.sliceSize))
                .filter { $0 }.count
            var secondsOf: [InferenceMethod: Double] = [:]
            for parameters in [mimOOD] + (engine.supports(.ar) ? [ar] : []) {
                var times: [Double] = []
                var results: [RestorationResult] = []
                for _ in 1...repeats {
                    let started = ContinuousClock.now
                    results = try Detect.restore(input, engine: engine, parameters: parameters, batch: batch, name: nil)
                    times.append((ContinuousClock.now - started).inSeconds)
                }
                let seconds = Bench.median(times)
                secondsOf[parameters.method] = seconds
                let scored = results.reduce(0) { $0 + $1.sequencesScored }
                let all = input.sliceCount * parameters.restorations * (parameters.method == .ar ? 1 : parameters.steps)
                let steps = Double(results.reduce(0) { $0 + $1.stepsRun }) / Double(max(results.count, 1))
                // The sequences with masked tokens, which the generator would run without reusing a pass.
                let generated = results.reduce(0) { $0 + $1.generatorPasses.count }
                let masked = results.reduce(0) { $0 + $1.steps.reduce(0) { $0 + $1.masked.count { $0.contains(true) } } }
                let ratio = parameters.method == .ar ? secondsOf[.mimOOD].map { $0 / seconds } : nil
                rows.append(.object(JSONObject([
                    "volume": .string(path), "slices": .integer(input.sliceCount), "background_only_slices": .integer(backgroundOnly),
                    "method": .string(parameters.method.rawValue), "seconds": .number(seconds),
                    "slices_per_second": .number(Double(input.sliceCount) / seconds), "mean_steps_run": .number(steps),
                    "detector_sequences": .integer(scored), "detector_sequences_without_early_exit": .integer(all),
                    "generator_sequences": .integer(generated), "masked_sequences": .integer(masked),
                ])))
                if !json {
                    let name = URL(fileURLWithPath: path).lastPathComponent
                    print(name.padding(toLength: 32, withPad: " ", startingAt: 0)
                          + String(format: "%6d  %8d  ", input.sliceCount, backgroundOnly)
                          + parameters.method.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
                          + String(format: " %8.2f  %8.2f  %5.2f  %9d (%9d) %6.1f %%  ", seconds, Double(input.sliceCount) / seconds, steps,
                                   scored, all, 100 * Double(scored) / Double(all))
                          + (parameters.method == .ar ? String(repeating: " ", count: 31)
                             : String(format: "%12d (%9d) %6.1f %%", generated, masked, 100 * Double(generated) / Double(max(masked, 1))))
                          + (ratio.map { String(format: "  %10.2f", $0) } ?? ""))
                }
            }
        }
        if json { print(JSONValue.object(JSONObject(["engine": .string("mimood"), "threads": .integer(Threads.count), "volumes": .array(rows)])).jsonText) }
    }

    /// The slices as the service runs concurrent single-slice requests: one job each, with the seed a
    /// request without one gets, `batch` jobs per engine call spread over the cores; the median seconds
    /// of `repeats` passes over all of them after a warm-up pass.
    private func benchSlices(_ engine: Engine, directory: String) throws {
        let parameters = engine.defaults
        let jobs = try slices.flatMap { path in
            let input = try DetectionInput(bytes: fileContents(path), preprocessed: false)
            guard input.sliceCount == 1 else { throw CLIError("\(path): --slice takes one 2-D slice, this has \(input.sliceCount)") }
            return input.jobs(parameters, slices: 0..<1)
        }
        func pass() throws -> Double {
            let started = ContinuousClock.now
            for start in stride(from: 0, to: jobs.count, by: batch) {
                _ = try engine.run(Array(jobs[start ..< min(jobs.count, start + batch)]), parallelism: .slices)
            }
            return (ContinuousClock.now - started).inSeconds
        }
        printError("warm-up pass over \(jobs.count) slice(s)")
        _ = try pass()
        let seconds = Bench.median(try (1...repeats).map { _ in try pass() })
        if json {
            print(JSONValue.object(JSONObject([
                "engine": .string("mimood"), "threads": .integer(Threads.count), "batch": .integer(batch),
                "slices": .integer(jobs.count), "seconds": .number(seconds), "slices_per_second": .number(Double(jobs.count) / seconds),
            ])).jsonText)
            return
        }
        print("mimood bench: \(engine.manifest.name) (\(directory)), \(jobs.count) single-slice job(s), \(batch) per call, "
              + "\(Threads.count) thread(s), median of \(repeats) pass(es): "
              + String(format: "%.2f s, %.2f slices/s", seconds, Double(jobs.count) / seconds))
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

    /// The arithmetic of the Transformer passes the results ran: the detector's and the generator's.
    private func passFLOPs(_ engine: Engine, _ results: [RestorationResult]) throws -> Double {
        try flopsPerSequence(engine, .atd) * Double(results.reduce(0) { $0 + $1.sequencesScored })
            + results.flatMap(\.generatorPasses).reduce(0) { try $0 + flopsPerSequence(engine, .mvtm, outputRows: $1) }
    }

    /// FLOPs of one pass of a Transformer over one sequence, counting 2·M·N·K per matrix product:
    /// per block QKV (2·n·d·3d), scores and weighted values (2 · 2·r·n·d), output projection (2·r·d²),
    /// MLP (2 · 2·r·d·h), with r = n query rows; then the head (2·r·d·out). The last block and the head
    /// run for `outputRows` rows only when given (the MVTM at the masked tokens). Norms, softmax and GELU
    /// are not counted.
    private func flopsPerSequence(_ engine: Engine, _ component: Component, outputRows: Int? = nil) throws -> Double {
        guard let network = engine.network(component) else { throw CLIError("the model has no \(component.rawValue)") }
        let c = network.config
        let (n, d, h) = (Double(c.nPositions), Double(c.dim), Double(c.mlpHidden))
        func block(rows r: Double) -> Double { 2 * n * d * 3 * d + 2 * 2 * r * n * d + 2 * r * d * d + 2 * 2 * r * d * h }
        let last = Double(outputRows ?? c.nPositions)
        return Double(c.depth - 1) * block(rows: n) + block(rows: last) + 2 * last * d * Double(c.outputWidth)
    }

    private static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}
