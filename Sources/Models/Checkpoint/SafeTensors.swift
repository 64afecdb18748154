import JSON
import Kernels

/// A safetensors container (docs/checkpoint-format.md §4) checked byte by byte: every entry F32 with a
/// consistent shape and span, the spans tiling the data buffer exactly. It reads from memory it does
/// not own (a mapped file), so it must not outlive that memory.
struct SafeTensorsContainer {
    struct Entry {
        let name: String
        let shape: [Int]
        /// Byte range relative to the start of the data buffer.
        let span: Range<Int>
    }

    /// Why a container is refused: the text of §4's table, and the tensor concerned when there is one.
    struct Problem: Error {
        var tensor: String? = nil
        let message: String
    }

    /// Entries in header order (`__metadata__` excluded).
    let entries: [Entry]
    private let data: UnsafeRawBufferPointer

    init(bytes: UnsafeRawBufferPointer) throws(Problem) {
        guard bytes.count >= 8 else {
            throw Problem(message: "truncated file (\(bytes.count) bytes), shorter than the 8-byte header length")
        }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw Problem(message: "header length \(headerLength) is larger than the file (\(bytes.count) bytes)")
        }
        let dataStart = 8 + Int(headerLength)
        let header: JSONValue
        do {
            header = try JSONValue.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart]))
        } catch {
            throw Problem(message: "header is not UTF-8 JSON: \(error)")
        }
        guard case .object(let members) = header else { throw Problem(message: "header is not a JSON object") }
        if let metadata = members["__metadata__"] {
            guard case .object(let pairs) = metadata,
                  pairs.keys.allSatisfy({ if case .string = pairs[$0] { true } else { false } })
            else { throw Problem(message: "__metadata__ must map strings to strings") }
        }

        var entries: [Entry] = []
        for name in members.keys where name != "__metadata__" {
            entries.append(try Self.entry(name: name, value: members[name] ?? .null))
        }
        let data = UnsafeRawBufferPointer(rebasing: bytes[dataStart...])
        try Self.checkTiling(entries, bufferSize: data.count)
        self.entries = entries
        self.data = data
    }

    private static func entry(name: String, value: JSONValue) throws(Problem) -> Entry {
        func refuse(_ message: String) -> Problem { Problem(tensor: name, message: message) }
        guard case .object(let fields) = value, fields.count == 3,
              let dtype = fields["dtype"], let shapeValue = fields["shape"], let offsetsValue = fields["data_offsets"]
        else { throw refuse("entry must have exactly dtype, shape, data_offsets") }
        guard dtype == .string("F32") else {
            throw refuse("unsupported dtype \(dtype.pythonDescription) (only F32 is allowed)")
        }
        guard let shape = nonNegativeIntegers(shapeValue) else {
            throw refuse("shape \(shapeValue.pythonDescription) is not a list of non-negative integers")
        }
        guard let offsets = nonNegativeIntegers(offsetsValue), offsets.count == 2, offsets[0] <= offsets[1] else {
            throw refuse("data_offsets \(offsetsValue.pythonDescription) is not [begin, end] with 0 <= begin <= end")
        }
        let span = offsets[1] - offsets[0]
        let needed = byteCount(shape)
        guard needed == span else {
            throw refuse("data_offsets \(offsetsValue.pythonDescription) span \(span) bytes, "
                         + "shape \(shapeValue.pythonDescription) needs \(needed.map(String.init) ?? "more than \(Int.max)")")
        }
        return Entry(name: name, shape: shape, span: offsets[0]..<offsets[1])
    }

    /// Sorted by begin, the tensors must start at 0, follow one another without gap or overlap, and
    /// end exactly at the end of the file.
    private static func checkTiling(_ entries: [Entry], bufferSize: Int) throws(Problem) {
        let ordered = entries.sorted {
            ($0.span.lowerBound, $0.span.upperBound, $0.name) < ($1.span.lowerBound, $1.span.upperBound, $1.name)
        }
        var position = 0
        var previous: String?
        for entry in ordered {
            if entry.span.lowerBound < position {
                throw Problem(message: "data_offsets of tensors \(singleQuoted(previous ?? "")) and \(singleQuoted(entry.name)) overlap")
            }
            if entry.span.lowerBound > position {
                throw Problem(message: "gap of \(entry.span.lowerBound - position) bytes before tensor \(singleQuoted(entry.name))")
            }
            position = entry.span.upperBound
            previous = entry.name
        }
        guard position == bufferSize else {
            throw Problem(message: "data buffer is \(bufferSize) bytes, tensors cover \(position)")
        }
    }

    /// The entry's values, little-endian binary32 at any alignment, as a tensor of its shape.
    func tensor(_ entry: Entry) -> Tensor {
        let source = UnsafeRawBufferPointer(rebasing: data[entry.span])
        let count = source.count / 4
        let scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: source)
            for index in 0..<count {   // a no-op on little-endian hosts
                buffer[index] = Float(bitPattern: UInt32(littleEndian: buffer[index].bitPattern))
            }
            initialized = count
        }
        return Tensor(shape: entry.shape, scalars: scalars)
    }
}

/// The integers of a JSON array when all are non-negative integers (not floats, not booleans).
private func nonNegativeIntegers(_ value: JSONValue) -> [Int]? {
    guard case .array(let elements) = value else { return nil }
    var result: [Int] = []
    for element in elements {
        guard case .integer(let number) = element, number >= 0 else { return nil }
        result.append(number)
    }
    return result
}

/// 4 · product(shape), or nil when it does not fit in Int (no file can hold such a tensor).
private func byteCount(_ shape: [Int]) -> Int? {
    if shape.contains(0) { return 0 }
    var total = 4
    for dimension in shape {
        let (product, overflow) = total.multipliedReportingOverflow(by: dimension)
        if overflow { return nil }
        total = product
    }
    return total
}
