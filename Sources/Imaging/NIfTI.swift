import ZlibCodec

/// Why a NIfTI file was refused.
public enum NIfTIError: Error, Equatable, CustomStringConvertible {
    /// Fewer bytes than the 348-byte header, or than the voxel data needs.
    case truncated(expected: Int, actual: Int)
    /// `sizeof_hdr` is neither 348 nor 540 in either byte order: not a NIfTI file.
    case badHeaderSize(Int32)
    case nifti2NotSupported
    /// The magic says `.hdr/.img` pair (`ni1`) or something else entirely.
    case badMagic(String)
    case pairNotSupported
    case badDimensions(String)
    case badVoxOffset(Float)
    case unsupportedDataType(code: Int16, name: String)
    case tooLarge(String)
    case badScaling(String)
    case badGeometry(String)
    /// The `.nii.gz` stream could not be inflated.
    case compression(ZlibError)

    public var description: String {
        switch self {
        case .truncated(let expected, let actual): "the NIfTI file is truncated: \(expected) bytes needed, \(actual) present"
        case .badHeaderSize(let size): "not a NIfTI-1 file: sizeof_hdr is \(size), not 348 in either byte order"
        case .nifti2NotSupported: "NIfTI-2 files are not supported: convert to NIfTI-1 (e.g. nibabel's Nifti1Image)"
        case .badMagic(let magic): "not a NIfTI-1 file: the magic is '\(magic)', not 'n+1'"
        case .pairNotSupported: "a .hdr/.img pair cannot be sent as one file: convert it to a single .nii or .nii.gz"
        case .badDimensions(let reason): "the NIfTI dimensions are invalid: \(reason)"
        case .badVoxOffset(let offset): "the NIfTI vox_offset \(offset) is not a usable data offset (a byte count from 0 up to the file size limit)"
        case .unsupportedDataType(let code, let name): "NIfTI datatype \(code) (\(name)) is not supported: send a scalar grayscale image (integers or float32/float64)"
        case .tooLarge(let reason): "the NIfTI image is too large: \(reason)"
        case .badScaling(let reason): "the NIfTI intensity scaling is invalid: \(reason)"
        case .badGeometry(let reason): "the NIfTI geometry is invalid: \(reason)"
        case .compression(let error): "the .nii.gz data cannot be decompressed: \(error)"
        }
    }
}

/// Caps on what a NIfTI reader accepts, checked before memory is spent.
public struct NIfTILimits: Sendable, Equatable {
    /// Voxels in the image. Default 2^26 (512 × 512 × 256), 256 MiB as Float32.
    public var maximumVoxels: Int
    /// Bytes of the `.nii` stream (after gunzip for `.nii.gz`). Default 1 GiB.
    public var maximumBytes: Int

    public init(maximumVoxels: Int = 1 << 26, maximumBytes: Int = 1 << 30) {
        self.maximumVoxels = maximumVoxels
        self.maximumBytes = maximumBytes
    }
}

/// The header fields that place the voxels in the world, kept as stored so that an output can copy
/// them unchanged (a viewer then overlays the output on the input).
public struct NIfTIGeometry: Sendable, Equatable {
    /// `pixdim[0...7]`: qfac, the voxel sizes, then time and unused steps.
    public var pixdim: [Float]
    public var xyztUnits: UInt8
    public var qformCode: Int16
    public var sformCode: Int16
    /// `quatern_b, quatern_c, quatern_d`.
    public var quaternion: [Float]
    /// `qoffset_x, qoffset_y, qoffset_z`.
    public var qoffset: [Float]
    /// `srow_x, srow_y, srow_z`, four entries each.
    public var srow: [[Float]]

    public init(pixdim: [Float], xyztUnits: UInt8, qformCode: Int16, sformCode: Int16, quaternion: [Float],
                qoffset: [Float], srow: [[Float]]) {
        precondition(pixdim.count == 8 && quaternion.count == 3 && qoffset.count == 3, "pixdim has 8 entries, the quaternion and offset 3")
        precondition(srow.count == 3 && srow.allSatisfy { $0.count == 4 }, "srow is 3×4")
        (self.pixdim, self.xyztUnits, self.qformCode, self.sformCode) = (pixdim, xyztUnits, qformCode, sformCode)
        (self.quaternion, self.qoffset, self.srow) = (quaternion, qoffset, srow)
    }

