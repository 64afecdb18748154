// libFuzzer target for the `.npz` writer and the raw DEFLATE it uses (the service writes `.npz`, it reads
// none). The input is a list of members — a name length byte, the name, a little-endian UInt16 length,
// the member's bytes — and its first byte picks stored or deflated. Invariants: the writer refuses bad
// names with an error, never a trap; otherwise a ZIP reader of the format's own (below) finds every member
// under its name, with its CRC-32 and sizes, and inflating it gives its bytes back; a member that is a
// valid `.npy` reads the same from the archive.
import DecoderFuzzing
import Imaging
import ZlibCodec

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let members = parseMembers(input.dropFirst())
    let compression: ZIPArchive.Compression = first % 2 == 0 ? .stored : .deflated
    let archive: [UInt8]
    do {
        archive = try NPZ.encode(members, compression: compression)
    } catch {
        check(error is NPZError, "the writer failed with \(error)")
        return 0
    }
    let read = readArchive(archive)
    check(read.map(\.name) == members.map(\.name), "the archive's names are not the members'")
    for (member, stored) in zip(members, read) {
        check(stored.method == (compression == .stored ? 0 : 8), "member \(member.name) has compression method \(stored.method)")
        check(stored.crc == Zlib.crc32(member.npy) && stored.size == member.npy.count, "member \(member.name) has a wrong CRC or size")
        let contents = stored.method == 0 ? stored.data
            : (try? Zlib.decompress(stored.data, format: .raw, maximumOutputBytes: stored.size)) ?? []
        check(contents == member.npy, "member \(member.name) does not inflate to its bytes")
        if let array = try? NPY.decode(member.npy, maximumElements: fuzzLimits.maximumElements) {
            let again = try? NPY.decode(contents, maximumElements: fuzzLimits.maximumElements)
            check(again?.shape == array.shape && sameBits(again?.values ?? [], array.values),
                  "member \(member.name) reads differently from the archive")
        }
    }
    return 0
}

/// Members until the input runs out (a member cut short is dropped).
func parseMembers(_ input: ArraySlice<UInt8>) -> [(name: String, npy: [UInt8])] {
    var members: [(name: String, npy: [UInt8])] = []
    var rest = input
    while let nameLength = rest.popFirst().map(Int.init), rest.count >= nameLength + 2 {
        let name = String(decoding: rest.prefix(nameLength), as: UTF8.self)
        rest = rest.dropFirst(nameLength)
        let length = Int(rest[rest.startIndex]) | Int(rest[rest.startIndex + 1]) << 8
        rest = rest.dropFirst(2)
        guard rest.count >= length else { break }
        members.append((name, Array(rest.prefix(length))))
        rest = rest.dropFirst(length)
    }
    return members
}

/// One member as the archive holds it.
struct StoredMember {
    var name: String
    var method: Int
    var crc: UInt32
    var size: Int
    var data: [UInt8]
}

/// The members of an archive the writer made, found through its central directory (APPNOTE 4.3); any
/// inconsistency between the directory and the local headers is a violation.
func readArchive(_ archive: [UInt8]) -> [StoredMember] {
    func integer(_ offset: Int, _ width: Int) -> Int {
        check(offset >= 0 && offset + width <= archive.count, "a field at \(offset) lies outside the archive")
        return (0..<width).reduce(0) { $0 | Int(archive[offset + $1]) << (8 * $1) }
    }
    let end = archive.count - 22
    check(end >= 0 && integer(end, 4) == 0x0605_4B50, "no end of central directory record")
    let count = integer(end + 10, 2)
    var entry = integer(end + 16, 4)
    var members: [StoredMember] = []
    for _ in 0..<count {
        check(integer(entry, 4) == 0x0201_4B50, "a central directory header is missing")
        let nameLength = integer(entry + 28, 2)
        let local = integer(entry + 42, 4)
        check(integer(local, 4) == 0x0403_4B50, "a local file header is missing")
        let name = Array(archive[entry + 46 ..< entry + 46 + nameLength])
        check(Array(archive[local + 30 ..< local + 30 + nameLength]) == name, "the local and central names differ")
        check(archive[entry + 10 ..< entry + 28] == archive[local + 8 ..< local + 26], "the local and central fields differ")
        let compressedSize = integer(local + 18, 4)
        let dataStart = local + 30 + nameLength
        members.append(StoredMember(name: String(decoding: name.dropLast(4), as: UTF8.self), method: integer(local + 8, 2),
                                    crc: UInt32(integer(local + 14, 4)), size: integer(local + 22, 4),
                                    data: Array(archive[dataStart ..< dataStart + compressedSize])))
        entry += 46 + nameLength
    }
    return members
}

runFuzzer(fuzzOneInput)
