import ZlibCodec

/// Why a ZIP archive could not be read.
public enum ZIPError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    /// More members than the limit allows (from the end of central directory record).
    case tooManyMembers(String)
    /// More bytes than the limit allows (from the central directory's sizes).
    case tooLarge(String)
    /// Encrypted members, ZIP64, or a compression other than stored and DEFLATE.
    case unsupported(String)

    public var description: String {
        switch self {
        case .malformed(let detail): "not a valid ZIP archive: \(detail)"
        case .tooManyMembers(let detail), .tooLarge(let detail): "the ZIP archive is too large: \(detail)"
        case .unsupported(let detail): "the ZIP archive uses what is not read here: \(detail)"
        }
    }
}

/// Reading ZIP archives (APPNOTE 4.3, without ZIP64 or encryption): a folder of files sent as one body;
/// writing them (stored or deflated): `.npz` files and the DICOM objects a request asks for as a ZIP.
/// Every size is checked from the central directory against the limits before anything is inflated, and
/// each member is inflated to at most its declared size, then checked against its CRC-32. Errors name a
/// member by its place, never by its name (a folder of a series may be named after the patient).
public enum ZIPArchive {
    /// One central directory entry: where a member is and what it declares. Its bytes are read with
    /// `contents(of:in:)`, one member at a time.
    public struct Entry: Sendable {
        public let name: String
        /// Its place in the directory (1-based), which errors name instead of its name.
        let place: Int
        let method: Int
        let flags: Int
        let crc: UInt32
        let compressedSize: Int
        /// Inflated bytes, as declared.
        public let size: Int
        let localHeaderOffset: Int
        public var isFolder: Bool { name.hasSuffix("/") }
        /// What `contents(of:in:)` holds at once: a copy of the stored bytes and the inflated ones.
        public var readingBytes: Int { compressedSize + size }
    }

    public static let signature: [UInt8] = [0x50, 0x4B, 0x03, 0x04]