    /// Voxel → world with NIfTI's precedence: the sform when `sform_code > 0`, else the qform when
    /// `qform_code > 0`, else the voxel sizes alone (ANALYZE: `diag(|pixdim[1]|, |pixdim[2]|, |pixdim[3]|)`,
    /// a zero size counting as 1).
    public func affine() throws(NIfTIError) -> Affine {
        if sformCode > 0 { return sformAffine }
        if qformCode > 0 { return try qformAffine() }
        let sizes = voxelSizes
        return .diagonal(sizes[0], sizes[1], sizes[2])
    }

    /// `pixdim[1...3]` as nibabel repairs them on loading: magnitudes, and 1 for a zero.
    private var voxelSizes: [Double] {
        (1...3).map { Double(pixdim[$0] == 0 ? 1 : abs(pixdim[$0])) }
    }

    /// The sform rows, widened to float64.
    public var sformAffine: Affine {
        Affine(rows3x4: srow.map { $0.map(Double.init) })
    }

    /// The qform: rotation from the unit quaternion (b, c, d, with a ≥ 0 completing it), times the voxel
    /// sizes with qfac on the third, plus the offset. Header repairs as nibabel makes them on loading:
    /// a qfac other than ±1 counts as 1, negative voxel sizes as their magnitude, zero ones as 1.
    public func qformAffine() throws(NIfTIError) -> Affine {
        let (b, c, d) = (Double(quaternion[0]), Double(quaternion[1]), Double(quaternion[2]))
        guard b.isFinite, c.isFinite, d.isFinite else { throw .badGeometry("the qform quaternion is not finite") }
        let aSquared = 1 - (b * b + c * c + d * d)
        // Within float32 rounding of zero counts as zero (a half turn); clearly negative is no unit quaternion.
        let tolerance = 3 * Double(Float.ulpOfOne)
        guard aSquared > -tolerance else {
            throw .badGeometry("the qform quaternion (b, c, d) = (\(b), \(c), \(d)) has norm above 1")
        }
        let a = abs(aSquared) < tolerance ? 0 : aSquared.squareRoot()
        let rotation = rotationMatrix(a, b, c, d)
        let qfac: Double = pixdim[0] == -1 ? -1 : 1
        var voxel = voxelSizes
        voxel[2] *= qfac
        let rows = (0..<3).map { row in (0..<3).map { column in rotation[row][column] * voxel[column] } + [Double(qoffset[row])] }
        guard rows.allSatisfy({ $0.allSatisfy(\.isFinite) }) else { throw .badGeometry("the qform is not finite") }
        return Affine(rows3x4: rows)
    }

    /// Geometry for a new image on `affine`: sform and qform both set to it (same code) — the qform as
    /// the nearest rotation (polar decomposition), voxel sizes and qfac, exact for any affine without
    /// shear; the sform as given, rounded to float32. Units: mm and s.
    public init(affine: Affine, code: Int16 = 1) {
        let columns = (0..<3).map { column in (0..<3).map { affine[$0, column] } }
        let sizes = (0..<3).map { affine.columnNorm($0) }
        var qformCode = code
        var quaternion: [Float] = [0, 0, 0]
        var qfac: Float = 1
        if sizes.allSatisfy({ $0 > 0 && $0.isFinite }) {
            var rotation = (0..<3).map { row in (0..<3).map { columns[$0][row] / sizes[$0] } }
            if determinant3(rotation) < 0 {
                qfac = -1
                for row in 0..<3 { rotation[row][2] = -rotation[row][2] }
            }
            if let orthogonal = nearestRotation(rotation) {
                quaternion = quaternionOf(orthogonal).map(Float.init)
            } else {
                qformCode = 0
            }
        } else {
            qformCode = 0
        }
        self.init(pixdim: [qfac] + sizes.map { Float($0.isFinite && $0 > 0 ? $0 : 1) } + [1, 1, 1, 1],
                  xyztUnits: 2 | 8, qformCode: qformCode, sformCode: code, quaternion: quaternion,
                  qoffset: (0..<3).map { Float(affine[$0, 3]) },
                  srow: (0..<3).map { row in (0..<4).map { Float(affine[row, $0]) } })
    }
}

