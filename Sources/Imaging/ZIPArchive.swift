import ZlibCodec

/// Why a ZIP archive could not be read.
public enum ZIPError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    /// More members or more inflated bytes than the limits allow (from the central directory's sizes).
    case tooLarge(String)
    /// Encrypted members, ZIP64, or a compression other than stored and DEFLATE.
    case unsupported(String)

    public var description: String {
        switch self {
        case .malformed(let detail): "not a valid ZIP archive: \(detail)"
        case .tooLarge(let detail): "the ZIP archive is too large: \(detail)"
        case .unsupported(let detail): "the ZIP archive uses what is not read here: \(detail)"
        }
    }
}

/// Reading ZIP archives (APPNOTE 4.3, without ZIP64 or encryption): a folder of files sent as one body.
/// Every size is checked from the central directory against the limits before anything is inflated, and
/// each member is inflated to at most its declared size, then checked against its CRC-32. Errors name a
/// member by its place, never by its name (a folder of a series may be named after the patient).
public enum ZIPArchive {
    /// One file of the archive (folders are skipped).
    public struct Member: Sendable {
        public let name: String
        public let bytes: [UInt8]
    }

    /// One central directory entry: where a member is and what it declares.
    private struct Entry {
        let name: String
        let method: Int
        let flags: Int
        let crc: UInt32
        let compressedSize: Int
        let size: Int
        let localHeaderOffset: Int
        var isFolder: Bool { name.hasSuffix("/") }
    }

    public static let signature: [UInt8] = [0x50, 0x4B, 0x03, 0x04]

    /// The entries of the central directory, refused when there are more than `maximumMembers` files or
    /// they declare more than `maximumBytes` inflated bytes in all.
    private static func entries(_ archive: [UInt8], maximumMembers: Int, maximumBytes: Int) throws(ZIPError) -> [Entry] {
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
        guard count <= maximumMembers else { throw .tooLarge("\(count) members, more than the \(maximumMembers) allowed") }
        var entries: [Entry] = []
        var totalBytes = 0
        for _ in 0..<count {
            guard offset + 46 <= end, reader.integer(at: offset, as: UInt32.self) == 0x0201_4B50 else {
                throw .malformed("a central directory header is missing")
            }
            let nameLength = Int(reader.integer(at: offset + 28, as: UInt16.self))
            let extraLength = Int(reader.integer(at: offset + 30, as: UInt16.self))
            let commentLength = Int(reader.integer(at: offset + 32, as: UInt16.self))
            guard offset + 46 + nameLength + extraLength + commentLength <= end else { throw .malformed("a central directory header runs past it") }
            let entry = Entry(name: String(decoding: archive[offset + 46 ..< offset + 46 + nameLength], as: UTF8.self),
                              method: Int(reader.integer(at: offset + 10, as: UInt16.self)),
                              flags: Int(reader.integer(at: offset + 8, as: UInt16.self)),
                              crc: reader.integer(at: offset + 16, as: UInt32.self),
                              compressedSize: Int(reader.integer(at: offset + 20, as: UInt32.self)),
                              size: Int(reader.integer(at: offset + 24, as: UInt32.self)),
                              localHeaderOffset: Int(reader.integer(at: offset + 42, as: UInt32.self)))
            guard entry.flags & 1 == 0 else { throw .unsupported("encrypted members") }
            guard [0, 8].contains(entry.method) else { throw .unsupported("compression method \(entry.method) (stored and DEFLATE are read)") }
            totalBytes += entry.size
            guard totalBytes <= maximumBytes else { throw .tooLarge("its members inflate to more than \(maximumBytes) bytes") }
            entries.append(entry)
            offset += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }

    /// The files of `archive` (folders skipped), each inflated to its declared size and checked against
    /// its CRC-32; the limits are those of `entries`.
    public static func members(_ archive: [UInt8], maximumMembers: Int, maximumBytes: Int) throws(ZIPError) -> [Member] {
        let reader = ByteReader(bytes: archive, order: .little)
        var members: [Member] = []
        for (index, entry) in try entries(archive, maximumMembers: maximumMembers, maximumBytes: maximumBytes).enumerated() where !entry.isFolder {
            let member = "member \(index + 1)"
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
            members.append(Member(name: entry.name, bytes: bytes))
        }
        return members
    }
}
