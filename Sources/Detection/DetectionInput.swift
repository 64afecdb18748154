import Imaging
import Kernels
import Models

/// Why an input image cannot be run, sorted by what the sender must change (the service maps each kind
/// to an HTTP status; the CLI prints the message).
public struct InputError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// Not one of the formats read here (.npy, PNG, NIfTI-1, DICOM).
        case unsupportedFormat
        /// A format read here in an encoding that is not (a DICOM transfer syntax without a decoder).
        case unsupportedEncoding
        /// A known format, but broken: truncated, corrupt, an invalid header.
        case malformed
        /// More pixels, voxels or bytes than the limits allow.
        case tooLarge
        /// A valid file the model cannot take: the wrong shape or dtype, no brain, out-of-range values.
        case unprocessable
    }

    /// The `DetectionInput.Limits` member a `.tooLarge` input exceeds, for a caller that names its setting.
    public enum Limit: Sendable {
        /// `maximumSlices`.
        case slices
        /// `maximumResampledVoxels`.
        case resampledVoxels
        /// One of the decoders' limits (`maximumElements`, `png`, `nifti`, the bytes and pixels of `dicom`).
        case decoder
        /// `dicom.maximumFiles`.
        case dicomFiles
        /// `dicom.maximumFrames`.
        case dicomFrames
    }

    public let kind: Kind
    public let description: String
    /// Set for `.tooLarge`.
    public let limit: Limit?

    public init(_ kind: Kind, _ description: String, limit: Limit? = nil) {
        (self.kind, self.description, self.limit) = (kind, description, limit)
    }

    /// A decoder's or the preprocessing's error, sorted by kind.
    static func refusal(_ error: any Error) -> InputError {
        switch error {
        case ZIPError.tooManyMembers, MultipartError.tooManyParts, DICOMError.tooManyFiles:
            return InputError(.tooLarge, "\(error)", limit: .dicomFiles)
        case DICOMError.tooManyFrames:
            return InputError(.tooLarge, "\(error)", limit: .dicomFrames)
        case NPYError.tooManyElements, NIfTIError.tooLarge, PNGError.tooLarge, DICOMError.tooLarge, ZIPError.tooLarge,
             MultipartError.tooLarge:
            return InputError(.tooLarge, "\(error)", limit: .decoder)
        case DICOMError.unsupportedTransferSyntax, MultipartError.unsupportedPart:
            return InputError(.unsupportedEncoding, "\(error)")
        case PreprocessingError.tooLarge:
            return InputError(.tooLarge, "\(error)", limit: .resampledVoxels)
        case NPYError.unsupportedDType, NIfTIError.unsupportedDataType, NIfTIError.nifti2NotSupported,
             NIfTIError.pairNotSupported, PNGError.notGrayscale, DICOMError.unprocessable, ZIPError.unsupported, is PreprocessingError:
            return InputError(.unprocessable, "\(error)")
        default:
            return InputError(.malformed, "\(error)")
        }
    }
}

/// The image formats an input may come in, told apart by their first bytes.
public enum InputFormat: String, Sendable {
    case npy, png, nifti, dicom

    /// The format of `bytes` by their first bytes: .npy and PNG by their magic, NIfTI-1 by `sizeof_hdr`
    /// = 348 (either byte order) or, compressed, by gzip's magic (the NIfTI decoder checks the rest of its
    /// header), DICOM by "DICM" after the 128-byte preamble or, as a ZIP of a series folder, by the ZIP
    /// signature; nil when they match none of them.
    public static func sniff(_ bytes: [UInt8]) -> InputFormat? {
        if bytes.count >= 132 && bytes[128 ..< 132].elementsEqual("DICM".utf8) || bytes.starts(with: ZIPArchive.signature) {
            return .dicom
        }
        if bytes.starts(with: [0x93] + Array("NUMPY".utf8)) { return .npy }
        if bytes.starts(with: [0x89] + Array("PNG".utf8)) { return .png }
        if bytes.starts(with: [0x1F, 0x8B]) || bytes.starts(with: [0x5C, 0x01, 0x00, 0x00]) || bytes.starts(with: [0x00, 0x00, 0x01, 0x5C]) {
            return .nifti
        }
        return nil
    }
}

