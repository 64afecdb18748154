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
    /// Bytes the series holds and its decoding adds: every object's data set (DCMTK's copy, held until
    /// its pixels are taken); for the object that costs most, what parsing it held for a while (a deflated
    /// data set's stored and inflated bytes) or what taking its pixels holds (long elements loaded from
    /// its data set, its stored and Float32 values); and the volume's Float32 values.
    public let decodingBytes: Int
    /// The files, each parsed once (`DICOMSeriesReader`); their pixels are taken by `volume()`.
    private let objects: [DICOMObject]
    /// The frames in slice order: which object, which of its frames, and its rescale.
    private let slices: [(object: Int, frame: Int, slope: Double, intercept: Double)]
    /// What objects derived from the series are filed and placed with.
    public let source: DICOMSource

    static let orientationTolerance = 1e-4
    static let spacingTolerance = 1e-4
    static let tiltTolerance = 1e-3

    /// The series of `objects` (at least one, each within `limits`): refused when it is not one MR series
    /// (unless `anyModality`) or not a regular stack, or when its volume is over `limits`.
    fileprivate init(objects: [DICOMObject], anyModality: Bool, limits: DICOMLimits) throws(DICOMError) {
        let headers = objects.map(\.header)
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
        var frames: [(object: Int, frame: Int, geometry: DICOMFrame)] = []
        for (object, header) in headers.enumerated() {
            for (index, frame) in header.frames.enumerated() { frames.append((object, index, frame)) }
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
        let largestObjectBytes = headers.map { header in
            max(header.inflatingBytes, header.datasetBytes + header.storedBytes + header.frames.count * first.rows * first.columns * 4)
        }.max()!
        decodingBytes = headers.reduce(0) { $0 + $1.datasetBytes } + largestObjectBytes + voxels * 4
        guard voxels * 4 <= limits.maximumBytes else {
            throw .tooLarge("the volume's \(voxels) voxels take more than the \(limits.maximumBytes) bytes allowed")
        }
        shape = [first.columns, first.rows, frames.count]
        self.objects = objects
        slices = frames.map { ($0.object, $0.frame, $0.geometry.slope, $0.geometry.intercept) }
        // LPS columns: along a row (columns increasing) by the column spacing, down a column by the row
        // spacing, along the normal by the slice step; RAS+ negates the first two world axes.
        let origin = frames[0].geometry.position, spacing = reference.spacing
        let axes = [row.map { $0 * spacing[1] }, column.map { $0 * spacing[0] }, normal.map { $0 * step }]
        source = DICOMSource(
            study: try objects[0].study(), seriesUID: first.seriesUID, rows: first.rows, columns: first.columns,
            positions: frames.map(\.geometry.position), orientation: reference.orientation, spacing: spacing, sliceSpacing: step,
            frames: frames.map { frame in
                let header = headers[frame.object]
                return DICOMSource.Frame(sopClassUID: header.sopClassUID, sopInstanceUID: header.sopInstanceUID,
                                         number: header.frames.count > 1 ? frame.frame + 1 : 0)
            })
        affine = Affine(rows3x4: (0..<3).map { world in
            let sign: Double = world < 2 ? -1 : 1
            return [sign * axes[0][world], sign * axes[1][world], sign * axes[2][world], sign * origin[world]]
        })
    }

    /// The volume: each object's pixels taken in turn (RLE and JPEG lossless decompressed), rescaled, each
    /// frame put at its place along the normal. Called once: the objects are freed as their pixels are taken.
    public func volume() throws(DICOMError) -> Volume {
        let area = shape[0] * shape[1]
        var voxels = [Float](repeating: 0, count: area * shape[2])
        var placeOf: [[Int: Int]] = Array(repeating: [:], count: objects.count)
        for (index, slice) in slices.enumerated() { placeOf[slice.object][slice.frame] = index }
        for (index, object) in objects.enumerated() {
            let stored = try object.takeStoredValues()
            for (frame, place) in placeOf[index] {
                let (slope, intercept) = (slices[place].slope, slices[place].intercept)
                for pixel in 0..<area {
                    voxels[place * area + pixel] = Float(Double(stored[frame * area + pixel]) * slope + intercept)
                }
            }
        }
        return Volume(shape: shape, voxels: voxels)
    }
}

/// Reads a DICOM series one file at a time — each parsed once, its sizes checked against the limits
/// before what they size is allocated — and then assembles it (`series(anyModality:)`).
public struct DICOMSeriesReader {
    private let limits: DICOMLimits
    private var objects: [DICOMObject] = []
    private var frameCount = 0
    /// The data sets and stored pixels of the files read so far: at most `limits.maximumBytes`.
    private var bytes = 0

    public init(limits: DICOMLimits) {
        self.limits = limits
    }

    /// Parses one Part 10 file.
    public mutating func read(_ file: ArraySlice<UInt8>) throws(DICOMError) {
        guard objects.count < limits.maximumFiles else {
            throw .tooManyFiles("more than the \(limits.maximumFiles) DICOM files allowed")
        }
        let object = try DICOMObject(file, limits: limits, maximumDatasetBytes: limits.maximumBytes - bytes)
        frameCount += object.header.frames.count
        guard frameCount <= limits.maximumFrames else {
            throw .tooManyFrames("the files hold more than the \(limits.maximumFrames) frames allowed")
        }
        // Its data set stays parsed until its pixels, stored values, are taken.
        bytes += object.header.datasetBytes + object.header.storedBytes
        guard bytes <= limits.maximumBytes else {
            throw .tooLarge("the DICOM files and their pixels take more than the \(limits.maximumBytes) bytes allowed")
        }
        objects.append(object)
    }

    /// The series of the files read: refused when it is not one MR series (unless `anyModality`) or not
    /// a regular stack, or when its volume is over the limits.
    public func series(anyModality: Bool) throws(DICOMError) -> DICOMSeries {
        guard !objects.isEmpty else { throw .malformed("no DICOM file") }
        return try DICOMSeries(objects: objects, anyModality: anyModality, limits: limits)
    }
}

private func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
private func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }
private func cross(_ a: [Double], _ b: [Double]) -> [Double] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
