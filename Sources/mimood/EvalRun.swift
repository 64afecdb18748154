import Evaluation
import Foundation
import Imaging
import Kernels
import Models

/// One evaluated configuration: a row of Table 2 or a point of the sweep.
struct EvalSetting {
    let name: String
    let parameters: InferenceParameters
    var arDecoding = ARDecoding.kvCache

    /// Names the cache folder: every parameter the anomaly maps depend on.
    var key: String {
        let p = parameters
        return "\(p.method.rawValue)-R\(p.restorations)-T\(p.steps)-threshold\(p.methodThreshold)-seed\(p.seed)"
            + "-\(p.combine.rawValue)\(p.temperature)-pool\(p.minPool)x\(p.avgPool)"
    }
}

/// Pixel-level measures of one setting over the brain pixels of every evaluated slice (Table 2).
struct PixelMeasures {
    /// Best achievable DICE: one threshold for the whole set, the maximum F1 over the PR curve.
    let dice: Double
    let threshold: Float
    let averagePrecision: Double
    let auroc: Double
    /// DICE of each volume at `threshold`; nil for a volume without lesion in its evaluated slices.
    let volumeDice: [Double?]
    /// Lesion pixels / brain pixels: marking every brain pixel scores DICE 2p / (1 + p), the floor to beat.
    let prevalence: Double

    var meanVolumeDice: Double {
        let values = volumeDice.compactMap { $0 }
        return values.reduce(0, +) / Double(values.count)
    }
}

/// Token-level measures of one scorer (Table 1).
struct TokenMeasures {
    let scorer: TokenScorer
    let averagePrecision: Double
    let auroc: Double
    let tokens: Int
    let anomalous: Int
}

/// The engine over the evaluated volumes, each volume's results cached on disk as it finishes.
struct EvalRun {
    let engine: Engine
    let volumes: [LabelledVolume]
    let batch: Int
    let cache: URL
    private let area = Preprocessing.sliceSize * Preprocessing.sliceSize

    init(engine: Engine, volumes: [LabelledVolume], batch: Int, cache: URL) {
        (self.engine, self.volumes, self.batch, self.cache) = (engine, volumes, batch, cache)
    }

    // MARK: Table 2

    func pixelMeasures(_ setting: EvalSetting) throws -> PixelMeasures {
        var scores: [Float] = [], labels: [Bool] = []
        let maps = try anomalyMaps(setting)
        for (map, volume) in zip(maps, volumes) {
            for pixel in map.indices where volume.brain[pixel] {
                scores.append(map[pixel])
                labels.append(volume.lesion[pixel])
            }
        }
        let curve = PrecisionRecallCurve(scores: scores, labels: labels)
        guard let best = curve.bestDice, let averagePrecision = curve.averagePrecision, let auroc = curve.auroc else {
            throw CLIError("the evaluated brain pixels hold \(curve.positives) lesion and \(curve.negatives) healthy pixels; the measures need both")
        }
        let volumeDice = zip(maps, volumes).map { map, volume in
            let inside = map.indices.filter { volume.brain[$0] }
            return dice(scores: inside.map { map[$0] }, labels: inside.map { volume.lesion[$0] }, threshold: best.threshold)
        }
        return PixelMeasures(dice: best.dice, threshold: best.threshold, averagePrecision: averagePrecision, auroc: auroc,
                             volumeDice: volumeDice, prevalence: Double(curve.positives) / Double(scores.count))
    }

    /// [slices, 160, 160] anomaly maps of every volume, from the cache or the engine. One job per
    /// slice, seeded by its index in the volume: a slice's map depends on neither the batch nor the subset.
    func anomalyMaps(_ setting: EvalSetting) throws -> [[Float]] {
        let folder = cache.appendingPathComponent(setting.key)
        let started = ContinuousClock.now
        var engine = engine
        engine.arDecoding = setting.arDecoding
        return try volumes.enumerated().map { number, volume in
            defer { progress(setting.name, number + 1, of: volumes.count, started: started) }
            if let cached = try cached(folder, volume) { return cached }
            var maps: [Float] = []
            for start in stride(from: 0, to: volume.sliceCount, by: batch) {
                let jobs = (start..<min(volume.sliceCount, start + batch)).map { slice in
                    var parameters = setting.parameters
                    parameters.seed = parameters.seed &+ UInt64(volume.sliceIndices[slice])
                    return RestorationJob(images: tensor(of: volume, slices: slice ..< slice + 1), parameters: parameters)
                }
                maps += try engine.run(jobs).flatMap(\.anomalyMap.scalars)
            }
            try store(maps, shape: [volume.sliceCount, Preprocessing.sliceSize, Preprocessing.sliceSize], folder, volume)
            return maps
        }
    }

    // MARK: Table 1

