import ArgumentParser
import Detection
import Foundation
import Imaging
import Models
import Threading

/// `mimood detect`: anomaly maps, token heatmaps and overlays for slices and volumes on disk.
struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write anomaly maps, token heatmaps and PNG overlays for .npy and PNG slices, .npy and NIfTI volumes.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var inference: InferenceOptions

    @Option(help: "Output directory (created if missing).") var out: String
    @Option(help: "Slices per engine call (memory bound, not a result).") var batch = 8
    @Flag(help: "The .npy/PNG inputs are already preprocessed 160×160 slices in [0, 1]: [160,160], [N,160,160] or [N,1,160,160].")
    var preprocessed = false
    @Argument(help: "Input files: .npy (2-D slice or 3-D volume), PNG (2-D slice), .nii, .nii.gz.") var inputs: [String]

    func validate() throws {
        if batch < 1 { throw ValidationError("--batch must be at least 1, got \(batch)") }
        if inputs.isEmpty { throw ValidationError("give at least one input file") }
    }

    func run() throws {
        let (engine, _) = try modelOptions.engine()
        let parameters = try inference.parameters(defaults: engine.defaults)
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        } catch {
            throw CLIError("cannot create the output directory \(out): \(error.localizedDescription)")
        }
        var failed: [String] = []
        var inputOfStem: [String: String] = [:]
        for path in inputs {
            do {
                let stem = Detect.stem(of: path)
                if let earlier = inputOfStem[stem] {
                    throw CLIError("its outputs \(stem)_… would overwrite those of \(earlier); rename one of them")
                }
                inputOfStem[stem] = path
                try detect(path: path, stem: stem, engine: engine, parameters: parameters)
            } catch {
                failed.append(path)
                printError("\(path): \(error)")
            }
        }
        if !failed.isEmpty {
            printError("\(failed.count) of \(inputs.count) inputs failed: \(failed.joined(separator: ", "))")
            throw ExitCode.failure
        }
    }

    private func detect(path: String, stem: String, engine: Engine, parameters: InferenceParameters) throws {
        let started = ContinuousClock.now
        let input = try DetectionInput(bytes: fileContents(path), preprocessed: preprocessed)
        let result = try Detect.run(input, engine: engine, parameters: parameters, batch: batch, name: stem)
        try write(result, stem: stem)
        let tokens = result.sliceTokenScores.count
        print("\(path): \(input.sliceCount) slice(s), max \(format(result.maximumScore)), mean \(format(result.meanScore)), "
              + "\(result.anomalousTokenCount) of \(tokens) tokens above \(format(parameters.methodThreshold)) "
              + "(\(result.grid)×\(result.grid) per slice), steps run \(result.stepsRun), \(seconds(since: started)) s")
    }

    /// Every slice of `input` through the engine, `batch` slices per call, as the service runs it: one job
    /// per slice, slice i seeded with the parameters' seed + i. Progress on stderr for inputs over one batch.
    static func run(_ input: DetectionInput, engine: Engine, parameters: InferenceParameters, batch: Int,
                    name: String) throws -> DetectionResult {
        let results = try restore(input, engine: engine, parameters: parameters, batch: batch, name: name)
        return DetectionResult(input: input, parameters: parameters, results: results, grid: engine.vqvae.config.grid)
    }

    /// `run`'s engine calls: each slice's restoration, in order. `name` labels the progress lines (nil: none).
    static func restore(_ input: DetectionInput, engine: Engine, parameters: InferenceParameters, batch: Int,
                        name: String?) throws -> [RestorationResult] {
        let started = ContinuousClock.now
        var results: [RestorationResult] = []
        for start in stride(from: 0, to: input.sliceCount, by: batch) {
            let end = min(input.sliceCount, start + batch)
            results += try engine.run(input.jobs(parameters, slices: start..<end), parallelism: .slices)
            if let name, input.sliceCount > batch {
                printError("\(name): \(end)/\(input.sliceCount) slices, \(seconds(since: started)) s")
            }
        }
        return results
    }

    /// `<stem>_anomaly.npy` and `<stem>_tokens.npy` (and for volumes `<stem>_anomaly.nii.gz`) on the input's
    /// grid, and `<stem>_overlay.png`: the slice with the highest in-brain score, in the model's 160×160 frame.
    private func write(_ result: DetectionResult, stem: String) throws {
        try save(result.anomalyMap.npy, "\(stem)_anomaly.npy")
        if let nifti = try result.niftiAnomalyMap() { try save(nifti, "\(stem)_anomaly.nii.gz") }
        try save(result.tokenHeatmap.npy, "\(stem)_tokens.npy")
        try save(result.overlayPNG(), "\(stem)_overlay.png")
    }

    /// The file name without its image extension: `sub-01_T2w.nii.gz` → `sub-01_T2w`.
    static func stem(of path: String) -> String {
        var name = URL(fileURLWithPath: path).lastPathComponent
        for suffix in [".nii.gz", ".nii", ".npy", ".png"] where name.lowercased().hasSuffix(suffix) {
            name.removeLast(suffix.count)
            break
        }
        return name
    }

    private func save(_ bytes: [UInt8], _ name: String) throws {
        let url = URL(fileURLWithPath: out).appendingPathComponent(name)
        do {
            try Data(bytes).write(to: url, options: .atomic)
        } catch {
            throw CLIError("cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("mimood: \(message)\n".utf8))
}

func format(_ value: Float) -> String { String(format: "%.4g", Double(value)) }

func seconds(since start: ContinuousClock.Instant) -> String {
    let elapsed = ContinuousClock.now - start
    return String(format: "%.2f", elapsed.inSeconds)
}
