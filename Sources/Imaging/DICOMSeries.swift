/// A DICOM MR series made into a volume the way dcm2niix and highdicom do: one Series Instance UID, the
/// frames (single-frame files, or the frames of an Enhanced multi-frame object) sorted along the normal of
/// one Image Orientation (Patient), uniformly spaced, without gantry tilt, all of one size; stored values
/// rescaled; the voxel → patient affine in RAS+ (NIfTI's), so the volume preprocesses as a NIfTI one does.
///
/// Tolerances: orientations agree to 1e-4 per direction cosine and pixel spacings to 1e-4 mm; slice gaps
/// to 1 % of their mean (at least 0.01 mm); the slice direction is parallel to the normal to 1e-3 (the
/// sine of the angle between them, 0.06°); two frames at the same position are refused.
public struct DICOMSeries: Sendable {
    /// `[columns, rows, slices]`: voxel (i, j, k) is column i, row j of the k-th frame along the normal.
    public let shape: [Int]
    /// Voxel indices → RAS+ millimetres.
    public let affine: Affine
    /// Bytes decoding holds besides the files, for the largest object: its data set twice (DCMTK's copy,
    /// from which it loads the long elements such as compressed pixels), its stored and Float32 values;
    /// and the volume's Float32 values.
    public let decodingBytes: Int
    /// The frames in slice order: which file, which of its frames, and its rescale.
    private let slices: [(file: Int, frame: Int, slope: Double, intercept: Double)]

    static let orientationTolerance = 1e-4
    static let spacingTolerance = 1e-4
    static let tiltTolerance = 1e-3

    /// The series of `files` from their headers alone (parsing stops at Pixel Data): refused when it is
    /// not one MR series (unless `anyModality`) or not a regular stack, or when it is over `limits`.
    public init(headersOf files: [[UInt8]], anyModality: Bool, limits: DICOMLimits) throws(DICOMError) {
        guard !files.isEmpty else { throw .malformed("no DICOM file") }
        guard files.count <= limits.maximumFiles else {
            throw .tooLarge("\(files.count) DICOM files, more than the \(limits.maximumFiles) allowed")
        }
        var headers: [DICOMHeader] = []
        var frameCount = 0
        var bytes = 0
        for file in files {
            let header = try DICOMObject(file, headerOnly: true, limits: limits, maximumDatasetBytes: limits.maximumBytes - bytes).header
            frameCount += header.frames.count
            guard frameCount <= limits.maximumFrames else {
                throw .tooLarge("the files hold more than the \(limits.maximumFrames) frames allowed")
            }
            // The largest object parsed at once: its data set, its stored values; then Float32 values.
            let storedBytes = header.frames.count * header.rows * header.columns * header.bytesPerValue
            bytes += header.datasetBytes + storedBytes
            guard bytes <= limits.maximumBytes else {
                throw .tooLarge("the DICOM files and their pixels take more than the \(limits.maximumBytes) bytes allowed")
            }
            headers.append(header)
        }
        try self.init(headers: headers, anyModality: anyModality, limits: limits)
    }

