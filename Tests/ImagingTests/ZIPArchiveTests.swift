import Imaging
import XCTest

final class ZIPArchiveTests: XCTestCase {
    /// What the writer stores, the reader a request's ZIP goes through gives back, member for member.
    func testWrittenArchivesReadBackStoredAndDeflated() throws {
        let files: [(name: String, bytes: [UInt8])] = [
            ("parametric-map.dcm", (0..<5000).map { UInt8($0 % 251) }), ("series/", []), ("größe.dcm", Array("x".utf8)),
        ]
        for compression in [ZIPArchive.Compression.stored, .deflated] {
            let archive = try ZIPArchive.encode(files, compression: compression)
            let entries = try ZIPArchive.entries(archive, maximumMembers: 3, maximumBytes: 1 << 20)
            XCTAssertEqual(entries.map(\.name), files.map(\.name))
            XCTAssertEqual(try entries.map { try ZIPArchive.contents(of: $0, in: archive) }, files.map(\.bytes))
        }
    }
}
