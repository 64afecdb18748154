import Imaging

/// What an input will cost, found from its header alone — the first bytes of a `.npy`, the IHDR chunk of a
/// PNG, the 348-byte header of a NIfTI-1 (for `.nii.gz`, only those bytes are inflated), the data sets of a
/// DICOM series without their pixels (`InputHeader`: parsed once, within `InputHeader.locateDICOM`'s bound) —
/// before any image is decoded or allocated for it. Computing it is the check: an input over `limits`, or
/// one the model cannot take (a 26-dimensional array, a volume declared preprocessed), throws the refusal
/// here, so `DetectionInput` never starts on it; a memory budget reserves `peakBytes` from it.
///
/// Counts (bytes are not counting the input's own bytes):
/// * `decodedBytes`: what the decoder holds — the inflated stream of a `.nii.gz` (only the bytes the header
///   says the image needs) or PNG, the samples of a PNG, and the values as Float32 (twice for a
///   Fortran-order `.npy`, which is rearranged into a second array); for DICOM, a ZIP member's stored
///   and inflated bytes while it is parsed, and what the series holds and its decoding adds
///   (`DICOMSeries.decodingBytes`: the parsed data sets, the costliest object's pixels, the volume);
/// * `resampledVoxels`: voxels of the largest grid the preprocessing builds — the copy in RAS order or a
///   pass of the resampling to 1 mm (a 1×1×2 volume with 10^6 mm slices makes 10^6 of them);
/// * `outputSlices`: the 160×160 slices the model runs, each one job in the inference queue.
public struct InputCost: Sendable, Equatable {
    public let format: InputFormat
    public let decodedBytes: Int
    public let inputVoxels: Int
    public let resampledVoxels: Int
    public let outputSlices: Int
    /// The voxel grid a volume's results are written on (`[nx, ny, nz]`); nil for 2-D images and
    /// preprocessed slices, which have no volume to write.
    public let volumeShape: [Int]?
    /// How the input is read, as `DetectionInput` decides it (here from the header).
    private enum Layout: Sendable, Equatable {
        /// A 2-D image (a PNG, or a `.npy` of shape [height, width]).
        case image
        /// A volume: a NIfTI, a DICOM series, or a 3-D `.npy` taken as RAS at 1 mm.
        case volume
        /// Slices declared preprocessed.
        case slices
    }

    /// Bytes of one 160×160 Float32 slice.
    private static let sliceBytes = Preprocessing.sliceSize * Preprocessing.sliceSize * MemoryLayout<Float>.size

    /// Why the anomaly map cannot be written as a NIfTI-1 file, or nil when it can: only a volume has
    /// one, and NIfTI-1 stores at most 32767 voxels per axis.
    public var niftiOutputRefusal: String? {
        guard let volumeShape else { return "it is made for volume inputs only, and this \(format.rawValue) input is not a volume" }
        guard volumeShape.allSatisfy({ $0 <= NIfTI.maximumAxisSize }) else {
            return "NIfTI-1 holds at most \(NIfTI.maximumAxisSize) voxels per axis, and this volume is "
                + volumeShape.map(String.init).joined(separator: " × ")
        }
        return nil
    }

    /// An upper estimate of the bytes decoding and preprocessing hold at once, from the allocations of
    /// their steps (not a measurement): the decoded input; two Float32 copies of the input grid (finite
    /// values, RAS order) and two of the largest resampling pass (its input and output); on the 1 mm grid
    /// its values, brain mask, scaled values and the percentile's two arrays (17 bytes a voxel); the
    /// slices and their brain masks (5 bytes a pixel).
    public var peakBytes: Int {
        Self.peakBytes(decodedAndInputBytes: decodedBytes + 8 * inputVoxels, resampledVoxels: resampledVoxels, outputSlices: outputSlices)
    }

