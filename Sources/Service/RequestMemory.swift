import Detection
import Models

/// What a request takes from the memory budget at each stage, reserved before the stage runs
/// (docs/service.md, *Memory*). Each is an upper estimate from the sizes known at that point.
enum RequestMemory {
    /// The decoders' limits: no image decodes to more than `decode_max_bytes`, nor to more pixels or
    /// voxels than fit in it as Float32.
    static func decodeLimits(_ configuration: ServiceConfiguration) -> DetectionInput.Limits {
        DetectionInput.Limits(maximumDecodedBytes: configuration.decodeMaxBytes)
    }

    /// Peak bytes that decoding and preprocessing `body` may take besides the body itself.
    ///
    /// Until the decoders can tell an image's size from its header alone (issue 14, part A; then this
    /// calls that estimate), the bound comes from the body's size and the limits: a compressed body
    /// (gzip, PNG) may inflate to `decode_max_bytes`; an uncompressed one holds at least a byte per value.
    static func decoding(_ body: [UInt8], _ configuration: ServiceConfiguration) -> Int {
        let compressed = body.starts(with: [0x1F, 0x8B]) || InputFormat.sniff(body) == .png
        return decodingPeak(values: compressed ? .max : body.count, compressed: compressed, configuration)
    }

    /// The most any decode may reserve: a compressed body inflating to the limit.
    static func decodingPeakBound(_ configuration: ServiceConfiguration) -> Int {
        decodingPeak(values: .max, compressed: true, configuration)
    }

    private static func decodingPeak(values: Int, compressed: Bool, _ configuration: ServiceConfiguration) -> Int {
        let values = min(values, configuration.decodeMaxBytes / 4)
        // The inflate buffer and its trimmed copy.
        let inflated = compressed ? 2 * configuration.decodeMaxBytes : 0
        // Float32 volumes alive at once while preprocessing: decoded, made finite, reoriented and
        // resampled, brain mask and scaled copy, the values of the percentile.
        let volumes = 6 * 4 * values
        // The model slices and their brain masks (Float32 + Bool).
        let slices = configuration.requestMaxSlices * modelSliceValues * 5
        return inflated + volumes + slices
    }

    /// Bytes a request holds from its decoded input until it is answered: its slices and their jobs, the
    /// engine's results for each (R decoded restorations, tokens, each step's scores and masks), and the
    /// response (the map on the input's grid, its bytes, compressed and base64-encoded, and the body).
    static func inFlight(_ input: DetectionInput, _ parameters: InferenceParameters, tokensPerSlice: Int) -> Int {
        let (restorations, steps) = (parameters.restorations, parameters.method == .ar ? 1 : parameters.steps)
        let perSlice = modelSliceValues * (4 + 1 + 4 + 4)            // slice, brain mask, job image, anomaly map
            + restorations * (modelSliceValues * 4 + tokensPerSlice * 8)  // restorations, restored tokens
            + restorations * steps * tokensPerSlice * 5             // each step's scores and masks
            + tokensPerSlice * 12                                    // input tokens and token scores
        return input.sliceCount * perSlice + outputValues(input) * 4 * 7
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
