/// Byte order of multi-byte numbers in a file.
enum ByteOrder: Sendable {
    case little, big
}

/// The element types the readers widen to Float32 (NumPy dtypes and NIfTI datatypes share them).
enum ScalarType: Sendable, Equatable {
    case bool, int8, uint8, int16, uint16, int32, uint32, int64, uint64, float16, float32, float64

    var byteCount: Int {
        switch self {
        case .bool, .int8, .uint8: 1
        case .int16, .uint16, .float16: 2
        case .int32, .uint32, .float32: 4
        case .int64, .uint64, .float64: 8
        }
    }
}

/// NIfTI's `value = scl_slope · stored + scl_inter`, computed in float64 and rounded once to float32
/// (what nibabel does for every stored type).
struct LinearScaling: Sendable, Equatable {
    var slope: Double
    var intercept: Double
}

/// `count` scalars of `type` stored from `offset` in `order`, as Float32: integers and float64 round to
/// the nearest float32, float16 widens exactly, bool becomes 0 or 1. The caller has checked that the
/// bytes are there.
func decodeScalars(_ bytes: [UInt8], offset: Int, count: Int, type: ScalarType, order: ByteOrder,
                   scaling: LinearScaling? = nil) -> [Float] {
    precondition(offset >= 0 && count >= 0 && offset + count * type.byteCount <= bytes.count, "scalars out of range")
    // Exact for every type except (u)int64 beyond 2^53, which numpy also rounds through float64 when scaling.
    let fromDouble: (Double) -> Float = scaling.map { scaling in { Float($0 * scaling.slope + scaling.intercept) } }
        ?? { Float($0) }
    switch type {
    case .bool: return mapScalars(bytes, offset, count, order, UInt8.self) { $0 == 0 ? fromDouble(0) : fromDouble(1) }
    case .int8: return mapScalars(bytes, offset, count, order, Int8.self) { fromDouble(Double($0)) }
    case .uint8: return mapScalars(bytes, offset, count, order, UInt8.self) { fromDouble(Double($0)) }
    case .int16: return mapScalars(bytes, offset, count, order, Int16.self) { fromDouble(Double($0)) }
    case .uint16: return mapScalars(bytes, offset, count, order, UInt16.self) { fromDouble(Double($0)) }
    case .int32: return mapScalars(bytes, offset, count, order, Int32.self) { fromDouble(Double($0)) }
    case .uint32: return mapScalars(bytes, offset, count, order, UInt32.self) { fromDouble(Double($0)) }
    case .int64:
        // Unscaled, a direct conversion rounds once; through Double it could round twice.
        if scaling == nil { return mapScalars(bytes, offset, count, order, Int64.self) { Float($0) } }
        return mapScalars(bytes, offset, count, order, Int64.self) { fromDouble(Double($0)) }
    case .uint64:
        if scaling == nil { return mapScalars(bytes, offset, count, order, UInt64.self) { Float($0) } }
        return mapScalars(bytes, offset, count, order, UInt64.self) { fromDouble(Double($0)) }
    case .float16: return mapScalars(bytes, offset, count, order, UInt16.self) { fromDouble(Double(floatFromHalf($0))) }
    case .float32:
        if scaling == nil { return mapScalars(bytes, offset, count, order, UInt32.self) { Float(bitPattern: $0) } }
        return mapScalars(bytes, offset, count, order, UInt32.self) { fromDouble(Double(Float(bitPattern: $0))) }
    case .float64: return mapScalars(bytes, offset, count, order, UInt64.self) { fromDouble(Double(bitPattern: $0)) }
    }
}

private func mapScalars<Stored: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, _ count: Int, _ order: ByteOrder,
                                                   _: Stored.Type, _ convert: (Stored) -> Float) -> [Float] {
    bytes.withUnsafeBytes { raw in
        [Float](unsafeUninitializedCapacity: count) { out, initialized in
            let stride = MemoryLayout<Stored>.size
            for index in 0..<count {
                let stored = raw.loadUnaligned(fromByteOffset: offset + index * stride, as: Stored.self)
                out[index] = convert(order == .little ? Stored(littleEndian: stored) : Stored(bigEndian: stored))
            }
            initialized = count
        }
    }
}

/// IEEE 754 binary16 → binary32, exact (every half is a float).
func floatFromHalf(_ bits: UInt16) -> Float {
    let sign: Float = bits & 0x8000 == 0 ? 1 : -1
    let exponent = Int(bits >> 10) & 0x1F
    let fraction = UInt32(bits & 0x3FF)
    switch exponent {
    case 0: return sign * Float(fraction) * 0x1p-24                    // zero and subnormals
    case 0x1F: return fraction == 0 ? sign * .infinity : .nan
    default: return Float(bitPattern: UInt32(bits & 0x8000) << 16 | UInt32(exponent - 15 + 127) << 23 | fraction << 13)
    }
}

/// Appends numbers in a chosen byte order (the writers build headers with it).
struct ByteWriter {
    private(set) var bytes: [UInt8] = []
    let order: ByteOrder

    init(order: ByteOrder, capacity: Int = 0) {
        self.order = order
        bytes.reserveCapacity(capacity)
    }

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        let ordered = order == .little ? value.littleEndian : value.bigEndian
        withUnsafeBytes(of: ordered) { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ value: Float) { append(value.bitPattern) }
    mutating func append(_ values: [Float]) {
        // Whole arrays are copied at once where the host's order is the file's (little-endian hosts).
        if order == .little && 1.littleEndian == 1 {
            values.withUnsafeBytes { bytes.append(contentsOf: $0) }
        } else {
            for value in values { append(value.bitPattern) }
        }
    }
    mutating func append(bytes more: some Sequence<UInt8>) { bytes.append(contentsOf: more) }
    mutating func appendZeros(_ count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }
}

/// Reads numbers at byte offsets in a chosen byte order; callers check the length first.
struct ByteReader {
    let bytes: [UInt8]
    let order: ByteOrder

    func integer<T: FixedWidthInteger>(at offset: Int, as _: T.Type = T.self) -> T {
        let stored = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
        return order == .little ? T(littleEndian: stored) : T(bigEndian: stored)
    }

    func float(at offset: Int) -> Float { Float(bitPattern: integer(at: offset)) }

    func floats(at offset: Int, count: Int) -> [Float] { (0..<count).map { float(at: offset + 4 * $0) } }
}

/// The most characters of file text an error message quotes.
let quotedTextLimit = 200

/// File text as an error message may quote it: at most `quotedTextLimit` characters, the rest counted, so
/// that a megabyte header makes a short message (and a short problem response), not a megabyte one.
func quoted(_ text: some StringProtocol) -> String {
    guard text.count > quotedTextLimit else { return String(text) }
    return text.prefix(quotedTextLimit) + "… (\(text.count) characters)"
}