    /// The largest `peakBytes` of any input `limits` let through: what a memory budget must hold for one
    /// decode at those limits. Per format, the most its decoder holds (as `init` counts it) with the most
    /// values it may have, then its largest grid and slices: a volume's at the limits, a PNG's its own.
    public static func largestPeakBytes(_ limits: DetectionInput.Limits) -> Int {
        let float = MemoryLayout<Float>.size
        let (grid, slices) = (limits.maximumResampledVoxels, limits.maximumSlices)
        // Fortran order: two Float32 copies; then the two copies of the input grid.
        let npy = peakBytes(decodedAndInputBytes: limits.maximumElements * (2 * float + 8), resampledVoxels: grid, outputSlices: slices)
        let nifti = peakBytes(decodedAndInputBytes: limits.nifti.maximumBytes + limits.nifti.maximumVoxels * (float + 8),
                              resampledVoxels: grid, outputSlices: slices)
        // Inflated rows of 16-bit RGBA with their filter bytes (Adam7 has fewer than twice the rows), four
        // UInt16 channels, their expansion, intensities; one slice on the image's own grid.
        let pixels = min(limits.png.maximumPixels, grid)
        let png = peakBytes(decodedAndInputBytes: pixels * (8 + 2 * 4 + 2 * 4 + float + 8) + 2 * min(limits.png.maximumHeight, pixels) + 7,
                            resampledVoxels: pixels, outputSlices: 1)
        // A ZIP member's stored and inflated bytes: each at most `maximumBytes`.
        let dicom = largestDICOMPeakBytes(fileReadingBytes: 2 * limits.dicom.maximumBytes, limits)
        return max(npy, nifti, png, dicom)
    }

    /// The largest `peakBytes` of a DICOM series `limits` let through, when reading one of its files holds
    /// `fileReadingBytes` besides the body. `DICOMSeries.decodingBytes` is at most 4 × `maximumBytes`: the
    /// data sets with the stored pixels come to at most `maximumBytes`; the costliest object adds its
    /// stored and inflated data set (at most `maximumBytes` each), or its pixels as Float32 (the volume's
    /// voxels are at most `maximumBytes` / 4); the volume. Then the two Float32 copies of the input grid.
    static func largestDICOMPeakBytes(fileReadingBytes: Int, _ limits: DetectionInput.Limits) -> Int {
        let dicomBytes = limits.dicom.maximumBytes
        return peakBytes(decodedAndInputBytes: fileReadingBytes + 4 * dicomBytes + 8 * (dicomBytes / 4),
                         resampledVoxels: limits.maximumResampledVoxels, outputSlices: limits.maximumSlices)
    }

    private static func peakBytes(decodedAndInputBytes: Int, resampledVoxels: Int, outputSlices: Int) -> Int {
        let sliceMaskBytes = Preprocessing.sliceSize * Preprocessing.sliceSize
        return decodedAndInputBytes + (8 + 17) * resampledVoxels + outputSlices * (sliceBytes + sliceMaskBytes)
    }

    /// The cost of `bytes` as `DetectionInput(bytes:preprocessed:limits:dicom:)` would read them, or the
    /// refusal it would end with, found from the header (`InputHeader`).
    public init(bytes: [UInt8], preprocessed: Bool, limits: DetectionInput.Limits = DetectionInput.Limits(),
                dicom: DICOMRequest = DICOMRequest()) throws(InputError) {
        self = try InputHeader(bytes: bytes, preprocessed: preprocessed, limits: limits, dicom: dicom).cost
    }

