import Detection
import Models

/// What a request takes from the memory budget at each stage, reserved before the stage runs
/// (docs/service.md, *Memory*). Each is an upper estimate from the sizes known at that point.
enum RequestMemory {
    /// Peak bytes that decoding and preprocessing an input take besides its body: what its header says
    /// (`InputCost.peakBytes`), known before anything is inflated or allocated.
    static func decoding(_ cost: InputCost) -> Int {
        cost.peakBytes
    }

    /// The most any decode may reserve: the largest input `decode_max_bytes` and `request_max_slices` let through.
    static func decodingPeakBound(_ configuration: ServiceConfiguration) -> Int {
        InputCost.largestPeakBytes(configuration.inputLimits)
    }

    /// Bytes a request holds from its decoded input until it is answered: its slices and their jobs, the
    /// engine's results for each (R decoded restorations, tokens, each step's scores and masks), and the
    /// response (the map on the input's grid, its bytes, compressed and base64-encoded, and the body; for
    /// the DICOM answer, DCMTK's copies of the frames and data sets, the encoded files and the mask besides).
    static func inFlight(_ input: DetectionInput, _ parameters: InferenceParameters, tokensPerSlice: Int, answer: ResponseFormat) -> Int {
        let (restorations, steps) = (parameters.restorations, parameters.method == .ar ? 1 : parameters.steps)
        let perSlice = modelSliceValues * (4 + 1 + 4 + 4)            // slice, brain mask, job image, anomaly map
            + restorations * (modelSliceValues * 4 + tokensPerSlice * 8)  // restorations, restored tokens
            + restorations * steps * tokensPerSlice * 5             // each step's scores and masks
            + tokensPerSlice * 12                                    // input tokens and token scores
        return input.sliceCount * perSlice + outputValues(input) * 4 * (answer.isDICOM ? 11 : 7)
    }

    /// Values of the anomaly map on the input's grid.
    private static func outputValues(_ input: DetectionInput) -> Int {
        switch input.kind {
        case .image(let geometry), .volume(let geometry, _): geometry.inputShape.reduce(1, *)
        case .slices(let shape): shape.reduce(1, *)
        }
    }

    /// Values of one 160×160 model slice (docs/preprocessing.md §7).
    static let modelSliceValues = 160 * 160
}

extension ServiceConfiguration {
    /// What an input may make the decoders and the preprocessing allocate, every limit from a setting:
    /// `decode_max_bytes` (decoded bytes; pixels, voxels and resampled voxels as Float32),
    /// `decode_max_dicom_files`, `decode_max_dicom_frames` and `request_max_slices`. All are checked from
    /// the input's header (`InputHeader`) before what they size is allocated.
    var inputLimits: DetectionInput.Limits {
        var limits = DetectionInput.Limits(maximumDecodedBytes: decodeMaxBytes)
        limits.dicom.maximumFiles = decodeMaxDicomFiles
        limits.dicom.maximumFrames = decodeMaxDicomFrames
        limits.maximumSlices = requestMaxSlices
        return limits
    }
}