/// A NIfTI-1 image: its voxels (scaled, as Float32), the dimensionality it had, and its geometry.
public struct NIfTIImage: Sendable, Equatable {
    /// The voxels; a 2-D image is a volume of one slice (`nz = 1`).
    public var volume: Volume
    /// 2 or 3: what the header declared (a 4-D file with one time point counts as 3-D).
    public var dimensionCount: Int
    public var geometry: NIfTIGeometry
    /// The stored datatype code (`DT_*`), before scaling.
    public var datatypeCode: Int16
}

/// What a NIfTI-1 header says, before any voxel is read.
public struct NIfTIHeader: Sendable, Equatable {
    /// `[nx, ny, nz]`; a 2-D image has `nz = 1`.
    public let shape: [Int]
    /// 2 or 3, as in `NIfTIImage`.
    public let dimensionCount: Int
    public let datatypeCode: Int16
    public let geometry: NIfTIGeometry
    /// Where the voxels start in the `.nii` stream (after gunzip for `.nii.gz`).
    public let dataOffset: Int
    /// The bytes of the stream up to the last voxel: what decoding keeps of it.
    public let byteCount: Int
    let type: ScalarType
    let order: ByteOrder
    let scaling: LinearScaling?

    public var voxelCount: Int { shape.reduce(1, *) }
}

/// NIfTI-1 single files (`.nii`, and `.nii.gz` recognised by its gzip magic) — reading any scalar
/// datatype, writing float32.
public enum NIfTI {
    static let headerSize = 348
    /// Header plus the 4-byte extension flag: where a writer puts the data.
    static let dataOffset = 352

    /// NIfTI-1 stores each size as an int16: no axis holds more voxels than this.
    public static let maximumAxisSize = Int(Int16.max)

    /// The header of a `.nii` or `.nii.gz` (told apart by the gzip magic), read from its first 348 bytes
    /// — for `.nii.gz` only those are inflated — and checked against `limits`: what decoding will cost
    /// is known before a voxel is read.
    public static func header(_ input: [UInt8], limits: NIfTILimits = NIfTILimits()) throws(NIfTIError) -> NIfTIHeader {
        let bytes: [UInt8]
        if isCompressed(input) {
            do throws(ZlibError) { bytes = try Zlib.decompressedPrefix(input, format: .gzip, count: headerSize) }
            catch { throw .compression(error) }
        } else {
            guard input.count <= limits.maximumBytes else { throw .tooLarge("\(input.count) bytes, more than \(limits.maximumBytes)") }
            bytes = input
        }
        guard bytes.count >= 4 else { throw .truncated(expected: headerSize, actual: bytes.count) }
        let order = try byteOrder(ByteReader(bytes: bytes, order: .little).integer(at: 0, as: Int32.self))
        guard bytes.count >= headerSize else { throw .truncated(expected: headerSize, actual: bytes.count) }
        let header = ByteReader(bytes: bytes, order: order)

        let magic = Array(bytes[344..<348])
        if magic == Array("ni1\0".utf8) { throw .pairNotSupported }
        guard magic == Array("n+1\0".utf8) else {
            throw .badMagic(String(decoding: magic.prefix { $0 != 0 }, as: UTF8.self))
        }

        let dim = (0..<8).map { Int(header.integer(at: 40 + 2 * $0, as: Int16.self)) }
        let (shape, dimensionCount) = try spatialShape(dim)
        let voxelCount = try checkedVoxelCount(shape, limit: limits.maximumVoxels)

        let datatypeCode = header.integer(at: 70, as: Int16.self)
        let type = try scalarType(datatypeCode)

        // NIfTI-1: a single file's data starts at vox_offset, at least 352 (smaller values mean 352). The
        // float becomes an Int only when it is one: Int(exactly:) is nil for NaN, ±∞ and ±1e20 alike.
        let voxOffset = header.float(at: 108)
        guard voxOffset >= 0, let offset = Int(exactly: voxOffset.rounded(.down)), offset <= limits.maximumBytes else {
            throw .badVoxOffset(voxOffset)
        }
        let dataStart = max(offset, dataOffset)
        // At most (2^15)^3 voxels of 8 bytes after an offset within the byte limit: no overflow.
        let byteCount = dataStart + voxelCount * type.byteCount
        guard byteCount <= limits.maximumBytes else {
            throw .tooLarge("the header asks for \(byteCount) bytes, more than \(limits.maximumBytes)")
        }
        let geometry = NIfTIGeometry(
            pixdim: header.floats(at: 76, count: 8), xyztUnits: bytes[123],
            qformCode: header.integer(at: 252, as: Int16.self), sformCode: header.integer(at: 254, as: Int16.self),
            quaternion: header.floats(at: 256, count: 3), qoffset: header.floats(at: 268, count: 3),
            srow: (0..<3).map { header.floats(at: 280 + 16 * $0, count: 4) })
        return NIfTIHeader(shape: shape, dimensionCount: dimensionCount, datatypeCode: datatypeCode, geometry: geometry,
                           dataOffset: dataStart, byteCount: byteCount, type: type, order: order,
                           scaling: try scaling(slope: header.float(at: 112), intercept: header.float(at: 116)))
    }

