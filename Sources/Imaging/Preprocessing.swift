/// Why an input cannot be preprocessed.
public enum PreprocessingError: Error, Equatable, CustomStringConvertible {
    case maskShapeMismatch(mask: String, maskShape: [Int], imageShape: [Int])
    case degenerateAffine(String)
    case noBrain
    case nonPositiveClipValue(Float)
    case tooLarge(String)
    /// A 160×160 image must already be preprocessed: finite values in [0, 1].
    case notPreprocessed(minimum: Float, maximum: Float)

    public var description: String {
        switch self {
        case .maskShapeMismatch(let mask, let maskShape, let imageShape):
            "the \(mask) has shape \(maskShape), the image \(imageShape): they must be on the same voxel grid"
        case .degenerateAffine(let reason): "the voxel-to-world affine is unusable: \(reason)"
        case .noBrain: "the image has no brain voxel (the brain mask is empty, or no intensity is above 0)"
        case .nonPositiveClipValue(let value): "the 98th percentile of brain intensities is \(value), not positive"
        case .tooLarge(let reason): "resampling to 1 mm would be too large: \(reason)"
        case .notPreprocessed(let minimum, let maximum):
            "a 160×160 image is taken as already preprocessed and must hold finite values in [0, 1]; it has \(minimum) … \(maximum) (send other sizes, or a volume, to have it preprocessed)"
        }
    }
}

/// How the input's voxel axes map onto RAS: RAS axis `w` is input axis `axes[w]`, reversed when `flips[w]`.
public struct Orientation: Sendable, Equatable {
    public let axes: [Int]
    public let flips: [Bool]

    public init(axes: [Int], flips: [Bool]) {
        precondition(axes.sorted() == [0, 1, 2] && flips.count == 3, "an orientation permutes three axes")
        (self.axes, self.flips) = (axes, flips)
    }
}

/// What maps the 160×160 slices back onto the input voxel grid.
public struct SliceGeometry: Sendable, Equatable {
    public let inputShape: [Int]
    public let orientation: Orientation
    /// Input voxel spacing in mm, in RAS axis order.
    public let spacing: [Double]
    /// The RAS grid at 1 mm; its third size is the number of slices.
    public let resampledShape: [Int]
    /// `[x, y]` of the window's first voxel in the resampled grid (negative: the window starts outside).
    public let cropStart: [Int]

    public init(inputShape: [Int], orientation: Orientation, spacing: [Double], resampledShape: [Int], cropStart: [Int]) {
        precondition(inputShape.count == 3 && spacing.count == 3 && resampledShape.count == 3 && cropStart.count == 2,
                     "three sizes and spacings, two window coordinates")
        (self.inputShape, self.orientation, self.spacing) = (inputShape, orientation, spacing)
        (self.resampledShape, self.cropStart) = (resampledShape, cropStart)
    }
}

/// Slices ready for the model, with what is needed to put results back.
public struct PreprocessedVolume: Sendable, Equatable {
    public let sliceCount: Int
    /// `[sliceCount, 160, 160]` in [0, 1], slice-major then row-major; slice 0 is the most inferior,
    /// row 0 anterior, column 0 the patient's right.
    public let slices: [Float]
    /// Brain mask, same layout.
    public let brain: [Bool]
    /// Lesion mask, same layout, when one was given.
    public let lesion: [Bool]?
    public let geometry: SliceGeometry
    /// The 98th percentile that became 1.0 (1 for an already preprocessed image).
    public let clipValue: Float
}

/// What the preprocessing of a volume will build, known before it runs (`Preprocessing.resampledGrid`).
public struct ResampledGrid: Sendable, Equatable {
    public let orientation: Orientation
    /// Voxel spacing in mm, in RAS axis order.
    public let spacing: [Double]
    /// Axial slices after resampling to 1 mm: the 160×160 slices the model sees.
    public let sliceCount: Int
    /// Voxels of the largest grid held: the RAS copy, or a pass of the resampling.
    public let largestVoxelCount: Int
}