    /// Every scorer the checkpoint has, over the tokens whose 8×8 patch touches the brain; a token is
    /// anomalous when its patch holds lesion.
    func tokenMeasures() throws -> [TokenMeasures] {
        let grid = engine.vqvae.config.grid
        let factor = Preprocessing.sliceSize / grid
        let scorers = TokenScorer.allCases.filter { engine.network($0.component) != nil }
        var scores = [[Float]](repeating: [], count: scorers.count), labels: [Bool] = []
        let started = ContinuousClock.now
        for (number, volume) in volumes.enumerated() {
            let inside = TokenGrid.anyInPatch(volume.brain, size: Preprocessing.sliceSize, factor: factor)
            let lesion = TokenGrid.anyInPatch(volume.lesion, size: Preprocessing.sliceSize, factor: factor)
            labels += lesion.indices.filter { inside[$0] }.map { lesion[$0] }
            var grids: [[Int]]?   // tokenised once, only when some scorer is not cached
            for (index, scorer) in scorers.enumerated() {
                let folder = cache.appendingPathComponent("tokens-\(scorer.rawValue)")
                let values: [Float]
                if let cached = try cached(folder, volume) {
                    values = cached
                } else {
                    let tokens = try grids ?? engine.tokens(of: tensor(of: volume, slices: 0 ..< volume.sliceCount))
                    grids = tokens
                    values = try engine.tokenScores(scorer, grids: tokens).flatMap { $0 }
                    try store(values, shape: [volume.sliceCount, grid, grid], folder, volume)
                }
                scores[index] += inside.indices.filter { inside[$0] }.map { values[$0] }
            }
            progress("token scores", number + 1, of: volumes.count, started: started)
        }
        return try zip(scorers, scores).map { scorer, scores in
            let curve = PrecisionRecallCurve(scores: scores, labels: labels)
            guard let averagePrecision = curve.averagePrecision, let auroc = curve.auroc else {
                throw CLIError("the evaluated brain tokens hold \(curve.positives) anomalous and \(curve.negatives) normal tokens; the measures need both")
            }
            return TokenMeasures(scorer: scorer, averagePrecision: averagePrecision, auroc: auroc, tokens: labels.count,
                                 anomalous: curve.positives)
        }
    }

    // MARK: Time and figures

    /// Seconds of one engine call on the first `slices` evaluated slices as one batch (tokenise,
    /// restore, decode, anomaly maps), after a warm-up call that pages the weights in.
    func timeBatch(_ setting: EvalSetting, slices: Int) throws -> Double {
        let all = volumes.flatMap(\.slices)
        let count = min(slices, all.count / area)
        var engine = engine
        engine.arDecoding = setting.arDecoding
        var warmUp = setting.parameters
        (warmUp.restorations, warmUp.steps) = (1, 1)
        _ = try engine.run([RestorationJob(images: sliceTensor(all[0 ..< area], count: 1, size: Preprocessing.sliceSize), parameters: warmUp)])
        printError("timing \(setting.name) on a batch of \(count) slices")
        let start = ContinuousClock.now
        _ = try engine.run([RestorationJob(images: sliceTensor(all[0 ..< count * area], count: count, size: Preprocessing.sliceSize),
                                           parameters: setting.parameters)])
        return (ContinuousClock.now - start).inSeconds
    }

    /// The evaluated slice with the most lesion, restored with the setting as in the evaluation.
    func restoreWorstSlice(of volume: LabelledVolume, _ setting: EvalSetting) throws -> (slice: Int, result: RestorationResult) {
        let slice = (0..<volume.sliceCount).max { lesionPixels(volume, $0) < lesionPixels(volume, $1) } ?? 0
        var parameters = setting.parameters
        parameters.seed = parameters.seed &+ UInt64(volume.sliceIndices[slice])
        let result = try engine.run([RestorationJob(images: tensor(of: volume, slices: slice ..< slice + 1), parameters: parameters)])
        return (slice, result[0])
    }

    private func lesionPixels(_ volume: LabelledVolume, _ slice: Int) -> Int {
        volume.lesion[slice * area ..< (slice + 1) * area].lazy.filter { $0 }.count
    }

    private func tensor(of volume: LabelledVolume, slices: Range<Int>) -> Tensor {
        sliceTensor(volume.slices[slices.lowerBound * area ..< slices.upperBound * area], count: slices.count, size: Preprocessing.sliceSize)
    }

    // MARK: Cache: one .npy per volume and setting

    private func cached(_ folder: URL, _ volume: LabelledVolume) throws -> [Float]? {
        guard let data = FileManager.default.contents(atPath: folder.appendingPathComponent("\(volume.id).npy").path) else { return nil }
        let array = try NPY.decode([UInt8](data))
        return array.shape.first == volume.sliceCount ? array.values : nil
    }

    private func store(_ values: [Float], shape: [Int], _ folder: URL, _ volume: LabelledVolume) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data(NPY.encode(shape: shape, float32: values)).write(to: folder.appendingPathComponent("\(volume.id).npy"), options: .atomic)
    }
}
