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

/// Pixel-level measures of one anomaly map over the brain pixels of a group's evaluated slices (Table 2).
struct PixelMeasures {
    /// Best achievable DICE: one threshold for the whole group, the maximum F1 over the PR curve.
    let dice: Double
    let threshold: Float
    let averagePrecision: Double
    let auroc: Double
    /// DICE of each volume of the group at `threshold`; nil for a volume without lesion in its evaluated slices.
    let volumeDice: [Double?]
    /// Lesion pixels / brain pixels: marking every brain pixel scores DICE 2p / (1 + p), the floor to beat.
    let prevalence: Double

    var meanVolumeDice: Double {
        let values = volumeDice.compactMap { $0 }
        return values.reduce(0, +) / Double(values.count)
    }
}

/// A row of Table 2: an engine setting, or a baseline map; its measures on all volumes and on each kind's.
struct PixelRow {
    let key: String
    let title: String
    /// nil for a baseline, which runs no restoration.
    let setting: EvalSetting?
    let all: PixelMeasures
    /// Per lesion kind (VolumeGroup order after "all"); nil where the kind's evaluated pixels hold no lesion.
    let perKind: [PixelMeasures?]
}

/// The baselines of Table 2 that are not engine settings (the VQ-VAE residual is: TableTwoRow.vqvae).
enum PixelBaseline: String, CaseIterable {
    /// The preprocessed slice itself as the anomaly score.
    case intensity
    /// The code-frequency token score, each pixel its token's (nearest-neighbour upsampling).
    case codeFrequency = "code-frequency"

    var title: String {
        switch self {
        case .intensity: "Intensity (the preprocessed slice)"
        case .codeFrequency: "Code frequency (token score per pixel)"
        }
    }
}

/// A row of Table 1: a token scorer of the checkpoint, or a baseline taken from a pixel map.
enum TableOneRow: Hashable {
    case scorer(TokenScorer)
    /// The preprocessed intensity: each token its patch's brightest brain pixel, as its label is "any
    /// lesion pixel in the patch".
    case intensity
    /// The VQ-VAE reconstruction's anomaly map (Table 2's `vqvae` row): each token the mean over its
    /// patch's brain pixels.
    case vqvaeResidual

    var key: String {
        switch self {
        case .scorer(let scorer): scorer.rawValue
        case .intensity: "intensity"
        case .vqvaeResidual: "vqvae-residual"
        }
    }

    var title: String {
        switch self {
        case .scorer(.atd): "MIM-OOD (ATD)"
        case .scorer(.mvtm): "MVTM (NLL)"
        case .scorer(.ar): "AR (NLL)"
        case .scorer(.critic): "MVTM + Token-Critic"
        case .scorer(.codeFrequency): "Code frequency (−log p of the code at its position)"
        case .intensity: "Intensity (patch maximum)"
        case .vqvaeResidual: "VQ-VAE residual (patch mean)"
        }
    }
}

/// Token-level measures of one row over a group's brain tokens (Table 1).
struct TokenMeasures {
    let averagePrecision: Double
    let auroc: Double
    let tokens: Int
    let anomalous: Int
}

/// A row of Table 1 with its measures on all volumes and on each kind's.
struct TokenRow {
    let row: TableOneRow
    let all: TokenMeasures
    let perKind: [TokenMeasures?]
}

/// The engine over the evaluated volumes, each volume's results cached on disk as it finishes.
struct EvalRun {
    let engine: Engine
    let volumes: [LabelledVolume]
    let groups: [VolumeGroup]
    let batch: Int
    let cache: URL
    private let area = Preprocessing.sliceSize * Preprocessing.sliceSize
    private let factor: Int
    /// Per volume, the tokens whose patch touches the brain (those scored) and those whose patch holds lesion.
    private let tokenMasks: [(scored: [Bool], lesion: [Bool])]

    init(engine: Engine, volumes: [LabelledVolume], groups: [VolumeGroup], batch: Int, cache: URL) {
        (self.engine, self.volumes, self.groups, self.batch, self.cache) = (engine, volumes, groups, batch, cache)
        let factor = Preprocessing.sliceSize / engine.vqvae.config.grid
        self.factor = factor
        tokenMasks = volumes.map { volume in
            (TokenGrid.anyInPatch(volume.brain, size: Preprocessing.sliceSize, factor: factor),
             TokenGrid.anyInPatch(volume.lesion, size: Preprocessing.sliceSize, factor: factor))
        }
    }

    // MARK: Table 2

    /// Measures of one setting's maps on every volume (a sweep point).
    func pixelMeasures(_ setting: EvalSetting) throws -> PixelMeasures {
        try measuresOfAll(pixelMeasures(anomalyMaps(setting), members: Array(volumes.indices)))
    }

    /// A Table 2 row from per-volume [slices, 160, 160] maps.
    func pixelRow(key: String, title: String, setting: EvalSetting?, maps: [[Float]]) throws -> PixelRow {
        PixelRow(key: key, title: title, setting: setting, all: try measuresOfAll(pixelMeasures(maps, members: groups[0].members)),
                 perKind: groups.dropFirst().map { pixelMeasures(maps, members: $0.members) })
    }