/// One input image made ready for the model: its 160×160 slices and what maps results back to it.
public struct DetectionInput: Sendable {
    public enum Kind: Sendable {
        /// A 2-D image; results go back onto its pixel grid.
        case image(SliceGeometry)
        /// A volume; results go back onto its voxel grid, written with the input's header geometry.
        case volume(SliceGeometry, NIfTIGeometry)
        /// Slices the sender declared preprocessed; results keep the input's shape.
        case slices(shape: [Int])
    }

    public let format: InputFormat
    public let kind: Kind
    public let sliceCount: Int
    /// [sliceCount, 160, 160] in [0, 1], the model's frame (docs/preprocessing.md §7).
    public let slices: [Float]
    /// Brain pixels of the slices, same layout.
    public let brain: [Bool]
    /// For a DICOM series: what objects derived from it (the DICOM answer) are filed and placed with.
    public private(set) var dicomSource: DICOMSource?

    /// Whether the input was a volume with a voxel grid (NIfTI, or a 3-D .npy taken as RAS at 1 mm).
    public var isVolume: Bool {
        if case .volume = kind { return true }
        return false
    }

    /// Whether the input was 2-D, so that its token heatmap is [h, w] rather than [slices, h, w].
    public var isTwoDimensional: Bool {
        switch kind {
        case .image: true
        case .volume: false
        case .slices(let shape): shape.count == 2
        }
    }

    /// Caps on what an input may make the decoders and the preprocessing allocate, all checked from its
    /// header (`InputCost`) before anything is.
    public struct Limits: Sendable {
        public var maximumElements = NPY.defaultMaximumElements
        public var png = PNGLimits()
        public var nifti = NIfTILimits()
        public var dicom = DICOMLimits()
        /// The preprocessing's largest grid (its RAS copy, or a pass of the resampling to 1 mm).
        public var maximumResampledVoxels = Preprocessing.defaultMaximumResampledVoxels
        /// 160×160 slices after preprocessing (the service sets `request_max_slices`).
        public var maximumSlices = 2048
        public init() {}

        /// Limits from one size (the service's `decode_max_bytes`): no image decodes to more than `bytes`
        /// bytes, and neither it nor a grid of its preprocessing has more pixels or voxels than `bytes / 4`
        /// (their Float32 size).
        public init(maximumDecodedBytes bytes: Int) {
            maximumElements = bytes / 4
            png = PNGLimits(maximumPixels: bytes / 4)
            nifti = NIfTILimits(maximumVoxels: bytes / 4, maximumBytes: bytes)
            // Half: a series' files, data sets, pixels and volume take up to seven times that (`InputCost`).
            dicom = DICOMLimits(maximumFramePixels: bytes / 4, maximumBytes: bytes / 2)
            maximumResampledVoxels = bytes / 4
        }
    }

    /// Reads `.npy` (2-D slice or 3-D volume), PNG (2-D slice), NIfTI-1 (`.nii`, `.nii.gz`) or a DICOM
    /// series (one file, a ZIP, or multipart/related as `dicom` says), told apart by their magic bytes, and
    /// preprocesses it as docs/preprocessing.md and docs/imaging.md say. With `preprocessed`, `.npy` and PNG
    /// inputs are taken as 160×160 slices in [0, 1] and passed unchanged. Its header is read first, so an
    /// input over `limits` is refused from it.
    public init(bytes: [UInt8], preprocessed: Bool, limits: Limits = Limits(), dicom: DICOMRequest = DICOMRequest()) throws(InputError) {
        try self.init(bytes: bytes, header: InputHeader(bytes: bytes, preprocessed: preprocessed, limits: limits, dicom: dicom))
    }