    /// The image of a `.nii` or `.nii.gz`. Of a `.nii.gz`, the bytes the header says the image needs are
    /// kept; the rest of the stream is inflated only to check it (its CRC-32, and `maximumBytes` in all).
    public static func decode(_ input: [UInt8], limits: NIfTILimits = NIfTILimits()) throws(NIfTIError) -> NIfTIImage {
        let header = try header(input, limits: limits)
        let bytes: [UInt8]
        if isCompressed(input) {
            do throws(ZlibError) {
                bytes = try Zlib.decompress(input, format: .gzip, maximumOutputBytes: limits.maximumBytes, keepingFirst: header.byteCount)
            }
            catch .outputLimitExceeded { throw .tooLarge("it decompresses to more than \(limits.maximumBytes) bytes") }
            catch { throw .compression(error) }
        } else {
            bytes = input
        }
        guard bytes.count >= header.byteCount else { throw .truncated(expected: header.byteCount, actual: bytes.count) }
        let voxels = decodeScalars(bytes, offset: header.dataOffset, count: header.voxelCount, type: header.type,
                                   order: header.order, scaling: header.scaling)
        return NIfTIImage(volume: Volume(shape: header.shape, voxels: voxels), dimensionCount: header.dimensionCount,
                          geometry: header.geometry, datatypeCode: header.datatypeCode)
    }

    /// `.nii.gz` is told by gzip's magic bytes, never by a name.
    private static func isCompressed(_ input: [UInt8]) -> Bool { input.starts(with: [0x1F, 0x8B]) }

    /// A little-endian float32 `.nii` (gzip-compressed unless `compressed` is false) of `volume` with
    /// `geometry` copied into the header. `dimensionCount` 2 writes a one-slice volume as a 2-D image.
    public static func encode(_ volume: Volume, geometry: NIfTIGeometry, dimensionCount: Int = 3,
                              description: String = "", compressed: Bool = true) throws -> [UInt8] {
        precondition(dimensionCount == 3 || (dimensionCount == 2 && volume.shape[2] == 1), "a 2-D image has one slice")
        guard volume.shape.allSatisfy({ $0 <= maximumAxisSize }) else {
            throw NIfTIError.tooLarge("NIfTI-1 sizes stop at \(maximumAxisSize) voxels per axis, got \(volume.shape)")
        }
        var writer = ByteWriter(order: .little, capacity: dataOffset + 4 * volume.voxels.count)
        writer.append(Int32(headerSize))
        writer.appendZeros(10 + 18 + 4 + 2)                    // data_type, db_name, extents, session_error
        writer.append(UInt8(ascii: "r"))                       // regular
        writer.append(UInt8(0))                                // dim_info
        let dim = [dimensionCount] + volume.shape.prefix(dimensionCount) + repeatElement(1, count: 7 - dimensionCount)
        for size in dim { writer.append(Int16(size)) }
        writer.appendZeros(12 + 2)                             // intent_p1...p3, intent_code
        writer.append(Int16(16))                               // datatype: FLOAT32
        writer.append(Int16(32))                               // bitpix
        writer.append(Int16(0))                                // slice_start
        writer.append(geometry.pixdim)
        writer.append(Float(dataOffset))                       // vox_offset
        writer.append(Float(1))                                // scl_slope
        writer.append(Float(0))                                // scl_inter
        writer.append(Int16(0))                                // slice_end
        writer.append(UInt8(0))                                // slice_code
        writer.append(geometry.xyztUnits)
        writer.appendZeros(4 * 4 + 2 * 4)                      // cal_max, cal_min, slice_duration, toffset, glmax, glmin
        let descrip = Array(description.utf8.prefix(79))
        writer.append(bytes: descrip)
        writer.appendZeros(80 - descrip.count + 24)            // descrip's padding, aux_file
        writer.append(geometry.qformCode)
        writer.append(geometry.sformCode)
        writer.append(geometry.quaternion)
        writer.append(geometry.qoffset)
        for row in geometry.srow { writer.append(row) }
        writer.appendZeros(16)                                 // intent_name
        writer.append(bytes: Array("n+1\0".utf8))
        writer.appendZeros(4)                                  // no extensions
        writer.append(volume.voxels)
        return compressed ? try Zlib.compress(writer.bytes, format: .gzip) : writer.bytes
    }

