import CZlib

/// Why compressed data could not be inflated, or data not deflated.
public enum ZlibError: Error, Equatable, CustomStringConvertible {
    /// The stream stops before its end marker (or, for gzip, before its trailer).
    case truncated
    /// zlib rejected the stream; its message says where (e.g. "incorrect header check", "invalid distance too far back").
    case corrupt(String)
    /// Inflating would produce more than the caller's maximum: a zip bomb, or simply too large.
    case outputLimitExceeded(limit: Int)
    /// Bytes follow the end of the stream (for gzip: bytes that are neither padding nor another member).
    case trailingData(count: Int)
    /// zlib failed for another reason (out of memory, version mismatch); the code is zlib's.
    case library(code: Int32)

    public var description: String {
        switch self {
        case .truncated: "the compressed data ends early (truncated)"
        case .corrupt(let message): "the compressed data is corrupt: \(message)"
        case .outputLimitExceeded(let limit): "the data inflates to more than \(limit) bytes"
        case .trailingData(let count): "\(count) unexpected bytes follow the compressed data"
        case .library(let code): "zlib failed with code \(code)"
        }
    }
}

/// DEFLATE (RFC 1951) in its three containers, through the system zlib.
public enum Zlib {
    public enum Format: Sendable {
        /// RFC 1952, `1F 8B …`: `.gz` files and HTTP `Content-Encoding: gzip`.
        case gzip
        /// RFC 1950, a 2-byte header and an Adler-32 trailer: PNG's IDAT stream.
        case zlib
        /// Bare RFC 1951 blocks: ZIP members (.npz).
        case raw

        /// zlib's windowBits: 15 (32 KiB window) plus 16 for the gzip wrapper, negated for no wrapper.
        var windowBits: Int32 {
            switch self {
            case .gzip: 15 + 16
            case .zlib: 15
            case .raw: -15
            }
        }
    }

    /// zlib's default level (6): the usual balance of speed and size.
    public static let defaultLevel: Int32 = Z_DEFAULT_COMPRESSION

    /// The whole input deflated into one stream of `format`; `level` 0 (stored) … 9 (smallest).
    public static func compress(_ input: [UInt8], format: Format, level: Int32 = defaultLevel) throws(ZlibError) -> [UInt8] {
        var stream = z_stream()
        let initStatus = deflateInit2_(&stream, level, Z_DEFLATED, format.windowBits, 8, Z_DEFAULT_STRATEGY,
                                       ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else { throw .library(code: initStatus) }
        defer { deflateEnd(&stream) }
        // deflateBound covers the zlib wrapper; gzip's is 12 bytes longer, raw's shorter. With that much
        // room deflate never runs out of output, so it only waits for input.
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 12)
        var consumed = 0
        var produced = 0
        var status = Z_OK
        // zlib counts in 32 bits: more than 4 GiB goes in several calls, the last one finishing the stream.
        while status == Z_OK {
            status = input.withUnsafeBufferPointer { inputBuffer in
                output.withUnsafeMutableBufferPointer { outputBuffer in
                    stream.next_in = UnsafeMutablePointer(mutating: inputBuffer.baseAddress.map { $0 + consumed })
                    stream.avail_in = uInt(clamping: inputBuffer.count - consumed)
                    stream.next_out = outputBuffer.baseAddress.map { $0 + produced }
                    stream.avail_out = uInt(clamping: outputBuffer.count - produced)
                    let status = deflate(&stream, inputBuffer.count - consumed <= Int(UInt32.max) ? Z_FINISH : Z_NO_FLUSH)
                    consumed = Int(bitPattern: stream.next_in) - Int(bitPattern: inputBuffer.baseAddress)
                    produced = Int(bitPattern: stream.next_out) - Int(bitPattern: outputBuffer.baseAddress)
                    return status
                }
            }
        }
        guard status == Z_STREAM_END else { throw .library(code: status) }
        output.removeSubrange(produced...)
        return output
    }

    /// The inflated bytes of one `format` stream that fills `input` exactly. For gzip, members that
    /// follow one another are inflated in turn and joined (as gzip(1) does), and trailing zero bytes
    /// (tape padding) are ignored. Producing more than `maximumOutputBytes` throws
    /// `.outputLimitExceeded` as soon as it happens, before the memory is spent.
    public static func decompress(_ input: [UInt8], format: Format, maximumOutputBytes: Int) throws(ZlibError) -> [UInt8] {
        try inflated(input, format: format, keep: maximumOutputBytes, limit: maximumOutputBytes, rest: .check)
    }

    /// As `decompress`, for a stream that need not fill `input`: what follows its end is ignored (a DICOM
    /// file's deflated data set may be padded).
    public static func decompressLeading(_ input: [UInt8], format: Format, maximumOutputBytes: Int) throws(ZlibError) -> [UInt8] {
        try inflated(input, format: format, keep: maximumOutputBytes, limit: maximumOutputBytes, rest: .check, trailingAllowed: true)
    }

    /// As `decompress`, but only the first `keptBytes` of the output are held (fewer when the stream is
    /// shorter): the rest is inflated through a small scratch buffer, so that the whole stream is still
    /// checked (its end, gzip's CRC-32 and length, the `maximumOutputBytes` limit) without its memory
    /// being spent. For a file whose header says how much of it is needed.
    public static func decompress(_ input: [UInt8], format: Format, maximumOutputBytes: Int,
                                  keepingFirst keptBytes: Int) throws(ZlibError) -> [UInt8] {
        try inflated(input, format: format, keep: min(keptBytes, maximumOutputBytes), limit: maximumOutputBytes, rest: .check)
    }