    /// The baseline's per-volume maps: the slices themselves, or the code-frequency token scores upsampled.
    func baselineMaps(_ baseline: PixelBaseline, tokenScores: [TableOneRow: [[Float]]]) -> [[Float]]? {
        switch baseline {
        case .intensity: volumes.map(\.slices)
        case .codeFrequency: tokenScores[.scorer(.codeFrequency)]?.map { TokenGrid.upsample($0, size: Preprocessing.sliceSize, factor: factor) }
        }
    }

    /// nil when the members' brain pixels lack lesion or healthy pixels.
    private func pixelMeasures(_ maps: [[Float]], members: [Int]) -> PixelMeasures? {
        var scores: [Float] = [], labels: [Bool] = []
        for volume in members {
            for pixel in maps[volume].indices where volumes[volume].brain[pixel] {
                scores.append(maps[volume][pixel])
                labels.append(volumes[volume].lesion[pixel])
            }
        }
        let curve = PrecisionRecallCurve(scores: scores, labels: labels)
        guard let best = curve.bestDice, let averagePrecision = curve.averagePrecision, let auroc = curve.auroc else { return nil }
        let volumeDice = members.map { index in
            let (map, volume) = (maps[index], volumes[index])
            let inside = map.indices.filter { volume.brain[$0] }
            return dice(scores: inside.map { map[$0] }, labels: inside.map { volume.lesion[$0] }, threshold: best.threshold)
        }
        return PixelMeasures(dice: best.dice, threshold: best.threshold, averagePrecision: averagePrecision, auroc: auroc,
                             volumeDice: volumeDice, prevalence: Double(curve.positives) / Double(scores.count))
    }

    private func measuresOfAll<Measures>(_ measures: Measures?) throws -> Measures {
        guard let measures else { throw CLIError("the evaluated brain pixels or tokens hold no lesion, or nothing but lesion; the measures need both") }
        return measures
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

    /// Every token's score [slices, h, w] per volume, for every scorer the checkpoint has and the
    /// intensity baseline; the VQ-VAE residual's when `vqvaeMaps` (Table 2's `vqvae` maps) are given.
    func tokenScores(vqvaeMaps: [[Float]]?) throws -> [TableOneRow: [[Float]]] {
        let grid = engine.vqvae.config.grid
        let scorers = TokenScorer.allCases.filter { engine.has($0.component) }
        var scores = [[[Float]]](repeating: [], count: scorers.count)
        let started = ContinuousClock.now
        for (number, volume) in volumes.enumerated() {
            var grids: [[Int]]?   // tokenised once, only when some scorer is not cached
            for (index, scorer) in scorers.enumerated() {
                let folder = cache.appendingPathComponent("tokens-\(scorer.rawValue)")
                if let cached = try cached(folder, volume) {
                    scores[index].append(cached)
                } else {
                    let tokens = try grids ?? engine.tokens(of: tensor(of: volume, slices: 0 ..< volume.sliceCount))
                    grids = tokens
                    let values = try engine.tokenScores(scorer, grids: tokens).flatMap { $0 }
                    try store(values, shape: [volume.sliceCount, grid, grid], folder, volume)
                    scores[index].append(values)
                }
            }
            progress("token scores", number + 1, of: volumes.count, started: started)
        }
        var rows = Dictionary(uniqueKeysWithValues: zip(scorers.map(TableOneRow.scorer), scores))
        let size = Preprocessing.sliceSize
        rows[.intensity] = volumes.map { TokenGrid.reduce($0.slices, inside: $0.brain, size: size, factor: factor, .maximum) }
        rows[.vqvaeResidual] = vqvaeMaps.map { maps in
            zip(maps, volumes).map { TokenGrid.reduce($0, inside: $1.brain, size: size, factor: factor, .mean) }
        }
        return rows
    }

    /// Table 1's measures of one row over the tokens whose 8×8 patch touches the brain; a token is
    /// anomalous when its patch holds lesion.
    func tokenRow(_ row: TableOneRow, scores: [[Float]]) throws -> TokenRow {
        TokenRow(row: row, all: try measuresOfAll(tokenMeasures(scores, members: groups[0].members)),
                 perKind: groups.dropFirst().map { tokenMeasures(scores, members: $0.members) })
    }

    private func tokenMeasures(_ scores: [[Float]], members: [Int]) -> TokenMeasures? {
        var pooled: [Float] = [], labels: [Bool] = []
        for index in members {
            let (scored, lesion) = tokenMasks[index]
            for token in scored.indices where scored[token] {
                pooled.append(scores[index][token])
                labels.append(lesion[token])
            }
        }
        let curve = PrecisionRecallCurve(scores: pooled, labels: labels)
        guard let averagePrecision = curve.averagePrecision, let auroc = curve.auroc else { return nil }
        return TokenMeasures(averagePrecision: averagePrecision, auroc: auroc, tokens: labels.count, anomalous: curve.positives)
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
