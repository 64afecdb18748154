import ArgumentParser
import Foundation
import Imaging
import Kernels
import Models

/// `mimood detect`: anomaly maps, token heatmaps and overlays for slices and volumes on disk.
struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write anomaly maps, token heatmaps and PNG overlays for .npy slices and NIfTI volumes.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var inference: InferenceOptions

    @Option(help: "Output directory (created if missing).") var out: String
    @Option(help: "Slices per engine call (memory bound, not a result).") var batch = 8
    @Argument(help: "Input files: .npy (2-D slice or 3-D volume), .nii, .nii.gz.") var inputs: [String]

    /// The training caches' rule for a slice worth learning from (Training/mimood_train/data.py).
    static let minimumBrainPixelsToShow = 1500

    func validate() throws {
        if batch < 1 { throw ValidationError("--batch must be at least 1, got \(batch)") }
        if inputs.isEmpty { throw ValidationError("give at least one input file") }
    }

    func run() throws {
        let (engine, _) = try modelOptions.engine()
        let parameters = try inference.parameters(defaults: engine.defaults)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        var failed: [String] = []
        for path in inputs {
            do {
                try detect(path: path, engine: engine, parameters: parameters)
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

    private func detect(path: String, engine: Engine, parameters: InferenceParameters) throws {
        let started = ContinuousClock.now
        let input = try PreparedInput.load(path: path)
        let volume = input.preprocessed
        let size = Preprocessing.sliceSize, area = size * size
        var maps: [Float] = [], tokenScores: [Float] = [], stepsRun = 0
        for start in stride(from: 0, to: volume.sliceCount, by: batch) {
            let end = min(volume.sliceCount, start + batch)
            // One job per slice, seeded by its index: a slice's result does not depend on --batch.
            let jobs = (start..<end).map { index in
                var own = parameters
                own.seed = parameters.seed &+ UInt64(index)
                return RestorationJob(images: sliceTensor(volume.slices[index * area ..< (index + 1) * area], count: 1, size: size),
                                      parameters: own)
            }
            for result in try engine.run(jobs) {
                maps += result.anomalyMap.scalars
                tokenScores += result.tokenScores.scalars
                stepsRun = max(stepsRun, result.stepsRun)
            }
            if volume.sliceCount > batch {
                printError("\(PreparedInput.stem(of: path)): \(end)/\(volume.sliceCount) slices, \(seconds(since: started)) s")
            }
        }
        try write(input, maps: maps, tokenScores: tokenScores, stem: PreparedInput.stem(of: path))
        let grid = engine.vqvae.config.grid
        let threshold = switch parameters.method {
        case .mimOOD: parameters.lambda
        case .mvtmCritic: parameters.criticThreshold
        case .ar: parameters.lambdaNLL
        }
        let anomalousTokens = tokenScores.filter { $0 > threshold }.count
        let mean = maps.reduce(0, +) / Float(max(maps.count, 1))
        print("\(path): \(volume.sliceCount) slice(s), max \(format(maps.max() ?? 0)), mean \(format(mean)), "
              + "\(anomalousTokens) of \(tokenScores.count) tokens above \(format(threshold)) (\(grid)×\(grid) per slice), "
              + "steps run \(stepsRun), \(seconds(since: started)) s")
    }

    /// `<stem>_anomaly.npy` and `<stem>_tokens.npy` (and for volumes `<stem>_anomaly.nii.gz`) on the input's
    /// grid, and `<stem>_overlay.png`: the slice with the highest in-brain score, in the model's 160×160 frame.
    private func write(_ input: PreparedInput, maps: [Float], tokenScores: [Float], stem: String) throws {
        let volume = input.preprocessed
        let size = Preprocessing.sliceSize, area = size * size
        let grid = Int(Double(tokenScores.count / volume.sliceCount).squareRoot())
        switch input.kind {
        case .image:
            let map = Preprocessing.sliceToImage(maps, geometry: volume.geometry)
            try save(NPY.encode(shape: [map.height, map.width], float32: map.pixels), "\(stem)_anomaly.npy")
            try save(NPY.encode(shape: [grid, grid], float32: tokenScores), "\(stem)_tokens.npy")
        case .volume(let geometry):
            let map = Preprocessing.slicesToVolume(maps, geometry: volume.geometry)
            try save(NPY.encode(map), "\(stem)_anomaly.npy")
            try save(NIfTI.encode(map, geometry: geometry, description: "mimood anomaly map"), "\(stem)_anomaly.nii.gz")
            try save(NPY.encode(shape: [volume.sliceCount, grid, grid], float32: tokenScores), "\(stem)_tokens.npy")
        }
        // The slice to show: the highest in-brain score among slices with as much brain as the training
        // slices had (edge slices with a sliver of brain are out of distribution and light up whole).
        let brainPixels = (0..<volume.sliceCount).map { z in volume.brain[z * area ..< (z + 1) * area].filter { $0 }.count }
        let candidates = (0..<volume.sliceCount).filter { brainPixels[$0] >= Detect.minimumBrainPixelsToShow }
        let inBrainMaximum = { (z: Int) in
            (z * area ..< (z + 1) * area).reduce(Float(0)) { volume.brain[$1] ? max($0, maps[$1]) : $0 }
        }
        let worst = (candidates.isEmpty ? Array(0..<volume.sliceCount) : candidates)
            .max { inBrainMaximum($0) < inBrainMaximum($1) } ?? 0
        let slice = GrayImage(width: size, height: size, pixels: Array(volume.slices[worst * area ..< (worst + 1) * area]))
        let scores = GrayImage(width: size, height: size, pixels: Array(maps[worst * area ..< (worst + 1) * area]))
        try save(PNG.encode(AnomalyOverlay.render(image: slice, scores: scores)), "\(stem)_overlay.png")
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
    return String(format: "%.2f", Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}