    /// The first `count` bytes `input` inflates to (all of them when the stream is shorter), and not one
    /// byte further: what follows is neither inflated nor checked. For reading a header before deciding
    /// what the rest may cost.
    public static func decompressedPrefix(_ input: [UInt8], format: Format, count: Int) throws(ZlibError) -> [UInt8] {
        try inflated(input, format: format, keep: count, limit: .max, rest: .ignore)
    }

    /// What happens to the output past the bytes kept.
    private enum Rest {
        /// Inflated into scratch space and thrown away, so that the stream is checked to its end.
        case check
        /// Not inflated at all.
        case ignore
    }

    /// Scratch space for output that is checked but not kept.
    private static let scratchBytes = 64 * 1024

    /// Inflates `input`, holding the first `keep` bytes of output; past them, `rest` says what happens.
    /// More than `limit` bytes of output in all throws `.outputLimitExceeded`.
    private static func inflated(_ input: [UInt8], format: Format, keep: Int, limit: Int, rest: Rest,
                                 trailingAllowed: Bool = false) throws(ZlibError) -> [UInt8] {
        precondition(keep >= 0 && limit >= 0, "negative output limit")
        var stream = z_stream()
        let initStatus = inflateInit2_(&stream, format.windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else { throw .library(code: initStatus) }
        defer { inflateEnd(&stream) }

        var output: [UInt8] = []
        var scratch: [UInt8] = []
        // Bytes written to `output`, and to the scratch space (counted, not kept).
        var kept = 0
        var discarded = 0
        var consumed = 0
        // When checking, the kept buffer holds one byte beyond the limit (how an oversized stream is noticed).
        let ceiling = rest == .check && keep == limit && limit < .max ? limit + 1 : keep
        // A first guess from typical ratios; the buffer doubles as needed, never past the ceiling.
        var capacity = min(ceiling, max(4096, input.count * 4))
        func grow() { capacity = capacity > ceiling / 2 ? ceiling : capacity * 2 }
        while true {
            let keeping = kept < ceiling
            if keeping {
                if output.count < capacity { output.append(contentsOf: repeatElement(0, count: capacity - output.count)) }
            } else if rest == .ignore {
                return Array(output[..<kept])
            } else if scratch.isEmpty {
                scratch = [UInt8](repeating: 0, count: scratchBytes)
            }
            /// One call of inflate writing into `buffer` from `start`: its status and the bytes it wrote.
            func inflateStep(into buffer: inout [UInt8], from start: Int) -> (status: Int32, written: Int) {
                input.withUnsafeBufferPointer { inputBuffer in
                    buffer.withUnsafeMutableBufferPointer { outputBuffer in
                        stream.next_in = UnsafeMutablePointer(mutating: inputBuffer.baseAddress.map { $0 + consumed })
                        stream.avail_in = uInt(clamping: inputBuffer.count - consumed)
                        stream.next_out = outputBuffer.baseAddress.map { $0 + start }
                        stream.avail_out = uInt(clamping: outputBuffer.count - start)
                        let status = inflate(&stream, Z_NO_FLUSH)
                        consumed = Int(bitPattern: stream.next_in) - Int(bitPattern: inputBuffer.baseAddress)
                        return (status, Int(bitPattern: stream.next_out) - Int(bitPattern: outputBuffer.baseAddress) - start)
                    }
                }
            }
            let status: Int32
            if keeping {
                let step = inflateStep(into: &output, from: kept)
                (status, kept) = (step.status, kept + step.written)
            } else {
                let step = inflateStep(into: &scratch, from: 0)
                (status, discarded) = (step.status, discarded + step.written)
            }
            if kept + discarded > limit { throw .outputLimitExceeded(limit: limit) }
            switch status {
            case Z_STREAM_END:
                let trailing = input[consumed...]
                if trailing.isEmpty || trailingAllowed { return Array(output[..<kept]) }
                guard case .gzip = format else { throw .trailingData(count: trailing.count) }
                if trailing.allSatisfy({ $0 == 0 }) { return Array(output[..<kept]) }
                guard trailing.starts(with: [0x1F, 0x8B]) else { throw .trailingData(count: trailing.count) }
                inflateReset(&stream)
            case Z_OK:
                if stream.avail_out == 0 && keeping { grow() }
            case Z_BUF_ERROR:
                // No progress was possible: with room left to write, the input must have run out.
                if stream.avail_out > 0 { throw .truncated }
                if keeping { grow() }
            case Z_DATA_ERROR:
                throw .corrupt(stream.msg.map { String(cString: $0) } ?? "invalid deflate data")
            case Z_NEED_DICT:
                throw .corrupt("the stream needs a preset dictionary")
            default:
                throw .library(code: status)
            }
            if status == Z_OK && consumed == input.count && stream.avail_out > 0 { throw .truncated }
        }
    }

    /// CRC-32 (ISO 3309, polynomial 0xEDB88320) as PNG chunks and ZIP members use it; pass the previous
    /// result as `initial` to continue a checksum over several pieces.
    public static func crc32<Bytes: Collection<UInt8>>(_ bytes: Bytes, initial: UInt32 = 0) -> UInt32 {
        let checksum = { (buffer: UnsafeBufferPointer<UInt8>) -> UInt32 in
            UInt32(crc32_z(uLong(initial), buffer.baseAddress, z_size_t(buffer.count)))
        }
        return bytes.withContiguousStorageIfAvailable(checksum) ?? Array(bytes).withUnsafeBufferPointer(checksum)
    }
}