/// The paper's preprocessing, a faithful port of `Training/mimood_train/preprocessing.py` as specified in
/// `docs/preprocessing.md`: reorient to RAS → resample to 1 mm → brain mask → clip at the 98th percentile
/// and scale to [0, 1] → 160×160 window on the brain → axial slices in radiological display order. Voxel
/// arithmetic is float32 in the documented order (no fused multiply-add), so the slices equal the
/// reference's bit for bit.
public enum Preprocessing {
    public static let sliceSize = 160
    /// Resampled volumes larger than this are refused (2^26 voxels, 256 MiB as Float32).
    public static let defaultMaximumResampledVoxels = 1 << 26
    static let clipPercentile = 0.98
    static let maskThreshold: Float = 0.5

    /// Slices of `volume`, placed in the world by `affine`; masks (values > 0 are inside) on the same grid.
    public static func preprocess(_ volume: Volume, affine: Affine, brainMask: Volume? = nil, lesionMask: Volume? = nil,
                                  maximumResampledVoxels: Int = defaultMaximumResampledVoxels) throws(PreprocessingError) -> PreprocessedVolume {
        for (name, mask) in [("brain mask", brainMask), ("lesion mask", lesionMask)] {
            if let mask, mask.shape != volume.shape {
                throw .maskShapeMismatch(mask: name, maskShape: mask.shape, imageShape: volume.shape)
            }
        }
        let grid = try resampledGrid(shape: volume.shape, affine: affine)
        let (orientation, spacing) = (grid.orientation, grid.spacing)
        guard grid.largestVoxelCount <= maximumResampledVoxels else {
            throw .tooLarge("\(volume.shape) voxels of \(grid.spacing) mm would make a grid of \(grid.largestVoxelCount) voxels, "
                            + "more than \(maximumResampledVoxels)")
        }

        func resampled(_ input: Volume) -> Volume {
            resampledTo1mm(toRAS(input, orientation), spacing: spacing)
        }
        var finite = volume
        for index in finite.voxels.indices where !finite.voxels[index].isFinite { finite.voxels[index] = 0 }
        let ras = resampled(finite)
        let brain = brainMask.map { resampled(binary($0)).voxels.map { $0 >= maskThreshold } } ?? ras.voxels.map { $0 > 0 }
        guard brain.contains(true) else { throw .noBrain }

        let clipValue = percentile98(zip(ras.voxels, brain).compactMap { $1 ? $0 : nil })
        guard clipValue > 0 else { throw .nonPositiveClipValue(clipValue) }
        let scaled = zip(ras.voxels, brain).map { value, inside in inside ? min(max(value, 0), clipValue) / clipValue : 0 }

        let start = windowStart(brain: brain, shape: ras.shape)
        let lesion = lesionMask.map {
            displaySlices(resampled(binary($0)).voxels.map { $0 >= maskThreshold }, shape: ras.shape, start: start, zero: false)
        }
        let geometry = SliceGeometry(inputShape: volume.shape, orientation: orientation, spacing: spacing,
                                     resampledShape: ras.shape, cropStart: start)
        return PreprocessedVolume(sliceCount: ras.shape[2], slices: displaySlices(scaled, shape: ras.shape, start: start, zero: 0),
                                  brain: displaySlices(brain, shape: ras.shape, start: start, zero: false), lesion: lesion,
                                  geometry: geometry, clipValue: clipValue)
    }

    /// Slice results `[sliceCount, 160, 160]` back onto the input voxel grid: display order and window
    /// undone (zero outside the window), linear resampling from 1 mm to the input spacing, reorientation
    /// undone.
    public static func slicesToVolume(_ slices: [Float], geometry: SliceGeometry) -> Volume {
        let size = sliceSize
        let shape = geometry.resampledShape
        precondition(slices.count == shape[2] * size * size, "\(slices.count) values are not \(shape[2]) slices of \(size)×\(size)")
        var ras = Volume(zeros: shape)
        let (x0, y0) = (geometry.cropStart[0], geometry.cropStart[1])
        for z in 0..<shape[2] {
            for y in max(y0, 0)..<max(max(y0, 0), min(y0 + size, shape[1])) {
                for x in max(x0, 0)..<max(max(x0, 0), min(x0 + size, shape[0])) {
                    // Display order: row = 159 − (y − y0), column = 159 − (x − x0).
                    ras[x, y, z] = slices[(z * size + size - 1 - (y - y0)) * size + size - 1 - (x - x0)]
                }
            }
        }
        let rasInputShape = geometry.orientation.axes.map { geometry.inputShape[$0] }
        for axis in 0..<3 where abs(geometry.spacing[axis] - 1) >= 1e-6 {
            let positions = (0..<rasInputShape[axis]).map { Double($0) * geometry.spacing[axis] }
            ras = resampledAxis(ras, axis: axis, positions: positions)
        }
        return fromRAS(ras, geometry.orientation, inputShape: geometry.inputShape)
    }

