import Detection
import Evaluation
import Foundation
import Imaging
import Models

/// What the service answers for one whole volume (`max_score`, `mean_score` of POST /detect), and how
/// each of its slices' restorations ran. Cached per volume: a full volume is a minute of engine time.
struct VolumeDetection: Codable {
    let maximumScore: Float
    let meanScore: Float
    let sliceStepsRun: [Int]
    /// Tokens scoring above the method's threshold (those the first pass resamples), of `tokensPerSlice`.
    let sliceFlaggedTokens: [Int]
    let tokensPerSlice: Int
    let sliceBrainPixels: [Int]
    /// `DetectionResult.brainMapHistogram(bins: histogramBins)`: the volume scores below, and any other
    /// percentile or share, without running the volume again.
    let brainMapHistogram: [Int]
    /// `DetectionResult.brainShare(above:)` at the model's calibrated map threshold; nil without one.
    let brainShareAboveMapThreshold: Float?

    static let histogramBins = 1000

    /// The `q`-quantile (0...1) of the brain's map values, to the histogram's resolution (the upper edge of
    /// the bin that holds it); 0 without brain.
    func brainMapPercentile(_ q: Double) -> Float {
        let total = brainMapHistogram.reduce(0, +)
        guard total > 0 else { return 0 }
        var cumulative = 0
        for (bin, count) in brainMapHistogram.enumerated() {
            cumulative += count
            if Double(cumulative) >= q * Double(total) { return Float(bin + 1) / Float(brainMapHistogram.count) }
        }
        return 1
    }
}

/// One volume of the triage, with lesion (its lesion kind, or "all" without kinds) or healthy.
struct TriageVolume {
    let id: String
    /// nil for a healthy volume.
    let group: String?
    let detection: VolumeDetection
    /// The intensity baseline's volume score (`intensityTriageScore`).
    let intensityScore: Float
}

/// Per-volume AUROC, healthy volumes against volumes with lesion, of one volume score.
struct TriageRow {
    let name: String
    let all: Double
    /// Healthy volumes against each kind's (VolumeGroup order after "all").
    let perKind: [Double]
}

/// How early exit behaves on slices: the share of tokens the first pass flags and the passes run.
struct SliceActivity {
    let slices: Int
    let flaggedFraction: Double
    let meanStepsRun: Double
}

/// Triage as a PACS worklist needs it: every volume run whole through the service's path (Detect.run,
/// DetectionResult) with the evaluated parameters, its `max_score` and `mean_score` ranked against the
/// healthy volumes', beside the intensity baseline's volume score.
struct Triage {
    let setting: EvalSetting
    let volumes: [TriageVolume]
    let rows: [TriageRow]
    /// On the healthy volumes: every slice the service runs, and the slices with enough brain to evaluate.
    let healthyAllSlices: SliceActivity
    let healthyBrainSlices: SliceActivity

    static let intensityScoreName = "intensity: 99.9th percentile / median of the brain's voxel values"

    /// `lesion`: the evaluated volumes' files with their group; `healthy`: healthy volumes' files.
    init(engine: Engine, setting: EvalSetting, batch: Int, cache: URL, lesion: [(id: String, path: String, group: String)],
         healthy: [String], groups: [VolumeGroup]) throws {
        let started = ContinuousClock.now
        let all = lesion.map { ($0.id, $0.path, Optional($0.group)) } + healthy.map { (LabelledVolume.idOf(t2: $0), $0, nil as String?) }
        let volumes = try all.enumerated().map { number, volume in
            defer { progress("triage: whole volumes", number + 1, of: all.count, started: started) }
            let folder = cache.appendingPathComponent(setting.key).appendingPathComponent(volume.2 == nil ? "healthy" : "lesion")
            return TriageVolume(id: volume.0, group: volume.2,
                                detection: try Self.detection(of: volume.1, id: volume.0, engine: engine, setting: setting, batch: batch, folder: folder),
                                intensityScore: try Self.intensityTriageScore(of: volume.1))
        }
        (self.setting, self.volumes) = (setting, volumes)
        var scores: [(String, (TriageVolume) -> Float)] = [
            ("\(setting.name): max_score", { $0.detection.maximumScore }),
            ("\(setting.name): mean_score", { $0.detection.meanScore }),
            ("99th percentile of the brain's map", { $0.detection.brainMapPercentile(0.99) }),
            ("99.9th percentile of the brain's map", { $0.detection.brainMapPercentile(0.999) }),
        ]
        if let threshold = engine.manifest.mapThreshold {
            scores.append(("share of the brain above the map threshold (\(format(threshold)))", { $0.detection.brainShareAboveMapThreshold ?? 0 }))
        }
        scores.append((Self.intensityScoreName, { $0.intensityScore }))
        let negatives = volumes.filter { $0.group == nil }
        rows = try scores.map { name, score in
            func auroc(_ positives: [TriageVolume]) throws -> Double {
                let curve = PrecisionRecallCurve(scores: (positives + negatives).map(score),
                                                 labels: positives.map { _ in true } + negatives.map { _ in false })
                guard let auroc = curve.auroc else { throw CLIError("the triage needs volumes with lesion and healthy volumes") }
                return auroc
            }
            let lesion = volumes.filter { $0.group != nil }
            return TriageRow(name: name, all: try auroc(lesion),
                             perKind: try groups.dropFirst().map { group in try auroc(lesion.filter { $0.group == group.name }) })
        }
        let detections = negatives.map(\.detection)
        healthyAllSlices = Self.activity(detections) { _ in true }
        healthyBrainSlices = Self.activity(detections) { $0 >= DetectionResult.minimumBrainPixelsToShow }
    }

