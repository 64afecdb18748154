import Imaging

/// An input's header, read once: its cost and, for DICOM, the series whose every file was parsed (Pixel
/// Data left to be loaded), which `DetectionInput(bytes:header:)` decodes without parsing anything again.
/// Reading a DICOM header parses the files, so a memory budget reserves `locateDICOM`'s bound before it.
public struct InputHeader: Sendable {
    public let cost: InputCost
    /// What the header was read with, and the input is decoded with.
    let preprocessed: Bool
    let limits: DetectionInput.Limits
    let dicomSeries: DICOMSeries?

    /// Reads the header of `bytes` (for DICOM, parses its files one at a time, where `located` found them
    /// if given), or throws the refusal that `DetectionInput` would end with.
    public init(bytes: [UInt8], preprocessed: Bool, limits: DetectionInput.Limits = DetectionInput.Limits(),
                dicom: DICOMRequest = DICOMRequest(), located: DICOMLocation? = nil) throws(InputError) {
        let format = located == nil ? try Self.format(of: bytes, dicom) : .dicom
        var parsed: (series: DICOMSeries, fileReadingBytes: Int)?
        if format == .dicom {
            let body = if let located { located.body } else { try Self.dicomBody(bytes, preprocessed: preprocessed, dicom, limits: limits) }
            parsed = (try body.series(in: bytes, anyModality: dicom.anyModality, limits: limits.dicom), body.largestFileReadingBytes)
        }
        cost = try InputCost(bytes: bytes, format: format, preprocessed: preprocessed, limits: limits, dicom: parsed)
        (self.preprocessed, self.limits, dicomSeries) = (preprocessed, limits, parsed?.series)
    }

    /// Where a DICOM body's files are — a ZIP's directory, a multipart body's delimiters — found once, and
    /// the most that reading its header and decoding it may hold.
    public struct DICOMLocation: Sendable {
        let body: DICOMBody
        /// At least the `peakBytes` of its cost, from the files' framing and the limits alone.
        public let peakBound: Int
    }

    /// For a DICOM body, where its files are and `peakBound`, found before anything is inflated, copied or
    /// parsed; refusals found on the way (too many files, a ZIP declaring too many bytes) are thrown. Nil
    /// for the other formats, whose header is read in place.
    public static func locateDICOM(bytes: [UInt8], preprocessed: Bool, limits: DetectionInput.Limits,
                                   dicom: DICOMRequest) throws(InputError) -> DICOMLocation? {
        guard try format(of: bytes, dicom) == .dicom else { return nil }
        let body = try dicomBody(bytes, preprocessed: preprocessed, dicom, limits: limits)
        return DICOMLocation(body: body, peakBound: InputCost.largestDICOMPeakBytes(fileReadingBytes: body.largestFileReadingBytes, limits))
    }

    private static func format(of bytes: [UInt8], _ dicom: DICOMRequest) throws(InputError) -> InputFormat {
        guard let format = dicom.multipartBoundary == nil ? InputFormat.sniff(bytes) : .dicom else {
            throw InputError(.unsupportedFormat, "not a .npy, PNG, NIfTI-1 (.nii, .nii.gz) or DICOM image: its first bytes match none of them")
        }
        return format
    }

    private static func dicomBody(_ bytes: [UInt8], preprocessed: Bool, _ dicom: DICOMRequest,
                                  limits: DetectionInput.Limits) throws(InputError) -> DICOMBody {
        guard !preprocessed else {
            throw InputError(.unprocessable, "only .npy and PNG slices can be declared preprocessed; "
                             + "a DICOM series is always preprocessed from its voxel grid")
        }
        return try DICOMBody(locating: bytes, dicom, limits: limits.dicom)
    }
}
