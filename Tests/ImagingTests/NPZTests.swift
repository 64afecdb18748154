import Foundation
import Imaging
import XCTest
import ZlibCodec

final class NPZTests: XCTestCase {
    private func arrays() -> [(name: String, npy: [UInt8])] {
        let slices = (0..<(3 * 160 * 160)).map { (index: Int) -> Float in Float((index * 37) % 1000) / 999 }
        return [("slices", NPY.encode(shape: [3, 160, 160], float32: slices)),
                ("brain", NPY.encode(shape: [3, 2], uint8: [0, 1, 1, 0, 1, 1])),
                ("clip_value", NPY.encode(shape: [], float32: [714.8])),
                ("größe", NPY.encode(shape: [1], int32: [42]))]
    }

    func testArchivesLoadInNumPyStoredAndDeflated() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for compression in [ZIPArchive.Compression.stored, .deflated] {
            let path = directory.appendingPathComponent("\(compression).npz")
            let archive = try NPZ.encode(arrays(), compression: compression)
            try Data(archive).write(to: path)
            // zipfile checks every member's CRC-32 in testzip(); numpy reads the arrays.
            let output = try runPython("""
                import sys, zipfile, numpy as np
                with zipfile.ZipFile(sys.argv[1]) as z:
                    print(z.testzip(), [(i.filename, i.compress_type) for i in z.infolist()])
                d = np.load(sys.argv[1])
                expected = ((np.arange(3 * 160 * 160) * 37) % 1000).astype(np.float32) / np.float32(999)
                print(sorted(d.files), np.array_equal(d['slices'].ravel(), expected), d['slices'].shape)
                print(d['brain'].tolist(), d['clip_value'].dtype, d['clip_value'].shape, d['größe'].tolist())
                """, arguments: [path.path])
            let method = compression == .stored ? 0 : 8
            XCTAssertEqual(output, """
                None [('slices.npy', \(method)), ('brain.npy', \(method)), ('clip_value.npy', \(method)), ('größe.npy', \(method))]
                ['brain', 'clip_value', 'größe', 'slices'] True (3, 160, 160)
                [[0, 1], [1, 0], [1, 1]] float32 () [42]

                """, "\(compression)")
        }
    }

    func testDeflatedIsSmallerAndMembersCarryTheirCRC() throws {
        let stored = try NPZ.encode(arrays(), compression: .stored)
        let deflated = try NPZ.encode(arrays(), compression: .deflated)
        XCTAssertLessThan(deflated.count, stored.count / 2)
        // The first local header's CRC-32 (offset 14) is that of the first member's bytes.
        let crc = UInt32(stored[14]) | UInt32(stored[15]) << 8 | UInt32(stored[16]) << 16 | UInt32(stored[17]) << 24
        XCTAssertEqual(crc, Zlib.crc32(arrays()[0].npy))
        XCTAssertEqual(Array(stored.suffix(22).prefix(4)), [0x50, 0x4B, 0x05, 0x06])
    }

    func testBadNamesAreRefused() {
        let npy = NPY.encode(shape: [1], float32: [1])
        assertThrows(NPZError.duplicateName("a")) { try NPZ.encode([("a", npy), ("a", npy)]) }
        assertThrows(NPZError.invalidName("")) { try NPZ.encode([("", npy)]) }
        assertThrows(NPZError.invalidName("maps/slice")) { try NPZ.encode([("maps/slice", npy)]) }
    }
}