    private static func byteOrder(_ sizeofHdr: Int32) throws(NIfTIError) -> ByteOrder {
        switch sizeofHdr {
        case 348: return .little
        case Int32(348).byteSwapped: return .big
        case 540, Int32(540).byteSwapped: throw .nifti2NotSupported
        default: throw .badHeaderSize(sizeofHdr)
        }
    }

    /// `[nx, ny, nz]` from `dim[]`: 2-D images get `nz = 1`; dimensions past the third must be 1 (one
    /// volume of a time series is accepted, several are not).
    private static func spatialShape(_ dim: [Int]) throws(NIfTIError) -> ([Int], Int) {
        let count = dim[0]
        guard (1...7).contains(count) else { throw .badDimensions("dim[0] is \(count), not 1…7") }
        guard count >= 2 else { throw .badDimensions("a 1-D image (dim[0] = 1) is not an image") }
        for axis in 1...count where dim[axis] <= 0 {
            throw .badDimensions("dim[\(axis)] is \(dim[axis]); every size must be at least 1")
        }
        if count >= 4, let extra = (4...count).first(where: { dim[$0] != 1 }) {
            throw .badDimensions(extra == 4
                ? "the file holds \(dim[4]) volumes (dim[4]); send a single 3-D volume"
                : "dim[\(extra)] is \(dim[extra]); only 2-D images and 3-D volumes are accepted")
        }
        return count == 2 ? ([dim[1], dim[2], 1], 2) : ([dim[1], dim[2], dim[3]], 3)
    }

    private static func checkedVoxelCount(_ shape: [Int], limit: Int) throws(NIfTIError) -> Int {
        let count = shape.reduce(1, *)      // at most (2^15)^3: no overflow
        guard count <= limit else { throw .tooLarge("\(shape.map(String.init).joined(separator: " × ")) = \(count) voxels, more than \(limit)") }
        return count
    }

    private static func scalarType(_ code: Int16) throws(NIfTIError) -> ScalarType {
        switch code {
        case 2: return .uint8
        case 4: return .int16
        case 8: return .int32
        case 16: return .float32
        case 64: return .float64
        case 256: return .int8
        case 512: return .uint16
        case 768: return .uint32
        case 1024: return .int64
        case 1280: return .uint64
        default:
            let names: [Int16: String] = [0: "unknown", 1: "binary", 32: "complex64", 128: "RGB24", 1536: "float128",
                                          1792: "complex128", 2048: "complex256", 2304: "RGBA32"]
            throw .unsupportedDataType(code: code, name: names[code] ?? "not a NIfTI-1 datatype")
        }
    }

    /// nibabel's rule: a zero or non-finite slope means no scaling; with a valid slope the intercept must
    /// be finite; (1, 0) is the identity and skipped.
    private static func scaling(slope: Float, intercept: Float) throws(NIfTIError) -> LinearScaling? {
        guard slope != 0, slope.isFinite else { return nil }
        guard intercept.isFinite else { throw .badScaling("scl_slope is \(slope) but scl_inter is \(intercept)") }
        return slope == 1 && intercept == 0 ? nil : LinearScaling(slope: Double(slope), intercept: Double(intercept))
    }
}

