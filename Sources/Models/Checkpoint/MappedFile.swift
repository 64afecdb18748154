import Glibc

/// A regular file mapped read-only into memory. The checkpoint's weights are hashed and read in place
/// from the mapping, so a file is never copied whole into the heap. The writer replaces a checkpoint
/// by renaming a new directory into place, so a mapped file is not rewritten underneath us.
final class MappedFile {
    enum OpenError: Error {
        case notARegularFile
        case system(operation: String, errno: Int32)

        var reason: String {
            switch self {
            case .notARegularFile: "file is missing"
            case .system(let operation, let code): "\(operation) failed: \(String(cString: strerror(code)))"
            }
        }
    }

    let bytes: UnsafeRawBufferPointer

    init(path: String) throws(OpenError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw errno == ENOENT || errno == ENOTDIR ? .notARegularFile : .system(operation: "open", errno: errno)
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw .system(operation: "fstat", errno: errno) }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw .notARegularFile }
        let size = Int(status.st_size)
        guard size > 0 else {   // mmap refuses a zero length; an empty file is an empty buffer
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), address != MAP_FAILED else {
            throw .system(operation: "mmap", errno: errno)
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        if let start = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: start), bytes.count) }
    }
}