    /// Decodes and preprocesses `bytes`, whose `header` was read already (with its limits, and for DICOM
    /// its parsed series, whose pixels are taken now).
    public init(bytes: [UInt8], header: InputHeader) throws(InputError) {
        let (format, preprocessed, limits) = (header.cost.format, header.preprocessed, header.limits)
        switch format {
        case .npy:
            let array: NPYArray
            do { array = try NPY.decode(bytes, maximumElements: limits.maximumElements) } catch { throw .refusal(error) }
            if preprocessed {
                self = try Self.modelSlices(array, format: format)
            } else if let image = array.image() {
                self = try DetectionInput(image: image, format: format)
            } else if let volume = array.volume() {
                // A bare array has no geometry: voxel axes are taken as RAS at 1 mm (docs/imaging.md).
                self = try DetectionInput(volume: volume, geometry: NIfTIGeometry(affine: .identity), limits: limits, format: format)
            } else {
                throw InputError(.unprocessable, "a .npy input must be a 2-D slice or a 3-D volume (checked from its header)")
            }
        case .png:
            let image: GrayImage
            do { image = try PNG.decode(bytes, limits: limits.png).grayscale() } catch { throw .refusal(error) }
            self = preprocessed
                ? try Self.modelSlices(NPYArray(shape: [image.height, image.width], values: image.pixels), format: format)
                : try DetectionInput(image: image, format: format)
        case .nifti:
            let nifti: NIfTIImage
            do { nifti = try NIfTI.decode(bytes, limits: limits.nifti) } catch { throw .refusal(error) }
            let affine: Affine
            do { affine = try nifti.geometry.affine() } catch { throw .refusal(error) }
            self = try DetectionInput(volume: nifti.volume, geometry: nifti.geometry, affine: affine, limits: limits, format: format)
        case .dicom:
            guard let series = header.dicomSeries else { preconditionFailure("a DICOM header holds its parsed series") }
            let volume: Volume
            do { volume = try series.volume() } catch { throw .refusal(error) }
            let affine = series.affine
            // The map is written on the series' grid with its affine, as for a NIfTI input.
            self = try DetectionInput(volume: volume, geometry: NIfTIGeometry(affine: affine), affine: affine, limits: limits, format: format)
            dicomSource = series.source
        }
    }

    private init(format: InputFormat, kind: Kind, sliceCount: Int, slices: [Float], brain: [Bool]) {
        (self.format, self.kind, self.sliceCount, self.slices, self.brain) = (format, kind, sliceCount, slices, brain)
    }

    private init(image: GrayImage, format: InputFormat) throws(InputError) {
        let prepared: PreprocessedVolume
        do { prepared = try Preprocessing.prepareImage(image) } catch { throw .refusal(error) }
        self.init(format: format, kind: .image(prepared.geometry), sliceCount: 1, slices: prepared.slices, brain: prepared.brain)
    }

    private init(volume: Volume, geometry: NIfTIGeometry, affine: Affine = .identity, limits: Limits,
                 format: InputFormat) throws(InputError) {
        let prepared: PreprocessedVolume
        do { prepared = try Preprocessing.preprocess(volume, affine: affine, maximumResampledVoxels: limits.maximumResampledVoxels) }
        catch { throw .refusal(error) }
        self.init(format: format, kind: .volume(prepared.geometry, geometry), sliceCount: prepared.sliceCount,
                  slices: prepared.slices, brain: prepared.brain)
    }

    /// Preprocessed slices of a shape `InputCost` accepted ([160, 160], [N, 160, 160] or [N, 1, 160, 160]),
    /// each checked by the 2-D rule for a preprocessed 160×160 image (finite, in [0, 1]; brain = pixels > 0).
    private static func modelSlices(_ array: NPYArray, format: InputFormat) throws(InputError) -> DetectionInput {
        let size = Preprocessing.sliceSize, area = size * size
        let count = array.values.count / area
        var slices: [Float] = [], brain: [Bool] = []
        for index in 0..<count {
            let image = GrayImage(width: size, height: size, pixels: Array(array.values[index * area ..< (index + 1) * area]))
            do {
                let prepared = try Preprocessing.prepareImage(image)
                slices += prepared.slices
                brain += prepared.brain
            } catch {
                throw InputError(.unprocessable, "slice \(index): \(error)")
            }
        }
        return DetectionInput(format: format, kind: .slices(shape: array.shape), sliceCount: count, slices: slices, brain: brain)
    }

    /// One restoration job per slice, slice i seeded with `parameters.seed + i`: a slice's result depends on
    /// its image, the parameters and that seed only, not on how slices are batched.
    public func jobs(_ parameters: InferenceParameters, slices range: Range<Int>) -> [RestorationJob] {
        let size = Preprocessing.sliceSize, area = size * size
        return range.map { index in
            var own = parameters
            own.seed = parameters.seed &+ UInt64(index)
            return RestorationJob(images: Tensor(shape: [1, 1, size, size], scalars: Array(slices[index * area ..< (index + 1) * area])),
                                  parameters: own)
        }
    }
}