// MARK: - Rotations and quaternions (float64)

/// Rotation matrix of the quaternion (a, b, c, d), normalised by its squared norm as nibabel's
/// quat2mat does, so a quaternion a little off unit length still gives a rotation.
private func rotationMatrix(_ a: Double, _ b: Double, _ c: Double, _ d: Double) -> [[Double]] {
    let norm = a * a + b * b + c * c + d * d
    guard norm >= Double.ulpOfOne else { return [[1, 0, 0], [0, 1, 0], [0, 0, 1]] }
    let s = 2 / norm
    let (bs, cs, ds) = (b * s, c * s, d * s)
    let (ab, ac, ad) = (a * bs, a * cs, a * ds)
    let (bb, bc, bd) = (b * bs, b * cs, b * ds)
    let (cc, cd, dd) = (c * cs, c * ds, d * ds)
    return [[1 - (cc + dd), bc - ad, bd + ac],
            [bc + ad, 1 - (bb + dd), cd - ab],
            [bd - ac, cd + ab, 1 - (bb + cc)]]
}

/// (b, c, d) of the unit quaternion with a ≥ 0 for a proper rotation (Shepperd's method: divide by the
/// largest of the four, so no division by a small number).
private func quaternionOf(_ r: [[Double]]) -> [Double] {
    let trace = r[0][0] + r[1][1] + r[2][2]
    var (a, b, c, d): (Double, Double, Double, Double)
    if trace > -0.5 {
        a = 0.5 * (1 + trace).squareRoot()
        (b, c, d) = (0.25 * (r[2][1] - r[1][2]) / a, 0.25 * (r[0][2] - r[2][0]) / a, 0.25 * (r[1][0] - r[0][1]) / a)
    } else if r[0][0] >= r[1][1] && r[0][0] >= r[2][2] {
        b = 0.5 * (1 + r[0][0] - r[1][1] - r[2][2]).squareRoot()
        (a, c, d) = (0.25 * (r[2][1] - r[1][2]) / b, 0.25 * (r[0][1] + r[1][0]) / b, 0.25 * (r[0][2] + r[2][0]) / b)
    } else if r[1][1] >= r[2][2] {
        c = 0.5 * (1 + r[1][1] - r[0][0] - r[2][2]).squareRoot()
        (a, b, d) = (0.25 * (r[0][2] - r[2][0]) / c, 0.25 * (r[0][1] + r[1][0]) / c, 0.25 * (r[1][2] + r[2][1]) / c)
    } else {
        d = 0.5 * (1 + r[2][2] - r[0][0] - r[1][1]).squareRoot()
        (a, b, c) = (0.25 * (r[1][0] - r[0][1]) / d, 0.25 * (r[0][2] + r[2][0]) / d, 0.25 * (r[1][2] + r[2][1]) / d)
    }
    return a < 0 ? [-b, -c, -d] : [b, c, d]
}

private func determinant3(_ m: [[Double]]) -> Double {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// The rotation closest to `m` (its polar factor), by the iteration Q ← (Q + Q⁻ᵀ) / 2, which converges
/// quadratically for a matrix with positive determinant; nil for a singular one.
private func nearestRotation(_ m: [[Double]]) -> [[Double]]? {
    var q = m
    for _ in 0..<50 {
        let det = determinant3(q)
        guard det > 0, det.isFinite else { return nil }
        // Q⁻ᵀ = cofactor(Q) / det.
        let cofactor = (0..<3).map { row in
            (0..<3).map { column -> Double in
                let (r1, r2) = ((row + 1) % 3, (row + 2) % 3)
                let (c1, c2) = ((column + 1) % 3, (column + 2) % 3)
                return q[r1][c1] * q[r2][c2] - q[r1][c2] * q[r2][c1]
            }
        }
        let next = (0..<3).map { row in (0..<3).map { column in (q[row][column] + cofactor[row][column] / det) / 2 } }
        let change = zip(next, q).map { zip($0, $1).map { abs($0 - $1) }.max() ?? 0 }.max() ?? 0
        q = next
        if change < 1e-15 { break }
    }
    return q
}
