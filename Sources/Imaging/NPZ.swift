import ZlibCodec

/// Why an `.npz` archive could not be written.
public enum NPZError: Error, Equatable, CustomStringConvertible {
    case invalidName(String)
    case duplicateName(String)
    /// Members or an archive past 4 GiB, or more than 65,535 members, would need ZIP64.
    case tooLarge

    public var description: String {
        switch self {
        case .invalidName(let name): "'\(name)' cannot name an array in an .npz (use a non-empty name without '/' or NUL)"
        case .duplicateName(let name): "two arrays are both named '\(name)'"
        case .tooLarge: "the arrays are too large for an .npz without ZIP64 (4 GiB or 65,535 arrays)"
        }
    }
}

/// NumPy's `.npz`: a ZIP archive holding one `<name>.npy` per array, what `np.savez` (stored) and
/// `np.savez_compressed` (deflated) write. `np.load(path)[name]` reads each array back.
public enum NPZ {
    public enum Compression: Sendable {
        case stored, deflated
    }

    /// Archive of `arrays` (name → the bytes of a `.npy`, e.g. from `NPY.encode`), in the given order.
    public static func encode(_ arrays: [(name: String, npy: [UInt8])], compression: Compression = .deflated) throws -> [UInt8] {
        guard arrays.count <= Int(UInt16.max) else { throw NPZError.tooLarge }
        var names = Set<String>()
        var archive = ByteWriter(order: .little)
        var centralDirectory = ByteWriter(order: .little)
        for (name, npy) in arrays {
            guard !name.isEmpty, !name.contains("/"), !name.contains("\0") else { throw NPZError.invalidName(name) }
            guard names.insert(name).inserted else { throw NPZError.duplicateName(name) }
            let fileName = Array((name + ".npy").utf8)
            let crc = Zlib.crc32(npy)
            let data = compression == .deflated ? try Zlib.compress(npy, format: .raw) : npy
            let offset = archive.bytes.count
            guard npy.count < Int(UInt32.max), data.count < Int(UInt32.max), offset < Int(UInt32.max) else { throw NPZError.tooLarge }
            let method: UInt16 = compression == .deflated ? 8 : 0
            // Bit 11: the name is UTF-8.
            let flags: UInt16 = fileName.allSatisfy { $0 < 0x80 } ? 0 : 1 << 11

            archive.append(UInt32(0x0403_4B50))            // local file header signature
            appendCommonFields(&archive, method: method, flags: flags, crc: crc, compressedSize: data.count,
                               size: npy.count, nameLength: fileName.count)
            archive.append(bytes: fileName)
            archive.append(bytes: data)

            centralDirectory.append(UInt32(0x0201_4B50))   // central directory header signature
            centralDirectory.append(UInt16(20))            // version made by: 2.0, MS-DOS attributes
            appendCommonFields(&centralDirectory, method: method, flags: flags, crc: crc, compressedSize: data.count,
                               size: npy.count, nameLength: fileName.count)
            centralDirectory.append(UInt16(0))             // file comment length
            centralDirectory.append(UInt16(0))             // disk number start
            centralDirectory.append(UInt16(0))             // internal attributes
            centralDirectory.append(UInt32(0))             // external attributes
            centralDirectory.append(UInt32(offset))
            centralDirectory.append(bytes: fileName)
        }
        let directoryOffset = archive.bytes.count
        guard directoryOffset + centralDirectory.bytes.count < Int(UInt32.max) else { throw NPZError.tooLarge }
        archive.append(bytes: centralDirectory.bytes)
        archive.append(UInt32(0x0605_4B50))                // end of central directory signature
        archive.append(UInt16(0))                          // this disk
        archive.append(UInt16(0))                          // disk with the directory
        archive.append(UInt16(arrays.count))
        archive.append(UInt16(arrays.count))
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
