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
    /// Archive of `arrays` (name → the bytes of a `.npy`, e.g. from `NPY.encode`), in the given order.
    public static func encode(_ arrays: [(name: String, npy: [UInt8])], compression: ZIPArchive.Compression = .deflated) throws -> [UInt8] {
        var names = Set<String>()
        for (name, _) in arrays {
            guard !name.isEmpty, !name.contains("/"), !name.contains("\0") else { throw NPZError.invalidName(name) }
            guard names.insert(name).inserted else { throw NPZError.duplicateName(name) }
        }
        do {
            return try ZIPArchive.encode(arrays.map { ($0.name + ".npy", $0.npy) }, compression: compression)
        } catch ZIPError.tooLarge {
            throw NPZError.tooLarge
        }
    }
}