    // MARK: 2-D inputs

    /// A 2-D image ready for the model, by the rule for 2-D inputs:
    /// * 160×160: already preprocessed — finite values in [0, 1] required, passed through unchanged
    ///   (brain = pixels > 0);
    /// * any other size: one axial slice at 1 mm in display orientation (row 0 anterior, column 0 the
    ///   patient's right), preprocessed like a one-slice volume: brain = pixels > 0, clip at the 98th
    ///   percentile of the slice, scale, and the 160×160 window centred on the brain (zero-padded or
    ///   cropped).
    /// Either way `sliceToImage` puts the slice's result back onto the input's pixel grid.
    public static func prepareImage(_ image: GrayImage) throws(PreprocessingError) -> PreprocessedVolume {
        let displayAffine = Affine.diagonal(-1, -1, 1)     // column → −x (right), row → −y (anterior)
        let volume = Volume(shape: [image.width, image.height, 1], voxels: image.pixels)
        guard image.width == sliceSize && image.height == sliceSize else {
            return try preprocess(volume, affine: displayAffine)
        }
        let low = image.pixels.min() ?? 0, high = image.pixels.max() ?? 0
        guard image.pixels.allSatisfy({ $0.isFinite }), low >= 0, high <= 1 else {
            throw .notPreprocessed(minimum: low, maximum: high)
        }
        // The geometry of a 160×160 one-slice volume whose window is the whole image: the identity.
        let geometry = SliceGeometry(inputShape: [sliceSize, sliceSize, 1], orientation: try orientationOf(displayAffine),
                                     spacing: [1, 1, 1], resampledShape: [sliceSize, sliceSize, 1], cropStart: [0, 0])
        return PreprocessedVolume(sliceCount: 1, slices: image.pixels, brain: image.pixels.map { $0 > 0 }, lesion: nil,
                                  geometry: geometry, clipValue: 1)
    }

    /// One slice's result `[160, 160]` on the pixel grid of the image `prepareImage` was given.
    public static func sliceToImage(_ slice: [Float], geometry: SliceGeometry) -> GrayImage {
        precondition(geometry.inputShape[2] == 1 && geometry.resampledShape[2] == 1, "the geometry of a 2-D image")
        let volume = slicesToVolume(slice, geometry: geometry)
        return GrayImage(width: volume.shape[0], height: volume.shape[1], pixels: volume.voxels)
    }

    // MARK: Steps

    /// Closest RAS axis for each voxel axis (docs/preprocessing.md §2): repeatedly take the largest
    /// |direction cosine| left, first in row-major order on ties, and strike its row and column.
    static func orientationOf(_ affine: Affine) throws(PreprocessingError) -> Orientation {
        let norms = (0..<3).map { affine.columnNorm($0) }
        let directions = (0..<3).map { world in (0..<3).map { voxel in affine[world, voxel] / norms[voxel] } }
        guard directions.allSatisfy({ $0.allSatisfy(\.isFinite) }) else {
            throw .degenerateAffine("a voxel axis has zero or non-finite length (column norms \(norms))")
        }
        var remaining = directions.map { $0.map(abs) }
        var axes = [0, 0, 0], flips = [false, false, false]
        for _ in 0..<3 {
            var best = (world: 0, voxel: 0, magnitude: -1.0)
            for world in 0..<3 {
                for voxel in 0..<3 where remaining[world][voxel] > best.magnitude {
                    best = (world, voxel, remaining[world][voxel])
                }
            }
            axes[best.world] = best.voxel
            flips[best.world] = directions[best.world][best.voxel] < 0
            for index in 0..<3 {
                remaining[best.world][index] = -1     // struck
                remaining[index][best.voxel] = -1
            }
        }
        return Orientation(axes: axes, flips: flips)
    }

