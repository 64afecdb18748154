/// Why a `.npy` file was refused.
public enum NPYError: Error, Equatable, CustomStringConvertible {
    case badMagic
    case unsupportedVersion(major: UInt8, minor: UInt8)
    /// The file ends inside the preamble or the header.
    case truncatedHeader
    /// The header is not the dict literal NumPy writes; the text says what is wrong.
    case badHeader(String)
    /// A dtype that is not a plain number: complex, object (pickles), strings, structured, datetime.
    case unsupportedDType(String)
    case tooManyElements(count: Int, limit: Int)
    /// Fewer data bytes than the shape needs.
    case truncatedData(expected: Int, actual: Int)
    /// More data bytes than the shape needs.
    case sizeMismatch(expected: Int, actual: Int)

    public var description: String {
        switch self {
        case .badMagic: "not a NumPy .npy file (it does not start with \\x93NUMPY)"
        case .unsupportedVersion(let major, let minor): ".npy format version \(major).\(minor) is not supported (1.0, 2.0 and 3.0 are)"
        case .truncatedHeader: "the .npy file ends inside its header"
        case .badHeader(let reason): "the .npy header is invalid: \(reason)"
        case .unsupportedDType(let descr): "the .npy dtype '\(descr)' is not supported: send booleans, integers or floats (f2, f4, f8)"
        case .tooManyElements(let count, let limit): "the array has \(count) elements, more than the limit of \(limit)"
        case .truncatedData(let expected, let actual): "the .npy data is truncated: the shape needs \(expected) bytes, the file has \(actual)"
        case .sizeMismatch(let expected, let actual): "the .npy data does not match its shape: the shape needs \(expected) bytes, the file has \(actual)"
        }
    }
}

/// A NumPy array read as Float32, in C order (last index fastest) whatever the file's order.
public struct NPYArray: Sendable, Equatable {
    /// NumPy's shape; `[]` is a scalar.
    public let shape: [Int]
    public let values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 } && shape.reduce(1, *) == values.count,
                     "shape \(shape) does not hold \(values.count) values")
        self.shape = shape
        self.values = values
    }

    /// A 3-D array `a[i, j, k]` as the volume with the same indexing (NumPy's C order → NIfTI's order).
    public func volume() -> Volume? {
        guard shape.count == 3, shape.allSatisfy({ $0 > 0 }) else { return nil }
        let (ni, nj, nk) = (shape[0], shape[1], shape[2])
        var volume = Volume(zeros: shape)
        for i in 0..<ni { for j in 0..<nj { for k in 0..<nk { volume[i, j, k] = values[(i * nj + j) * nk + k] } } }
        return volume
    }

    /// A 2-D array `a[row, column]` as an image.
    public func image() -> GrayImage? {
        guard shape.count == 2, shape.allSatisfy({ $0 > 0 }) else { return nil }
        return GrayImage(width: shape[1], height: shape[0], pixels: values)
    }
}

/// What a `.npy` header says, before any element is read.
public struct NPYHeader: Sendable, Equatable {
    /// NumPy's shape; `[]` is a scalar.
    public let shape: [Int]
    public let fortranOrder: Bool
    /// The product of the shape, within the limit it was read with.
    public let elementCount: Int
    /// Where the elements start, and how many bytes they take.
    public let dataOffset: Int
    public let dataBytes: Int
    let type: ScalarType
    let order: ByteOrder
}

/// NumPy's `.npy` format (numpy.lib.format): a magic string, a version, a Python dict literal describing
/// dtype, order and shape, then the raw elements.
public enum NPY {
    /// np.load's default refuses nothing by size; a service must. 2^28 elements = 1 GiB of Float32.
    public static let defaultMaximumElements = 1 << 28

