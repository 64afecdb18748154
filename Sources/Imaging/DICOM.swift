import CDicom
import ZlibCodec

/// Why DICOM input could not be read. No message holds an attribute's value other than the transfer
/// syntax, modality and image sizes: patient data never reaches an error, a response or a log.
public enum DICOMError: Error, Equatable, CustomStringConvertible {
    /// Not DICOM, truncated, or inconsistent with itself.
    case malformed(String)
    /// A transfer syntax whose decoder is not built in.
    case unsupportedTransferSyntax(uid: String, name: String)
    /// Valid DICOM the model cannot take: not MR, colour, several series, a tilted or irregular stack.
    case unprocessable(String)
    /// More files than `DICOMLimits.maximumFiles`.
    case tooManyFiles(String)
    /// More frames than `DICOMLimits.maximumFrames`.
    case tooManyFrames(String)
    /// More pixels or bytes than the limits allow (found from the headers).
    case tooLarge(String)

    public var description: String {
        switch self {
        case .malformed(let detail): "not valid DICOM: \(detail)"
        case .unsupportedTransferSyntax(let uid, let name):
            "transfer syntax \(uid) (\(name)) is not supported; send implicit or explicit VR little endian, deflated, "
                + "RLE lossless or JPEG lossless (process 14, SV1)"
        case .unprocessable(let detail): detail
        case .tooManyFiles(let detail), .tooManyFrames(let detail), .tooLarge(let detail): detail
        }
    }
}

/// Caps on what DICOM input may make the decoder allocate, each checked from headers before anything it
/// sizes is allocated (docs/service.md, *Limits*).
public struct DICOMLimits: Sendable, Equatable {
    /// Files in one request (a ZIP's members, a multipart body's parts).
    public var maximumFiles: Int
    /// Frames (slices) in all the files together.
    public var maximumFrames: Int
    /// Rows × Columns of one frame.
    public var maximumFramePixels: Int
    /// Bytes each of these may take: a ZIP's members (each the larger of its stored and inflated sizes);
    /// a multipart body's parts; the parsed data sets (each checked as stored, before it is copied or
    /// inflated) with their stored pixels; the volume's Float32 values.
    public var maximumBytes: Int

    public init(maximumFiles: Int = 2048, maximumFrames: Int = 2048, maximumFramePixels: Int = 1 << 24, maximumBytes: Int = 1 << 30) {
        (self.maximumFiles, self.maximumFrames, self.maximumFramePixels, self.maximumBytes) =
            (maximumFiles, maximumFrames, maximumFramePixels, maximumBytes)
    }
}

/// Where one frame lies and how its stored values become intensities.
struct DICOMFrame: Sendable, Equatable {
    /// Image Position (Patient): the first voxel's centre, LPS millimetres.
    var position: [Double]
    /// Image Orientation (Patient): the row direction (along a row, columns increasing), then the column
    /// direction (down a column, rows increasing), LPS unit vectors.
    var orientation: [Double]
    /// Pixel Spacing: between rows, then between columns (mm).
    var spacing: [Double]
    var slope: Double
    var intercept: Double
}

/// The attributes of one DICOM object that the series assembly needs — no patient attribute is read.
struct DICOMHeader: Sendable, Equatable {
    let seriesUID: String
    /// SOP Class and SOP Instance UIDs: what derived objects reference the object by.
    let sopClassUID: String
    let sopInstanceUID: String
    let modality: String
    let rows: Int
    let columns: Int
    /// Bytes a stored value takes (1 or 2).
    let bytesPerValue: Int
    let frames: [DICOMFrame]
    /// Spacing Between Slices, else Slice Thickness: the slice step of a single-slice series.
    let sliceStep: Double?
    /// The bytes the parsed object holds: its data set (inflated, when deflated).
    let datasetBytes: Int
    /// The bytes parsing held for a while besides: a deflated data set's stored bytes and their inflation.
    let inflatingBytes: Int

    /// The bytes of its stored pixel values.
    var storedBytes: Int { frames.count * rows * columns * bytesPerValue }
}

/// One DICOM Part 10 object parsed from memory by DCMTK (through CDicom), once: its header is read at
/// once, its pixels when they are taken. `@unchecked Sendable`: DCMTK loads long elements when first used,
/// so an object is used by one thread at a time — the request that parsed it, which then decodes it.
final class DICOMObject: @unchecked Sendable {
    /// The parsed data set, until its pixels are taken.
    private var object: OpaquePointer?
    let header: DICOMHeader

    /// Transfer syntaxes read here, each DCMTK's own: the little-endian uncompressed ones, deflated, RLE
    /// lossless, JPEG lossless process 14 and its selection value 1.
    static let supportedTransferSyntaxes: Set<String> = [
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", deflatedTransferSyntax, "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    ]
    private static let deflatedTransferSyntax = "1.2.840.10008.1.2.1.99"
    private static let explicitLittleEndian = "1.2.840.10008.1.2.1"