    /// `floor((n − 1)·s + 1e-6) + 1` samples 1 mm apart from the first voxel centre, in float64: a bogus
    /// spacing makes it far larger than any Int.
    static func resampledLength(_ count: Double, spacing: Double) -> Double {
        ((count - 1) * spacing + 1e-6).rounded(.down) + 1
    }

    /// The grids `preprocess` would build for a volume of `shape` on `affine`, from these two alone (a
    /// header holds both): the slices it makes, and the largest grid it holds, its RAS copy or a pass of
    /// the resampling to 1 mm. Sizes past `Int.max` count as `Int.max`.
    public static func resampledGrid(shape: [Int], affine: Affine) throws(PreprocessingError) -> ResampledGrid {
        precondition(shape.count == 3 && shape.allSatisfy { $0 > 0 }, "a volume has three positive sizes")
        let orientation = try orientationOf(affine)
        let spacing = orientation.axes.map { affine.columnNorm($0) }
        // In float64: a bogus spacing (1e30 mm) gives sizes far past Int's range.
        var sizes = orientation.axes.map { Double(shape[$0]) }
        var largest = sizes.reduce(1, *)
        for axis in 0..<3 where abs(spacing[axis] - 1) >= 1e-6 {
            sizes[axis] = resampledLength(sizes[axis], spacing: spacing[axis])
            largest = max(largest, sizes.reduce(1, *))
        }
        return ResampledGrid(orientation: orientation, spacing: spacing, sliceCount: saturatingInt(sizes[2]), largestVoxelCount: saturatingInt(largest))
    }

    /// `value` (finite, non-negative) as an Int, `Int.max` where it does not fit.
    private static func saturatingInt(_ value: Double) -> Int {
        value < Double(Int.max) ? Int(value) : .max
    }

    private static func binary(_ mask: Volume) -> Volume {
        Volume(shape: mask.shape, voxels: mask.voxels.map { $0 > 0 ? 1 : 0 })
    }

    /// RAS voxel (x, y, z) reads input voxel v with v[axes[w]] = r_w, or n − 1 − r_w where flipped.
    private static func rasIndexing(_ orientation: Orientation, inputShape: [Int]) -> (start: Int, steps: [Int]) {
        let strides = [1, inputShape[0], inputShape[0] * inputShape[1]]
        var start = 0
        var steps = [0, 0, 0]
        for world in 0..<3 {
            let axis = orientation.axes[world]
            if orientation.flips[world] {
                start += (inputShape[axis] - 1) * strides[axis]
                steps[world] = -strides[axis]
            } else {
                steps[world] = strides[axis]
            }
        }
        return (start, steps)
    }

    static func toRAS(_ volume: Volume, _ orientation: Orientation) -> Volume {
        let shape = orientation.axes.map { volume.shape[$0] }
        let (start, steps) = rasIndexing(orientation, inputShape: volume.shape)
        var voxels = [Float](repeating: 0, count: volume.voxels.count)
        var index = 0
        for z in 0..<shape[2] {
            for y in 0..<shape[1] {
                var source = start + y * steps[1] + z * steps[2]
                for _ in 0..<shape[0] {
                    voxels[index] = volume.voxels[source]
                    source += steps[0]
                    index += 1
                }
            }
        }
        return Volume(shape: shape, voxels: voxels)
    }

    static func fromRAS(_ ras: Volume, _ orientation: Orientation, inputShape: [Int]) -> Volume {
        let (start, steps) = rasIndexing(orientation, inputShape: inputShape)
        var voxels = [Float](repeating: 0, count: ras.voxels.count)
        var index = 0
        for z in 0..<ras.shape[2] {
            for y in 0..<ras.shape[1] {
                var target = start + y * steps[1] + z * steps[2]
                for _ in 0..<ras.shape[0] {
                    voxels[target] = ras.voxels[index]
                    target += steps[0]
                    index += 1
                }
            }
        }
        return Volume(shape: inputShape, voxels: voxels)
    }

    /// Separable linear resampling of a RAS volume to 1 mm, axis by axis (x, y, z); sample k of an axis
    /// lies at input position k / s. Axes already at 1 mm (within 1e-6) are left alone.
    static func resampledTo1mm(_ volume: Volume, spacing: [Double]) -> Volume {
        var out = volume
        for axis in 0..<3 where abs(spacing[axis] - 1) >= 1e-6 {
            let count = Int(resampledLength(Double(out.shape[axis]), spacing: spacing[axis]))
            out = resampledAxis(out, axis: axis, positions: (0..<count).map { Double($0) / spacing[axis] })
        }
        return out
    }