    private static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    /// The header of a `.npy`, read from its first bytes (the data may be absent): shape, dtype and order,
    /// the element count checked against `maximumElements` before anything is allocated for it.
    public static func header(_ bytes: [UInt8], maximumElements: Int = defaultMaximumElements) throws(NPYError) -> NPYHeader {
        guard !bytes.isEmpty, bytes.starts(with: magic.prefix(bytes.count)) || bytes.starts(with: magic) else { throw .badMagic }
        guard bytes.count >= 8 else { throw .truncatedHeader }
        let (major, minor) = (bytes[6], bytes[7])
        let lengthFieldSize: Int
        switch (major, minor) {
        case (1, 0): lengthFieldSize = 2
        case (2, 0), (3, 0): lengthFieldSize = 4
        default: throw .unsupportedVersion(major: major, minor: minor)
        }
        guard bytes.count >= 8 + lengthFieldSize else { throw .truncatedHeader }
        let reader = ByteReader(bytes: bytes, order: .little)
        let headerLength = lengthFieldSize == 2 ? Int(reader.integer(at: 8, as: UInt16.self))
                                                : Int(reader.integer(at: 8, as: UInt32.self))
        let headerStart = 8 + lengthFieldSize
        guard bytes.count >= headerStart + headerLength else { throw .truncatedHeader }
        // v1/v2 headers are latin-1, v3 UTF-8; every key and value we accept is ASCII either way.
        let dictionary = try HeaderDictionary.parse(bytes[headerStart ..< headerStart + headerLength])
        let elementCount = try checkedElementCount(dictionary.shape, limit: maximumElements)
        let (dataBytes, overflow) = elementCount.multipliedReportingOverflow(by: dictionary.type.byteCount)
        guard !overflow else { throw .tooManyElements(count: elementCount, limit: maximumElements) }
        return NPYHeader(shape: dictionary.shape, fortranOrder: dictionary.fortranOrder, elementCount: elementCount,
                         dataOffset: headerStart + headerLength, dataBytes: dataBytes,
                         type: dictionary.type, order: dictionary.order)
    }

    public static func decode(_ bytes: [UInt8], maximumElements: Int = defaultMaximumElements) throws(NPYError) -> NPYArray {
        let header = try header(bytes, maximumElements: maximumElements)
        let actual = bytes.count - header.dataOffset
        if actual < header.dataBytes { throw .truncatedData(expected: header.dataBytes, actual: actual) }
        if actual > header.dataBytes { throw .sizeMismatch(expected: header.dataBytes, actual: actual) }
        let stored = decodeScalars(bytes, offset: header.dataOffset, count: header.elementCount, type: header.type, order: header.order)
        let values = header.fortranOrder ? reversedAxisOrder(stored, fileShape: header.shape) : stored
        return NPYArray(shape: header.shape, values: values)
    }

    /// `values` in `shape` as a little-endian float32 (`<f4`) `.npy`, C order.
    public static func encode(shape: [Int], float32 values: [Float]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        var writer = ByteWriter(order: .little, capacity: 128 + 4 * values.count)
        writer.append(bytes: preamble(descr: "<f4", fortranOrder: false, shape: shape))
        writer.append(values)
        return writer.bytes
    }

    /// `values` in `shape` as little-endian int32 (`<i4`), C order.
    public static func encode(shape: [Int], int32 values: [Int32]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        var writer = ByteWriter(order: .little, capacity: 128 + 4 * values.count)
        writer.append(bytes: preamble(descr: "<i4", fortranOrder: false, shape: shape))
        for value in values { writer.append(value) }
        return writer.bytes
    }

    /// `values` in `shape` as bytes (`|u1`), C order — masks and 8-bit images.
    public static func encode(shape: [Int], uint8 values: [UInt8]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        return preamble(descr: "|u1", fortranOrder: false, shape: shape) + values
    }

    /// A volume as a `<f4` array `a[i, j, k]` (shape `[nx, ny, nz]`). Its voxel order is NumPy's Fortran
    /// order, so the voxels are written as they are, with `fortran_order: True`.
    public static func encode(_ volume: Volume) -> [UInt8] {
        var writer = ByteWriter(order: .little, capacity: 128 + 4 * volume.voxels.count)
        writer.append(bytes: preamble(descr: "<f4", fortranOrder: true, shape: volume.shape))
        writer.append(volume.voxels)
        return writer.bytes
    }

