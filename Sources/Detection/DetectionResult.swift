import Imaging
import Models

/// An array of float32 values in C order with its shape: what `np.frombuffer(...).reshape(shape)` rebuilds.
public struct FloatArray: Sendable, Equatable {
    public let shape: [Int]
    public let values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "the shape must hold every value")
        (self.shape, self.values) = (shape, values)
    }

    public var npy: [UInt8] { NPY.encode(shape: shape, float32: values) }

    /// The values as little-endian float32 bytes.
    public var littleEndianBytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 4)
        for value in values {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }
}

/// What detection found in one input, on the input's own grid, from the engine's per-slice results.
public struct DetectionResult: Sendable {
    public let input: DetectionInput
    public let parameters: InferenceParameters
    /// [sliceCount, 160, 160] anomaly maps in the model's frame.
    public let sliceMaps: [Float]
    /// [sliceCount, h, w] token scores.
    public let sliceTokenScores: [Float]
    public let grid: Int
    /// The passes each slice's restoration ran (early exit: fewer than T when nothing is left to resample).
    public let sliceStepsRun: [Int]
    /// The slices the triage scores and the overlay read: those with at least `minimumBrainPixelsToShow`
    /// brain pixels, or every slice when none has.
    private let scoredSlices: [Int]
    /// The most passes any slice's restoration ran.
    public var stepsRun: Int { sliceStepsRun.max() ?? 0 }

    /// The training caches' rule for a slice worth learning from (Training/mimood_train/data.py): the
    /// overlay shows only slices with at least this much brain.
    public static let minimumBrainPixelsToShow = 1500

    /// The results of `input.jobs(parameters, slices: 0..<sliceCount)`, in slice order.
    public init(input: DetectionInput, parameters: InferenceParameters, results: [RestorationResult], grid: Int) {
        precondition(results.count == input.sliceCount, "one result per slice")
        self.input = input
        self.parameters = parameters
        self.grid = grid
        sliceMaps = results.flatMap(\.anomalyMap.scalars)
        sliceTokenScores = results.flatMap(\.tokenScores.scalars)
        sliceStepsRun = results.map(\.stepsRun)
        let brainy = (0..<input.sliceCount).filter { z in
            input.brain[z * Self.area ..< (z + 1) * Self.area].lazy.filter { $0 }.count >= Self.minimumBrainPixelsToShow
        }
        scoredSlices = brainy.isEmpty ? Array(0..<input.sliceCount) : brainy
    }

    /// The anomaly map on the input's grid: the image's pixels, the volume's voxels, or the slices' shape.
    public var anomalyMap: FloatArray {
        switch input.kind {
        case .image(let geometry):
            let map = Preprocessing.sliceToImage(sliceMaps, geometry: geometry)
            return FloatArray(shape: [map.height, map.width], values: map.pixels)
        case .volume(let geometry, _):
            // The volume's voxels run i fastest (NIfTI's order); the array's run k fastest.
            let map = Preprocessing.slicesToVolume(sliceMaps, geometry: geometry)
            let (nx, ny, nz) = (map.shape[0], map.shape[1], map.shape[2])
            var values = [Float](repeating: 0, count: map.voxels.count)
            for k in 0..<nz {
                for j in 0..<ny {
                    for i in 0..<nx { values[(i * ny + j) * nz + k] = map.voxels[i + nx * (j + ny * k)] }
                }
            }
            return FloatArray(shape: map.shape, values: values)
        case .slices(let shape):
            return FloatArray(shape: shape, values: sliceMaps)
        }
    }

    /// Token scores, [h, w] for a 2-D input and [slices, h, w] otherwise, in the model's slice frame.
    public var tokenHeatmap: FloatArray {
        FloatArray(shape: input.isTwoDimensional ? [grid, grid] : [input.sliceCount, grid, grid], values: sliceTokenScores)
    }

    /// Tokens scoring above the method's threshold: the ones the first pass resampled.
    public var anomalousTokenCount: Int { sliceAnomalousTokenCounts.reduce(0, +) }

    /// `anomalousTokenCount` of each slice.
    public var sliceAnomalousTokenCounts: [Int] {
        let (threshold, tokens) = (parameters.methodThreshold, grid * grid)
        return (0..<input.sliceCount).map { slice in
            sliceTokenScores[slice * tokens ..< (slice + 1) * tokens].lazy.filter { $0 > threshold }.count
        }
    }

    /// The triage score (`max_score`): the highest map value inside the brain, over the slices with as much
    /// brain as the training slices had (all slices when none has). Background and edge slivers, which no
    /// training slice showed, would otherwise rank every volume alike.
    public var maximumScore: Float { scoredSlices.map(brainMaximum).max() ?? 0 }