    /// Parses `bytes` — every element but the long ones (Pixel Data among them), which DCMTK loads from
    /// its copy of the data set when they are used — and reads its header, checking its sizes against
    /// `limits` before any per-frame value is read. The data set, as stored and inflated, may take
    /// `maximumDatasetBytes`: checked before it is copied or inflated.
    init(_ bytes: ArraySlice<UInt8>, limits: DICOMLimits, maximumDatasetBytes: Int) throws(DICOMError) {
        var message = [CChar](repeating: 0, count: 256)
        var syntaxBuffer = [CChar](repeating: 0, count: 65)
        var offset = 0
        let metaStatus = bytes.withUnsafeBufferPointer { cdicom_read_meta($0.baseAddress, $0.count, &syntaxBuffer, &offset, &message, message.count) }
        guard metaStatus == CDICOM_OK else { throw .malformed(Self.text(message)) }
        let stored = bytes.dropFirst(offset)
        guard stored.count <= maximumDatasetBytes else {
            throw .tooLarge("a data set of \(stored.count) bytes is more than the \(maximumDatasetBytes) bytes left of those allowed")
        }
        let syntax = Self.text(syntaxBuffer)
        guard Self.supportedTransferSyntaxes.contains(syntax) else {
            var name = [CChar](repeating: 0, count: 128)
            let known = cdicom_transfer_syntax_name(syntax, &name, name.count) == 0
            throw .unsupportedTransferSyntax(uid: quoted(syntax), name: known ? Self.text(name) : "unknown")
        }
        var parsed: OpaquePointer?
        let status: CDicomStatus
        let datasetBytes: Int, inflatingBytes: Int
        if syntax == Self.deflatedTransferSyntax {
            let inflated: [UInt8]
            do { inflated = try Zlib.decompressLeading(Array(stored), format: .raw, maximumOutputBytes: maximumDatasetBytes) } catch {
                if case .outputLimitExceeded = error { throw .tooLarge("a deflated data set \(error)") }
                throw .malformed("the deflated data set does not inflate: \(error)")
            }
            status = inflated.withUnsafeBufferPointer {
                cdicom_parse_dataset($0.baseAddress, $0.count, Self.explicitLittleEndian, &parsed, &message, message.count)
            }
            (datasetBytes, inflatingBytes) = (inflated.count, stored.count + inflated.count)
        } else {
            // Parsed in place: DCMTK's copy is the only one.
            status = stored.withUnsafeBufferPointer { cdicom_parse_dataset($0.baseAddress, $0.count, syntax, &parsed, &message, message.count) }
            (datasetBytes, inflatingBytes) = (stored.count, 0)
        }
        guard status == CDICOM_OK, let parsed else { throw .malformed(Self.text(message)) }
        object = parsed
        do { header = try Self.header(parsed, datasetBytes: datasetBytes, inflatingBytes: inflatingBytes, limits: limits) } catch {
            cdicom_free(parsed)
            throw error
        }
    }

    deinit { cdicom_free(object) }

    /// A copy of its patient, study and frame-of-reference attributes, taken before its pixels are.
    func study() throws(DICOMError) -> DICOMStudy {
        guard let object, let copy = cdicom_study_copy(object) else { throw .malformed("out of memory copying the study attributes") }
        return DICOMStudy(copy)
    }