    /// Magic, version 1.0, header length and the dict, space-padded and ended by a newline so that the
    /// data starts at a multiple of 64 bytes, as np.save writes it.
    private static func preamble(descr: String, fortranOrder: Bool, shape: [Int]) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = Array("{'descr': '\(descr)', 'fortran_order': \(fortranOrder ? "True" : "False"), 'shape': \(shapeText), }".utf8)
        let unpadded = magic.count + 2 + 2 + dict.count + 1
        dict += repeatElement(UInt8(ascii: " "), count: (64 - unpadded % 64) % 64) + [UInt8(ascii: "\n")]
        precondition(dict.count <= Int(UInt16.max), "a header this long needs format 2.0")
        return magic + [1, 0, UInt8(dict.count & 0xFF), UInt8(dict.count >> 8)] + dict
    }

    private static func checkedElementCount(_ shape: [Int], limit: Int) throws(NPYError) -> Int {
        var count = 1
        for size in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow, product <= limit else { throw .tooManyElements(count: overflow ? .max : product, limit: limit) }
            count = product
        }
        return count
    }

    /// Fortran-order elements (first index fastest) rearranged into C order.
    private static func reversedAxisOrder(_ stored: [Float], fileShape shape: [Int]) -> [Float] {
        guard shape.count > 1, !stored.isEmpty else { return stored }
        // Stride of each axis in the Fortran-ordered storage.
        var fortranStrides = [Int](repeating: 1, count: shape.count)
        for axis in 1..<shape.count { fortranStrides[axis] = fortranStrides[axis - 1] * shape[axis - 1] }
        var values = [Float](repeating: 0, count: stored.count)
        var index = [Int](repeating: 0, count: shape.count)
        for position in 0..<values.count {     // C order: walk the last axis fastest
            var source = 0
            for axis in 0..<shape.count { source += index[axis] * fortranStrides[axis] }
            values[position] = stored[source]
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < shape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return values
    }
}

/// The header dict `{'descr': '<f4', 'fortran_order': False, 'shape': (160, 160), }`, parsed as the
/// literal it is (never evaluated). Exactly the three keys, in any order, as numpy requires.
private struct HeaderDictionary {
    var type: ScalarType
    var order: ByteOrder
    var fortranOrder: Bool
    var shape: [Int]

    private enum Value {
        case string(String)
        case bool(Bool)
        case tuple([Int])
        case list
    }

    static func parse(_ text: ArraySlice<UInt8>) throws(NPYError) -> HeaderDictionary {
        var scanner = Scanner(bytes: Array(text))
        var entries: [String: Value] = [:]
        try scanner.expect("{")
        while true {
            scanner.skipSpaces()
            if scanner.consume("}") { break }
            guard case .string(let key) = try scanner.value() else { throw .badHeader("a key is not a string") }
            try scanner.expect(":")
            guard entries.updateValue(try scanner.value(), forKey: key) == nil else { throw .badHeader("key '\(quoted(key))' appears twice") }
            scanner.skipSpaces()
            if scanner.consume("}") { break }
            try scanner.expect(",")
        }
        scanner.skipSpaces()
        guard scanner.atEnd else { throw .badHeader("text after the closing brace") }
        guard Set(entries.keys) == ["descr", "fortran_order", "shape"] else {
            throw .badHeader("expected the keys 'descr', 'fortran_order' and 'shape', found " + quoted("\(entries.keys.sorted())"))
        }
        guard case .bool(let fortranOrder) = entries["fortran_order"] else { throw .badHeader("'fortran_order' is not True or False") }
        guard case .tuple(let shape) = entries["shape"] else { throw .badHeader("'shape' is not a tuple of integers") }
        switch entries["descr"] {
        case .string(let descr):
            let (type, order) = try dtype(descr)
            return HeaderDictionary(type: type, order: order, fortranOrder: fortranOrder, shape: shape)
        case .list: throw .unsupportedDType("structured (a list of fields)")
        default: throw .badHeader("'descr' is not a string")
        }
    }