    /// Mean of the map inside the brain of the same slices as `maximumScore` (`mean_score`).
    public var meanScore: Float {
        var (sum, count) = (Float(0), 0)
        forEachScoredBrainValue { sum += $0; count += 1 }
        return count == 0 ? 0 : sum / Float(count)
    }

    /// The share of the brain of the same slices as `maximumScore` whose map value exceeds `threshold`: with
    /// the model's calibrated map threshold, the share its Segmentation marks.
    public func brainShare(above threshold: Float) -> Float {
        var (above, count) = (0, 0)
        forEachScoredBrainValue { above += $0 > threshold ? 1 : 0; count += 1 }
        return count == 0 ? 0 : Float(above) / Float(count)
    }

    /// Counts of the same values in `bins` equal bins over [0, 1] (the map is clamped to it): every
    /// percentile and every share above a threshold, to choose a triage score from.
    public func brainMapHistogram(bins: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: bins)
        forEachScoredBrainValue { counts[$0 >= 1 ? bins - 1 : $0 > 0 ? Int($0 * Float(bins)) : 0] += 1 }
        return counts
    }

    private func forEachScoredBrainValue(_ body: (Float) -> Void) {
        for z in scoredSlices {
            for index in z * Self.area ..< (z + 1) * Self.area where input.brain[index] { body(sliceMaps[index]) }
        }
    }

    private static let area = Preprocessing.sliceSize * Preprocessing.sliceSize

    /// The highest map value inside the brain of slice `z` (0 without brain).
    private func brainMaximum(_ z: Int) -> Float {
        (z * Self.area ..< (z + 1) * Self.area).reduce(Float(0)) { input.brain[$1] ? max($0, sliceMaps[$1]) : $0 }
    }


    /// A `.nii.gz` of the anomaly map with the input's header geometry; nil unless the input was a volume.
    public func niftiAnomalyMap() throws -> [UInt8]? {
        guard case .volume(let geometry, let header) = input.kind else { return nil }
        return try NIfTI.encode(Preprocessing.slicesToVolume(sliceMaps, geometry: geometry), geometry: header,
                                description: "mimood anomaly map")
    }

    /// How the DICOM answer's objects are sent.
    public enum DICOMPackaging: Sendable {
        /// `multipart/related; type="application/dicom"`, as STOW-RS takes them.
        case multipart
        /// A ZIP archive of `parametric-map.dcm` and `segmentation.dcm`.
        case zip
    }

    /// The DICOM answer to a DICOM series, as a Content-Type and its body: a Parametric Map of the anomaly
    /// map (the NIfTI answer's values, on the series' frames) and, with the model's calibrated
    /// `mapThreshold`, a Segmentation of the voxels above it; nil unless the input was a DICOM series.
    public func dicomAnswer(_ packaging: DICOMPackaging, mapThreshold: Float?, softwareVersion: String) throws
        -> (contentType: String, body: [UInt8])? {
        guard let source = input.dicomSource, case .volume(let geometry, _) = input.kind else { return nil }
        let map = Preprocessing.slicesToVolume(sliceMaps, geometry: geometry).voxels
        var objects: [(name: String, bytes: [UInt8])] = []
        do {
            objects.append(("parametric-map.dcm", try source.parametricMap(map, softwareVersion: softwareVersion)))
            if let mapThreshold {
                objects.append(("segmentation.dcm", try source.segmentation(map.map { $0 > mapThreshold }, softwareVersion: softwareVersion)))
            }
        } catch {
            throw InputError(.unprocessable, "\(error)")
        }
        switch packaging {
        case .multipart: return MultipartRelated.encode(objects.map(\.bytes), partType: "application/dicom")
        case .zip: return ("application/zip", try ZIPArchive.encode(objects, compression: .deflated))
        }
    }

    /// An `.npz` with `anomaly_map` and `token_heatmap`.
    public func npz() throws -> [UInt8] {
        try NPZ.encode([("anomaly_map", anomalyMap.npy), ("token_heatmap", tokenHeatmap.npy)])
    }

    /// The anomaly map over the slice with the highest in-brain score, in the model's 160×160 frame, as a
    /// PNG for a person. Edge slices with a sliver of brain are out of distribution and light up whole,
    /// so slices with less brain than the training slices had are passed over when others exist.
    public func overlayPNG() throws -> [UInt8] {
        let size = Preprocessing.sliceSize, area = Self.area
        let shown = scoredSlices.map { ($0, brainMaximum($0)) }.max { $0.1 < $1.1 }?.0 ?? 0
        let window = shown * area ..< (shown + 1) * area
        let image = GrayImage(width: size, height: size, pixels: Array(input.slices[window]))
        let scores = GrayImage(width: size, height: size, pixels: Array(sliceMaps[window]))
        return try PNG.encode(AnomalyOverlay.render(image: image, scores: scores))
    }
}