    /// The entries of the central directory, folders included, read without inflating anything: refused
    /// when there are more than `maximumMembers`, or when their bytes, stored or inflated (the larger of
    /// the two for each), come to more than `maximumBytes` in all.
    public static func entries(_ archive: [UInt8], maximumMembers: Int, maximumBytes: Int) throws(ZIPError) -> [Entry] {
        let reader = ByteReader(bytes: archive, order: .little)
        // The end record is the last 22 bytes unless a comment (at most 65,535 bytes) follows it.
        let lastStart = archive.count - 22
        guard lastStart >= 0 else { throw .malformed("shorter than an end of central directory record") }
        guard let end = stride(from: lastStart, through: max(0, lastStart - 65_535), by: -1).first(where: {
            reader.integer(at: $0, as: UInt32.self) == 0x0605_4B50 && $0 + 22 + Int(reader.integer(at: $0 + 20, as: UInt16.self)) == archive.count
        }) else { throw .malformed("no end of central directory record") }
        let count = Int(reader.integer(at: end + 10, as: UInt16.self))
        let directorySize = Int(reader.integer(at: end + 12, as: UInt32.self))
        var offset = Int(reader.integer(at: end + 16, as: UInt32.self))
        guard count != 0xFFFF, offset != 0xFFFF_FFFF else { throw .unsupported("ZIP64") }
        guard offset + directorySize <= end else { throw .malformed("the central directory lies outside the archive") }
        guard count <= maximumMembers else { throw .tooManyMembers("\(count) members, more than the \(maximumMembers) allowed") }
        var entries: [Entry] = []
        var totalBytes = 0
        for index in 0..<count {
            guard offset + 46 <= end, reader.integer(at: offset, as: UInt32.self) == 0x0201_4B50 else {
                throw .malformed("a central directory header is missing")
            }
            let nameLength = Int(reader.integer(at: offset + 28, as: UInt16.self))
            let extraLength = Int(reader.integer(at: offset + 30, as: UInt16.self))
            let commentLength = Int(reader.integer(at: offset + 32, as: UInt16.self))
            guard offset + 46 + nameLength + extraLength + commentLength <= end else { throw .malformed("a central directory header runs past it") }
            let entry = Entry(name: String(decoding: archive[offset + 46 ..< offset + 46 + nameLength], as: UTF8.self),
                              place: index + 1,
                              method: Int(reader.integer(at: offset + 10, as: UInt16.self)),
                              flags: Int(reader.integer(at: offset + 8, as: UInt16.self)),
                              crc: reader.integer(at: offset + 16, as: UInt32.self),
                              compressedSize: Int(reader.integer(at: offset + 20, as: UInt32.self)),
                              size: Int(reader.integer(at: offset + 24, as: UInt32.self)),
                              localHeaderOffset: Int(reader.integer(at: offset + 42, as: UInt32.self)))
            guard entry.flags & 1 == 0 else { throw .unsupported("encrypted members") }
            guard [0, 8].contains(entry.method) else { throw .unsupported("compression method \(entry.method) (stored and DEFLATE are read)") }
            totalBytes += max(entry.size, entry.compressedSize)
            guard totalBytes <= maximumBytes else { throw .tooLarge("its members take more than \(maximumBytes) bytes, stored or inflated") }
            entries.append(entry)
            offset += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }

    /// The bytes of one member of `archive` (an entry `entries` read from it), inflated to its declared
    /// size and checked against its CRC-32.
    public static func contents(of entry: Entry, in archive: [UInt8]) throws(ZIPError) -> [UInt8] {
        let reader = ByteReader(bytes: archive, order: .little)
        let member = "member \(entry.place)"
        let local = entry.localHeaderOffset
        guard local + 30 <= archive.count, reader.integer(at: local, as: UInt32.self) == 0x0403_4B50 else {
            throw .malformed("the local header of \(member) is missing")
        }
        let dataStart = local + 30 + Int(reader.integer(at: local + 26, as: UInt16.self)) + Int(reader.integer(at: local + 28, as: UInt16.self))
        guard dataStart + entry.compressedSize <= archive.count else { throw .malformed("\(member) runs past the archive") }
        let stored = Array(archive[dataStart ..< dataStart + entry.compressedSize])
        let bytes: [UInt8]
        if entry.method == 0 {
            bytes = stored
        } else {
            do { bytes = try Zlib.decompress(stored, format: .raw, maximumOutputBytes: entry.size) } catch {
                throw .malformed("\(member) does not inflate to its declared size: \(error)")
            }
        }
        guard bytes.count == entry.size, Zlib.crc32(bytes) == entry.crc else {
            throw .malformed("\(member) does not match its declared size and CRC-32")
        }
        return bytes
    }

    public enum Compression: Sendable {
        case stored, deflated
    }

    /// An archive of `files` (name → bytes) in the given order, without ZIP64: `.tooLarge` for members or
    /// an archive past 4 GiB, or more than 65,535 members. Names are written as given (UTF-8).
    public static func encode(_ files: [(name: String, bytes: [UInt8])], compression: Compression = .deflated) throws -> [UInt8] {
        let tooLarge = ZIPError.tooLarge("members or an archive past 4 GiB, or more than 65,535 members, need ZIP64")
        guard files.count <= Int(UInt16.max) else { throw tooLarge }
        var archive = ByteWriter(order: .little)
        var centralDirectory = ByteWriter(order: .little)
        for (name, contents) in files {
            let fileName = Array(name.utf8)
            let crc = Zlib.crc32(contents)
            let data = compression == .deflated ? try Zlib.compress(contents, format: .raw) : contents
            let offset = archive.bytes.count
            guard contents.count < Int(UInt32.max), data.count < Int(UInt32.max), offset < Int(UInt32.max) else { throw tooLarge }
            let method: UInt16 = compression == .deflated ? 8 : 0
            // Bit 11: the name is UTF-8.
            let flags: UInt16 = fileName.allSatisfy { $0 < 0x80 } ? 0 : 1 << 11

            archive.append(UInt32(0x0403_4B50))            // local file header signature
            appendCommonFields(&archive, method: method, flags: flags, crc: crc, compressedSize: data.count,
                               size: contents.count, nameLength: fileName.count)
            archive.append(bytes: fileName)
            archive.append(bytes: data)

            centralDirectory.append(UInt32(0x0201_4B50))   // central directory header signature
            centralDirectory.append(UInt16(20))            // version made by: 2.0, MS-DOS attributes
            appendCommonFields(&centralDirectory, method: method, flags: flags, crc: crc, compressedSize: data.count,
                               size: contents.count, nameLength: fileName.count)
            centralDirectory.append(UInt16(0))             // file comment length
            centralDirectory.append(UInt16(0))             // disk number start
            centralDirectory.append(UInt16(0))             // internal attributes
            centralDirectory.append(UInt32(0))             // external attributes
            centralDirectory.append(UInt32(offset))
            centralDirectory.append(bytes: fileName)
        }
        let directoryOffset = archive.bytes.count
        guard directoryOffset + centralDirectory.bytes.count < Int(UInt32.max) else { throw tooLarge }
        archive.append(bytes: centralDirectory.bytes)
        archive.append(UInt32(0x0605_4B50))                // end of central directory signature
        archive.append(UInt16(0))                          // this disk
        archive.append(UInt16(0))                          // disk with the directory
        archive.append(UInt16(files.count))
        archive.append(UInt16(files.count))
        archive.append(UInt32(centralDirectory.bytes.count))
        archive.append(UInt32(directoryOffset))
        archive.append(UInt16(0))                          // comment length
        return archive.bytes
    }

    /// The fields from "version needed" to "extra field length", the same in both headers.
    private static func appendCommonFields(_ writer: inout ByteWriter, method: UInt16, flags: UInt16, crc: UInt32,
                                           compressedSize: Int, size: Int, nameLength: Int) {
        writer.append(UInt16(20))                          // version needed: 2.0 (deflate)
        writer.append(flags)
        writer.append(method)
        writer.append(UInt16(0))                           // time 00:00:00
        writer.append(UInt16(0x21))                        // date 1980-01-01, the DOS epoch: reproducible archives
        writer.append(crc)
        writer.append(UInt32(compressedSize))
        writer.append(UInt32(size))
        writer.append(UInt16(nameLength))
        writer.append(UInt16(0))                           // extra field length
    }
}