    /// The cost of `bytes` in `format`; for DICOM, of the series its header pass parsed, reading one of
    /// whose files held at most `fileReadingBytes` besides the body.
    init(bytes: [UInt8], format: InputFormat, preprocessed: Bool, limits: DetectionInput.Limits,
         dicom: (series: DICOMSeries, fileReadingBytes: Int)?) throws(InputError) {
        self.format = format
        let float = MemoryLayout<Float>.size
        let shape: [Int]
        let affine: Affine?
        let layout: Layout
        switch format {
        case .npy:
            let header: NPYHeader
            do { header = try NPY.header(bytes, maximumElements: limits.maximumElements) } catch { throw .refusal(error) }
            shape = header.shape
            decodedBytes = header.elementCount * float * (header.fortranOrder ? 2 : 1)
            if preprocessed {
                layout = .slices
            } else if shape.count == 2, shape.allSatisfy({ $0 > 0 }) {
                layout = .image
            } else if shape.count == 3, shape.allSatisfy({ $0 > 0 }) {
                layout = .volume
            } else {
                throw InputError(.unprocessable, "a .npy input must be a 2-D slice or a 3-D volume, got shape \(Self.describe(shape))"
                                 + " (a stack of preprocessed slices must be declared preprocessed)")
            }
            affine = .identity
        case .png:
            let header: PNGHeader
            do { header = try PNG.header(bytes, limits: limits.png) } catch { throw .refusal(error) }
            shape = [header.height, header.width]
            // Inflated rows; samples unfiltered, then expanded to at most four UInt16 channels; intensities.
            let pixels = header.width * header.height
            decodedBytes = header.inflatedByteCount + pixels * (2 * header.channels + 2 * 4 + float)
            layout = preprocessed ? .slices : .image
            affine = nil
        case .nifti:
            let header: NIfTIHeader
            do { header = try NIfTI.header(bytes, limits: limits.nifti) } catch { throw .refusal(error) }
            guard !preprocessed else {
                throw InputError(.unprocessable, "only .npy and PNG slices can be declared preprocessed; "
                                 + "a NIfTI volume is always preprocessed from its voxel grid")
            }
            shape = header.shape
            let inflated = bytes.starts(with: [0x1F, 0x8B]) ? header.byteCount : 0
            decodedBytes = inflated + header.voxelCount * float
            layout = .volume
            do { affine = try header.geometry.affine() } catch { throw .refusal(error) }
        case .dicom:
            guard let (series, fileReadingBytes) = dicom else { preconditionFailure("a DICOM input's cost needs its parsed series") }
            shape = series.shape
            decodedBytes = fileReadingBytes + series.decodingBytes
            layout = .volume
            affine = series.affine
        }
        inputVoxels = shape.reduce(1, *)

        switch layout {
        case .slices:
            outputSlices = try Self.preprocessedSliceCount(shape)
            resampledVoxels = inputVoxels
            volumeShape = nil
        case .image:
            // prepareImage keeps a 2-D image's pixels at 1 mm: one slice, on the image's own grid.
            outputSlices = 1
            resampledVoxels = inputVoxels
            volumeShape = nil
        case .volume:
            let grid: ResampledGrid
            do { grid = try Preprocessing.resampledGrid(shape: shape, affine: affine ?? .identity) } catch { throw .refusal(error) }
            outputSlices = grid.sliceCount
            resampledVoxels = grid.largestVoxelCount
            volumeShape = shape
        }

        guard outputSlices <= limits.maximumSlices else {
            throw InputError(.tooLarge, "the input makes \(outputSlices) slices after preprocessing, more than the "
                             + "\(limits.maximumSlices) a request may bring", limit: .slices)
        }
        guard resampledVoxels <= limits.maximumResampledVoxels else {
            throw InputError(.tooLarge, "preprocessing would build a grid of \(resampledVoxels) voxels, more than the "
                             + "\(limits.maximumResampledVoxels) allowed", limit: .resampledVoxels)
        }
    }

    /// Preprocessed slices: [160, 160], [N, 160, 160] or [N, 1, 160, 160] with N ≥ 1.
    private static func preprocessedSliceCount(_ shape: [Int]) throws(InputError) -> Int {
        let size = Preprocessing.sliceSize
        let count = shape.count == 2 ? 1 : shape.first ?? 0
        let accepted = [[size, size], [count, size, size], [count, 1, size, size]]
        guard accepted.contains(shape), count >= 1 else {
            throw InputError(.unprocessable, "preprocessed slices must be \(size)×\(size): shape [\(size), \(size)], "
                             + "[N, \(size), \(size)] or [N, 1, \(size), \(size)], got \(describe(shape))")
        }
        return count
    }

    /// A shape for a message, short however many dimensions the header claims.
    static func describe(_ shape: [Int]) -> String {
        let shown = shape.prefix(8).map(String.init).joined(separator: ", ")
        return "[" + shown + (shape.count > 8 ? ", … (\(shape.count) dimensions)]" : "]")
    }
}
