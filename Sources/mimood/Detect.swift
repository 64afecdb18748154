import ArgumentParser
import Foundation
import Imaging
import Kernels
import Models

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

    /// The training caches' rule for a slice worth learning from (Training/mimood_train/data.py).
    static let minimumBrainPixelsToShow = 1500

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
                let stem = PreparedInput.stem(of: path)
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
        let input = try PreparedInput.load(path: path, preprocessed: preprocessed)
        let size = Preprocessing.sliceSize, area = size * size
        var maps: [Float] = [], tokenScores: [Float] = [], stepsRun = 0
        for start in stride(from: 0, to: input.sliceCount, by: batch) {
            let end = min(input.sliceCount, start + batch)
            // One job per slice, seeded by its index: a slice's result does not depend on --batch.
            let jobs = (start..<end).map { index in
                var own = parameters
                own.seed = parameters.seed &+ UInt64(index)
                return RestorationJob(images: sliceTensor(input.slices[index * area ..< (index + 1) * area], count: 1, size: size),
                                      parameters: own)
            }
            for result in try engine.run(jobs) {
                maps += result.anomalyMap.scalars
                tokenScores += result.tokenScores.scalars
                stepsRun = max(stepsRun, result.stepsRun)
            }
            if input.sliceCount > batch {
                printError("\(stem): \(end)/\(input.sliceCount) slices, \(seconds(since: started)) s")
            }
        }
        let grid = engine.vqvae.config.grid
        try write(input, maps: maps, tokenScores: tokenScores, grid: grid, stem: stem)
        let threshold = parameters.methodThreshold
        let anomalousTokens = tokenScores.filter { $0 > threshold }.count
        let mean = maps.reduce(0, +) / Float(max(maps.count, 1))
        print("\(path): \(input.sliceCount) slice(s), max \(format(maps.max() ?? 0)), mean \(format(mean)), "
              + "\(anomalousTokens) of \(tokenScores.count) tokens above \(format(threshold)) (\(grid)×\(grid) per slice), "
              + "steps run \(stepsRun), \(seconds(since: started)) s")
    }

    /// `<stem>_anomaly.npy` and `<stem>_tokens.npy` (and for volumes `<stem>_anomaly.nii.gz`) on the input's
    /// grid, and `<stem>_overlay.png`: the slice with the highest in-brain score, in the model's 160×160 frame.
    private func write(_ input: PreparedInput, maps: [Float], tokenScores: [Float], grid: Int, stem: String) throws {
        let size = Preprocessing.sliceSize, area = size * size
        switch input.kind {
        case .image(let geometry):
            let map = Preprocessing.sliceToImage(maps, geometry: geometry)
            try save(NPY.encode(shape: [map.height, map.width], float32: map.pixels), "\(stem)_anomaly.npy")
        case .volume(let geometry, let header):
            let map = Preprocessing.slicesToVolume(maps, geometry: geometry)
            try save(NPY.encode(map), "\(stem)_anomaly.npy")
            try save(NIfTI.encode(map, geometry: header, description: "mimood anomaly map"), "\(stem)_anomaly.nii.gz")
        case .slices(let shape):
            try save(NPY.encode(shape: shape, float32: maps), "\(stem)_anomaly.npy")
        }
        let tokenShape = input.isTwoDimensional ? [grid, grid] : [input.sliceCount, grid, grid]
        try save(NPY.encode(shape: tokenShape, float32: tokenScores), "\(stem)_tokens.npy")

        // The slice to show: the highest in-brain score among slices with as much brain as the training
        // slices had (edge slices with a sliver of brain are out of distribution and light up whole).
        let brainPixels = (0..<input.sliceCount).map { z in input.brain[z * area ..< (z + 1) * area].filter { $0 }.count }
        let candidates = (0..<input.sliceCount).filter { brainPixels[$0] >= Detect.minimumBrainPixelsToShow }
        let inBrainMaximum = { (z: Int) in
            (z * area ..< (z + 1) * area).reduce(Float(0)) { input.brain[$1] ? max($0, maps[$1]) : $0 }
        }
        let worst = (candidates.isEmpty ? Array(0..<input.sliceCount) : candidates)
            .max { inBrainMaximum($0) < inBrainMaximum($1) } ?? 0
        let slice = GrayImage(width: size, height: size, pixels: Array(input.slices[worst * area ..< (worst + 1) * area]))
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

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

func seconds(since start: ContinuousClock.Instant) -> String {
    let elapsed = ContinuousClock.now - start
    return String(format: "%.2f", elapsed.inSeconds)
}