    /// A dtype string: an optional byte-order character, a kind and a size, e.g. `<f4`, `|u1`, `>i2`.
    private static func dtype(_ descr: String) throws(NPYError) -> (ScalarType, ByteOrder) {
        var rest = Substring(descr)
        var order = ByteOrder.little            // '=' (native) is little-endian on every platform we run on
        if let first = rest.first, "<>|=".contains(first) {
            if first == ">" { order = .big }
            rest = rest.dropFirst()
        }
        let type: ScalarType? = switch rest {
        case "b1": .bool
        case "i1": .int8
        case "u1": .uint8
        case "i2": .int16
        case "u2": .uint16
        case "i4": .int32
        case "u4": .uint32
        case "i8": .int64
        case "u8": .uint64
        case "f2": .float16
        case "f4": .float32
        case "f8": .float64
        default: nil
        }
        guard let type else { throw .unsupportedDType(quoted(descr)) }
        return (type, order)
    }

    /// Just enough of Python's literal syntax for the header: quoted strings, True/False, tuples of
    /// integers (Python 2 writers appended `L` to longs), and lists (only to recognise structured dtypes).
    private struct Scanner {
        let bytes: [UInt8]
        var position = 0

        var atEnd: Bool { position == bytes.count }

        mutating func skipSpaces() {
            while position < bytes.count, [UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\t"), UInt8(ascii: "\r")].contains(bytes[position]) {
                position += 1
            }
        }

        mutating func consume(_ character: Unicode.Scalar) -> Bool {
            skipSpaces()
            guard position < bytes.count, bytes[position] == UInt8(ascii: character) else { return false }
            position += 1
            return true
        }

        mutating func expect(_ character: Unicode.Scalar) throws(NPYError) {
            guard consume(character) else {
                throw .badHeader(atEnd ? "it ends early" : "expected '\(character)' at byte \(position)")
            }
        }

        mutating func value() throws(NPYError) -> Value {
            skipSpaces()
            guard position < bytes.count else { throw .badHeader("it ends early") }
            let first = bytes[position]
            if first == UInt8(ascii: "'") || first == UInt8(ascii: "\"") {
                position += 1
                guard let end = bytes[position...].firstIndex(of: first) else { throw .badHeader("unterminated string") }
                defer { position = end + 1 }
                return .string(String(decoding: bytes[position..<end], as: UTF8.self))
            }
            if consumeWord("True") { return .bool(true) }
            if consumeWord("False") { return .bool(false) }
            if consume("(") { return .tuple(try integers(closing: ")")) }
            if consume("[") {
                try skipBalanced(opening: UInt8(ascii: "["), closing: UInt8(ascii: "]"))
                return .list
            }
            throw .badHeader("unexpected character at byte \(position)")
        }

        private mutating func consumeWord(_ word: String) -> Bool {
            let utf8 = Array(word.utf8)
            guard bytes[position...].starts(with: utf8) else { return false }
            position += utf8.count
            return true
        }

        /// `1, 2, 3)` or `5,)` or `)`.
        private mutating func integers(closing: Unicode.Scalar) throws(NPYError) -> [Int] {
            var values: [Int] = []
            while true {
                if consume(closing) { return values }
                skipSpaces()
                let start = position
                while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) { position += 1 }
                guard position > start, let value = Int(String(decoding: bytes[start..<position], as: UTF8.self)) else {
                    throw .badHeader("'shape' holds something other than non-negative integers")
                }
                if position < bytes.count, bytes[position] == UInt8(ascii: "L") { position += 1 }
                values.append(value)
                if consume(closing) { return values }
                try expect(",")
            }
        }

        private mutating func skipBalanced(opening: UInt8, closing: UInt8) throws(NPYError) {
            var depth = 1
            while position < bytes.count, depth > 0 {
                if bytes[position] == opening { depth += 1 } else if bytes[position] == closing { depth -= 1 }
                position += 1
            }
            guard depth == 0 else { throw .badHeader("unterminated list") }
        }
    }
}