    /// Linear interpolation along `axis` at fractional voxel `positions` (clamped to the axis):
    /// `in[⌊p⌋]·(1 − f) + in[min(⌊p⌋ + 1, n − 1)]·f`, f rounded to float32, the rest in float32.
    static func resampledAxis(_ volume: Volume, axis: Int, positions: [Double]) -> Volume {
        let n = volume.shape[axis]
        let lower = positions.map { min(Int(min(max($0, 0), Double(n - 1)).rounded(.down)), n - 1) }
        let upper = lower.map { min($0 + 1, n - 1) }
        let weights = zip(positions, lower).map { Float(min(max($0, 0), Double(n - 1)) - Double($1)) }
        var shape = volume.shape
        shape[axis] = positions.count
        // Voxel order i-fastest: a block of `inner` contiguous voxels per position, `outer` blocks of the axis.
        let inner = volume.shape[..<axis].reduce(1, *)
        let outer = volume.shape[(axis + 1)...].reduce(1, *)
        var voxels = [Float](repeating: 0, count: inner * positions.count * outer)
        volume.voxels.withUnsafeBufferPointer { input in
            voxels.withUnsafeMutableBufferPointer { output in
                for block in 0..<outer {
                    for k in positions.indices {
                        let (w, oneMinusW) = (weights[k], 1 - weights[k])
                        let low = inner * (lower[k] + n * block), high = inner * (upper[k] + n * block)
                        let target = inner * (k + positions.count * block)
                        for r in 0..<inner {
                            output[target + r] = input[low + r] * oneMinusW + input[high + r] * w
                        }
                    }
                }
            }
        }
        return Volume(shape: shape, voxels: voxels)
    }

    /// numpy's default (linear) 98th percentile in float32, as docs/preprocessing.md §5 spells it out.
    static func percentile98(_ values: [Float]) -> Float {
        let sorted = values.sorted()
        let h = clipPercentile * Double(sorted.count - 1)
        let index = Int(h.rounded(.down))
        let t = h - Double(index)
        let a = sorted[index], b = sorted[min(index + 1, sorted.count - 1)]
        let difference = b - a
        return t < 0.5 ? a + difference * Float(t) : b - difference * Float(1 - t)
    }

    /// Start of the 160-voxel window along x and y, centred on the brain's bounding box over all slices:
    /// `lo + floor((hi − lo + 1 − 160) / 2)`.
    static func windowStart(brain: [Bool], shape: [Int]) -> [Int] {
        var low = [Int.max, Int.max], high = [Int.min, Int.min]
        var index = 0
        for _ in 0..<shape[2] {
            for y in 0..<shape[1] {
                for x in 0..<shape[0] {
                    if brain[index] {
                        (low[0], high[0]) = (min(low[0], x), max(high[0], x))
                        (low[1], high[1]) = (min(low[1], y), max(high[1], y))
                    }
                    index += 1
                }
            }
        }
        return (0..<2).map { axis in
            let excess = high[axis] - low[axis] + 1 - sliceSize
            return low[axis] + (excess >= 0 ? excess / 2 : (excess - 1) / 2)      // floor division
        }
    }

    /// The window at `start` as slices in display order: `S[z][row, column] = W[159 − column, 159 − row, z]`,
    /// zero where the window leaves the volume.
    static func displaySlices<T>(_ ras: [T], shape: [Int], start: [Int], zero: T) -> [T] {
        let size = sliceSize
        var slices = [T](repeating: zero, count: shape[2] * size * size)
        for z in 0..<shape[2] {
            for row in 0..<size {
                let y = start[1] + size - 1 - row
                guard (0..<shape[1]).contains(y) else { continue }
                for column in 0..<size {
                    let x = start[0] + size - 1 - column
                    guard (0..<shape[0]).contains(x) else { continue }
                    slices[(z * size + row) * size + column] = ras[x + shape[0] * (y + shape[1] * z)]
                }
            }
        }
        return slices
    }
}