    private init(headers: [DICOMHeader], anyModality: Bool, limits: DICOMLimits) throws(DICOMError) {
        let seriesCount = Set(headers.map(\.seriesUID)).count
        guard seriesCount == 1 else {
            throw .unprocessable("mixed series: the files belong to \(seriesCount) series (Series Instance UID); send one series")
        }
        let first = headers[0]
        if !anyModality, let other = headers.first(where: { $0.modality != "MR" }) {
            throw .unprocessable("Modality is '\(quoted(other.modality))', not MR; the model reads MR images (add force=true to run it anyway)")
        }
        guard headers.allSatisfy({ $0.rows == first.rows && $0.columns == first.columns }) else {
            throw .unprocessable("the frames are not all \(first.rows) × \(first.columns) pixels (Rows, Columns)")
        }
        var frames: [(file: Int, frame: Int, geometry: DICOMFrame)] = []
        for (file, header) in headers.enumerated() {
            for (index, frame) in header.frames.enumerated() { frames.append((file, index, frame)) }
        }
        let reference = frames[0].geometry
        let row = Array(reference.orientation[0..<3]), column = Array(reference.orientation[3..<6])
        guard abs(norm(row) - 1) < 1e-3, abs(norm(column) - 1) < 1e-3, abs(dot(row, column)) < 1e-3 else {
            throw .unprocessable("Image Orientation (Patient) is not two orthogonal unit vectors")
        }
        let normal = cross(row, column)
        for (_, _, frame) in frames {
            guard zip(frame.orientation, reference.orientation).allSatisfy({ abs($0 - $1) <= Self.orientationTolerance }) else {
                throw .unprocessable("the frames do not share one Image Orientation (Patient)")
            }
            guard zip(frame.spacing, reference.spacing).allSatisfy({ abs($0 - $1) <= Self.spacingTolerance }) else {
                throw .unprocessable("the frames do not share one Pixel Spacing")
            }
        }
        frames.sort { dot($0.geometry.position, normal) < dot($1.geometry.position, normal) }
        let distances = frames.map { dot($0.geometry.position, normal) }
        var step = first.sliceStep ?? 1
        if frames.count > 1 {
            let gaps = zip(distances.dropFirst(), distances).map { $0 - $1 }
            guard gaps.allSatisfy({ $0 > Self.spacingTolerance }) else {
                throw .unprocessable("two frames lie at the same position (several echoes, phases or series?); send one volume")
            }
            step = (distances.last! - distances[0]) / Double(gaps.count)
            let tolerance = max(0.01, 0.01 * step)
            guard gaps.allSatisfy({ abs($0 - step) <= tolerance }) else {
                throw .unprocessable("the slices are not uniformly spaced: gaps from \(gaps.min()!) to \(gaps.max()!) mm")
            }
            let span = zip(frames.last!.geometry.position, frames[0].geometry.position).map { $0 - $1 }
            guard norm(cross(span, normal)) <= Self.tiltTolerance * norm(span) else {
                throw .unprocessable("the slices are not stacked along their normal (gantry tilt); resample the series first")
            }
        }
        let voxels = frames.count * first.rows * first.columns
        decodingBytes = headers.map { 2 * $0.datasetBytes + $0.frames.count * first.rows * first.columns * ($0.bytesPerValue + 4) }.max()!
            + voxels * 4
        guard voxels * 4 <= limits.maximumBytes else {
            throw .tooLarge("the volume's \(voxels) voxels take more than the \(limits.maximumBytes) bytes allowed")
        }
        shape = [first.columns, first.rows, frames.count]
        slices = frames.map { ($0.file, $0.frame, $0.geometry.slope, $0.geometry.intercept) }
        // LPS columns: along a row (columns increasing) by the column spacing, down a column by the row
        // spacing, along the normal by the slice step; RAS+ negates the first two world axes.
        let origin = frames[0].geometry.position, spacing = reference.spacing
        let axes = [row.map { $0 * spacing[1] }, column.map { $0 * spacing[0] }, normal.map { $0 * step }]
        affine = Affine(rows3x4: (0..<3).map { world in
            let sign: Double = world < 2 ? -1 : 1
            return [sign * axes[0][world], sign * axes[1][world], sign * axes[2][world], sign * origin[world]]
        })
    }

    /// The volume: every file parsed whole and its pixels decoded (RLE and JPEG lossless decompressed),
    /// rescaled, each frame put at its place along the normal. `files` are those the series was read from.
    public func volume(of files: [[UInt8]], limits: DICOMLimits) throws(DICOMError) -> Volume {
        let area = shape[0] * shape[1]
        var voxels = [Float](repeating: 0, count: area * shape[2])
        var placeOf: [[Int: Int]] = Array(repeating: [:], count: files.count)
        for (index, slice) in slices.enumerated() { placeOf[slice.file][slice.frame] = index }
        for (file, bytes) in files.enumerated() {
            let object = try DICOMObject(bytes, headerOnly: false, limits: limits, maximumDatasetBytes: limits.maximumBytes)
            let stored = try object.storedValues()
            for (frame, place) in placeOf[file] {
                let (slope, intercept) = (slices[place].slope, slices[place].intercept)
                for pixel in 0..<area {
                    voxels[place * area + pixel] = Float(Double(stored[frame * area + pixel]) * slope + intercept)
                }
            }
        }
        return Volume(shape: shape, voxels: voxels)
    }
}

private func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
private func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }
private func cross(_ a: [Double], _ b: [Double]) -> [Double] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