    /// The stored values of every frame as Float32 (frame after frame, rows top to bottom), before rescale.
    /// Taken once: the parsed data set, with the pixels DCMTK loaded, is freed then, so that a series
    /// decoded object after object holds one object's pixels at a time.
    func takeStoredValues() throws(DICOMError) -> [Float] {
        guard let object else { preconditionFailure("the pixels of a DICOM object are taken once") }
        defer {
            cdicom_free(object)
            self.object = nil
        }
        let count = header.frames.count * header.rows * header.columns
        var message = [CChar](repeating: 0, count: 256)
        var status = CDICOM_OK
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            status = cdicom_pixels(object, buffer.baseAddress, count, &message, message.count)
            if status == CDICOM_OK { initialized = count } else { initialized = 0 }
        }
        guard status == CDICOM_OK else {
            throw status == CDICOM_UNSUPPORTED ? .unprocessable(Self.text(message)) : .malformed(Self.text(message))
        }
        return values
    }

    private static func header(_ object: OpaquePointer, datasetBytes: Int, inflatingBytes: Int, limits: DICOMLimits) throws(DICOMError) -> DICOMHeader {
        func string(_ group: UInt16, _ element: UInt16) -> String? {
            var value = [CChar](repeating: 0, count: 1025)
            return cdicom_string(object, group, element, &value, value.count) >= 0 ? text(value) : nil
        }
        func numbers(_ tag: (UInt16, UInt16), in macro: (UInt16, UInt16) = (0, 0), frame: Int = 0, count: Int) -> [Double]? {
            var values = [Double](repeating: 0, count: count)
            let found = cdicom_numbers(object, UInt32(frame), macro.0, macro.1, tag.0, tag.1, &values, count)
            return found == count ? values : nil
        }
        func integer(_ tag: (UInt16, UInt16), _ name: String) throws(DICOMError) -> Int {
            guard let value = numbers(tag, count: 1)?[0], value >= 0, value <= Double(Int32.max) else {
                throw .malformed("\(name) (\(hex(tag))) is missing or invalid")
            }
            return Int(value)
        }
        guard numbers((0x0028, 0x0010), count: 1) != nil, numbers((0x0028, 0x0011), count: 1) != nil else {
            throw .unprocessable("the DICOM object is not an image (it has no Rows and Columns)")
        }
        let rows = try integer((0x0028, 0x0010), "Rows"), columns = try integer((0x0028, 0x0011), "Columns")
        let frameCount = numbers((0x0028, 0x0008), count: 1).map { Int(exactly: $0[0]) ?? -1 } ?? 1
        guard rows > 0, columns > 0, frameCount > 0 else {
            throw .malformed("Rows, Columns and Number of Frames must be positive, got \(rows), \(columns), \(frameCount)")
        }
        guard rows * columns <= limits.maximumFramePixels else {
            throw .tooLarge("a frame of \(rows) × \(columns) pixels has more than the \(limits.maximumFramePixels) allowed")
        }
        guard frameCount <= limits.maximumFrames else {
            throw .tooManyFrames("\(frameCount) frames, more than the \(limits.maximumFrames) allowed")
        }
        let samples = numbers((0x0028, 0x0002), count: 1)?[0] ?? 1
        let photometric = string(0x0028, 0x0004)?.trimmingSpaces ?? ""
        guard samples == 1, photometric == "MONOCHROME2" else {
            throw .unprocessable("only grayscale DICOM images are read (Samples per Pixel 1, MONOCHROME2), got "
                                 + "\(Int(samples)) samples, '\(quoted(photometric))'")
        }
        let bitsAllocated = try integer((0x0028, 0x0100), "Bits Allocated")
        guard bitsAllocated == 8 || bitsAllocated == 16 else {
            throw .unprocessable("Bits Allocated must be 8 or 16, got \(bitsAllocated)")
        }
        var frames: [DICOMFrame] = []
        frames.reserveCapacity(frameCount)
        for frame in 0..<frameCount {
            guard let position = numbers((0x0020, 0x0032), in: (0x0020, 0x9113), frame: frame, count: 3),
                  let orientation = numbers((0x0020, 0x0037), in: (0x0020, 0x9116), frame: frame, count: 6),
                  let spacing = numbers((0x0028, 0x0030), in: (0x0028, 0x9110), frame: frame, count: 2) else {
                throw .unprocessable("frame \(frame + 1) has no Image Position (Patient), Image Orientation (Patient) or Pixel Spacing: "
                                     + "a volume cannot be placed without them")
            }
            let slope = numbers((0x0028, 0x1053), in: (0x0028, 0x9145), frame: frame, count: 1)?[0] ?? 1
            let intercept = numbers((0x0028, 0x1052), in: (0x0028, 0x9145), frame: frame, count: 1)?[0] ?? 0
            guard (position + orientation + spacing + [slope, intercept]).allSatisfy(\.isFinite), spacing.allSatisfy({ $0 > 0 }) else {
                throw .malformed("frame \(frame + 1) has a non-finite position, orientation or rescale, or a spacing that is not positive")
            }
            frames.append(DICOMFrame(position: position, orientation: orientation, spacing: spacing, slope: slope, intercept: intercept))
        }
        let sliceStep = (numbers((0x0018, 0x0088), in: (0x0028, 0x9110), count: 1) ?? numbers((0x0018, 0x0050), in: (0x0028, 0x9110), count: 1))?[0]
        return DICOMHeader(seriesUID: string(0x0020, 0x000E)?.trimmingSpaces ?? "", sopClassUID: string(0x0008, 0x0016)?.trimmingSpaces ?? "",
                           sopInstanceUID: string(0x0008, 0x0018)?.trimmingSpaces ?? "", modality: string(0x0008, 0x0060)?.trimmingSpaces ?? "",
                           rows: rows, columns: columns, bytesPerValue: bitsAllocated / 8, frames: frames,
                           sliceStep: sliceStep.flatMap { $0.isFinite && $0 > 0 ? $0 : nil }, datasetBytes: datasetBytes,
                           inflatingBytes: inflatingBytes)
    }

    static func text(_ characters: [CChar]) -> String {
        String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func hex(_ tag: (UInt16, UInt16)) -> String {
        func four(_ value: UInt16) -> String {
            let digits = String(value, radix: 16, uppercase: true)
            return String(repeating: "0", count: 4 - digits.count) + digits
        }
        return "(\(four(tag.0)),\(four(tag.1)))"
    }
}

private extension String {
    var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " || $0 == "\0" }.reversed())
    }
}