    private static func detection(of path: String, id: String, engine: Engine, setting: EvalSetting, batch: Int,
                                  folder: URL) throws -> VolumeDetection {
        let file = folder.appendingPathComponent("\(id).json")
        // A file of an earlier version of this record (without the histogram) is run again.
        if let cached = FileManager.default.contents(atPath: file.path),
           let detection = try? JSONDecoder().decode(VolumeDetection.self, from: cached) {
            return detection
        }
        let input = try DetectionInput(bytes: fileContents(path), preprocessed: false)
        let result = try Detect.run(input, engine: engine, parameters: setting.parameters, batch: batch, name: id)
        let area = Preprocessing.sliceSize * Preprocessing.sliceSize
        let detection = VolumeDetection(
            maximumScore: result.maximumScore, meanScore: result.meanScore, sliceStepsRun: result.sliceStepsRun,
            sliceFlaggedTokens: result.sliceAnomalousTokenCounts, tokensPerSlice: result.grid * result.grid,
            sliceBrainPixels: (0..<input.sliceCount).map { z in input.brain[z * area ..< (z + 1) * area].lazy.filter { $0 }.count },
            brainMapHistogram: result.brainMapHistogram(bins: VolumeDetection.histogramBins),
            brainShareAboveMapThreshold: engine.manifest.mapThreshold.map(result.brainShare(above:)))
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try JSONEncoder().encode(detection).write(to: file, options: .atomic)
        return detection
    }

    /// The 99.9th percentile of the volume's brain voxel values over their median, brain = voxels > 0 as the
    /// service takes it (docs/preprocessing.md §4). Not on the preprocessed slices: their 98th-percentile
    /// clip sets the top 2 % of every volume's brain to exactly 1, so any upper percentile there is 1.
    static func intensityTriageScore(of path: String) throws -> Float {
        let values = try NIfTI.decode(fileContents(path)).volume.voxels.filter { $0 > 0 }.sorted()
        guard !values.isEmpty else { throw CLIError("\(path): no voxel above 0, no brain") }
        return percentile(values, 0.999) / max(percentile(values, 0.5), .leastNormalMagnitude)
    }

    /// numpy's default (linear) percentile of sorted values, q in [0, 1].
    static func percentile(_ sorted: [Float], _ q: Double) -> Float {
        let position = q * Double(sorted.count - 1)
        let low = Int(position.rounded(.down))
        let high = min(low + 1, sorted.count - 1)
        return sorted[low] + Float(position - Double(low)) * (sorted[high] - sorted[low])
    }

    private static func activity(_ detections: [VolumeDetection], where keep: (Int) -> Bool) -> SliceActivity {
        var (slices, flagged, tokens, steps) = (0, 0, 0, 0)
        for detection in detections {
            for slice in detection.sliceBrainPixels.indices where keep(detection.sliceBrainPixels[slice]) {
                slices += 1
                flagged += detection.sliceFlaggedTokens[slice]
                tokens += detection.tokensPerSlice
                steps += detection.sliceStepsRun[slice]
            }
        }
        return SliceActivity(slices: slices, flaggedFraction: Double(flagged) / Double(max(tokens, 1)),
                             meanStepsRun: Double(steps) / Double(max(slices, 1)))
    }
}
