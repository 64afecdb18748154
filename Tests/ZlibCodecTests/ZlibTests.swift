import Foundation
import XCTest
import ZlibCodec

final class ZlibTests: XCTestCase {
    /// Text with structure (compressible) and a few kilobytes of it.
    private let sample = Array((0..<2000).map { "line \($0): \($0 * 7919 % 1000)\n" }.joined().utf8)

    func testEveryFormatRoundTrips() throws {
        for format in [Zlib.Format.gzip, .zlib, .raw] {
            let compressed = try Zlib.compress(sample, format: format)
            XCTAssertLessThan(compressed.count, sample.count / 2, "\(format)")
            XCTAssertEqual(try Zlib.decompress(compressed, format: format, maximumOutputBytes: sample.count), sample)
        }
        XCTAssertEqual(try Zlib.decompress(try Zlib.compress([], format: .gzip), format: .gzip, maximumOutputBytes: 0), [])
    }

    func testContainersAreRecognisable() throws {
        XCTAssertEqual(Array(try Zlib.compress(sample, format: .gzip).prefix(3)), [0x1F, 0x8B, 0x08])
        // RFC 1950: CMF 0x78 (deflate, 32 KiB window), and CMF·256 + FLG divisible by 31.
        let zlib = try Zlib.compress(sample, format: .zlib)
        XCTAssertEqual(zlib[0], 0x78)
        XCTAssertEqual((Int(zlib[0]) * 256 + Int(zlib[1])) % 31, 0)
    }

    func testGzipFromTheCommandLineToolInflates() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zlib-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("sample.txt")
        try Data(sample).write(to: file)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["gzip", "-9", file.path]
        try gzip.run()
        gzip.waitUntilExit()
        XCTAssertEqual(gzip.terminationStatus, 0)
        let compressed = try [UInt8](Data(contentsOf: file.appendingPathExtension("gz")))
        XCTAssertEqual(try Zlib.decompress(compressed, format: .gzip, maximumOutputBytes: 1 << 20), sample)
    }

    func testConcatenatedGzipMembersAreJoined() throws {
        let first = Array(sample[..<700]), second = Array(sample[700...])
        let joined = try Zlib.compress(first, format: .gzip) + Zlib.compress(second, format: .gzip)
        XCTAssertEqual(try Zlib.decompress(joined, format: .gzip, maximumOutputBytes: sample.count), sample)
        // Zero padding after the last member is tolerated, like gzip(1) does.
        XCTAssertEqual(try Zlib.decompress(joined + [0, 0, 0, 0], format: .gzip, maximumOutputBytes: sample.count), sample)
    }

    func testOutputLimitStopsAZipBomb() throws {
        // 64 MiB of zeros deflate to about 64 KiB; a 1 MiB limit must stop inflation early.
        let bomb = try Zlib.compress([UInt8](repeating: 0, count: 64 << 20), format: .gzip, level: 9)
        XCTAssertLessThan(bomb.count, 100_000)
        XCTAssertThrowsError(try Zlib.decompress(bomb, format: .gzip, maximumOutputBytes: 1 << 20)) { error in
            XCTAssertEqual(error as? ZlibError, .outputLimitExceeded(limit: 1 << 20))
        }
        // The limit is inclusive: exactly the output size passes, one byte less does not.
        let exact = try Zlib.compress(sample, format: .zlib)
        XCTAssertEqual(try Zlib.decompress(exact, format: .zlib, maximumOutputBytes: sample.count).count, sample.count)
        XCTAssertThrowsError(try Zlib.decompress(exact, format: .zlib, maximumOutputBytes: sample.count - 1)) { error in
            XCTAssertEqual(error as? ZlibError, .outputLimitExceeded(limit: sample.count - 1))
        }
    }

    func testTruncatedStreamsThrow() throws {
        for format in [Zlib.Format.gzip, .zlib, .raw] {
            let compressed = try Zlib.compress(sample, format: format)
            for length in [0, 1, compressed.count / 2, compressed.count - 1] {
                XCTAssertThrowsError(try Zlib.decompress(Array(compressed[..<length]), format: format,
                                                         maximumOutputBytes: 1 << 20), "\(format) \(length)") { error in
                    XCTAssertEqual(error as? ZlibError, .truncated, "\(format) cut at \(length)")
                }
            }
        }
    }

    func testCorruptStreamsThrowZlibsReason() throws {
        var gzip = try Zlib.compress(sample, format: .gzip)
        gzip[gzip.count - 5] ^= 0xFF      // the CRC-32 in the trailer
        XCTAssertThrowsError(try Zlib.decompress(gzip, format: .gzip, maximumOutputBytes: 1 << 20)) { error in
            XCTAssertEqual(error as? ZlibError, .corrupt("incorrect data check"))
        }
        XCTAssertThrowsError(try Zlib.decompress(Array("plain text, not gzip".utf8), format: .gzip,
                                                 maximumOutputBytes: 1 << 20)) { error in
            XCTAssertEqual(error as? ZlibError, .corrupt("incorrect header check"))
        }
        var zlib = try Zlib.compress(sample, format: .zlib)
        zlib[zlib.count - 1] ^= 0x01      // the Adler-32 trailer
        XCTAssertThrowsError(try Zlib.decompress(zlib, format: .zlib, maximumOutputBytes: 1 << 20)) { error in
            XCTAssertEqual(error as? ZlibError, .corrupt("incorrect data check"))
        }
        // Block type 3 does not exist in DEFLATE.
        XCTAssertThrowsError(try Zlib.decompress([0x07, 0x00], format: .raw, maximumOutputBytes: 100)) { error in
            XCTAssertEqual(error as? ZlibError, .corrupt("invalid block type"))
        }
    }

    func testBytesAfterTheStreamAreRefused() throws {
        let zlib = try Zlib.compress(sample, format: .zlib)
        XCTAssertThrowsError(try Zlib.decompress(zlib + [1, 2, 3], format: .zlib, maximumOutputBytes: 1 << 20)) { error in
            XCTAssertEqual(error as? ZlibError, .trailingData(count: 3))
        }
        let gzip = try Zlib.compress(sample, format: .gzip)
        XCTAssertThrowsError(try Zlib.decompress(gzip + Array("junk".utf8), format: .gzip, maximumOutputBytes: 1 << 20)) { error in
            XCTAssertEqual(error as? ZlibError, .trailingData(count: 4))
        }
    }

    func testAPrefixInflatesNoFurtherThanAsked() throws {
        let gzip = try Zlib.compress(sample, format: .gzip)
        XCTAssertEqual(try Zlib.decompressedPrefix(gzip, format: .gzip, count: 348), Array(sample.prefix(348)))
        // What follows the prefix is never read: a stream cut after it, or a bomb behind it, does not matter.
        let bomb = try Zlib.compress(sample.prefix(400) + [UInt8](repeating: 0, count: 64 << 20), format: .gzip, level: 9)
        XCTAssertEqual(try Zlib.decompressedPrefix(Array(bomb.prefix(bomb.count / 2)), format: .gzip, count: 348),
                       Array(sample.prefix(348)))
        // A shorter stream gives all it has; a stream cut inside the prefix is truncated.
        XCTAssertEqual(try Zlib.decompressedPrefix(gzip, format: .gzip, count: sample.count + 10), sample)
        XCTAssertThrowsError(try Zlib.decompressedPrefix(Array(gzip.prefix(30)), format: .gzip, count: sample.count)) { error in
            XCTAssertEqual(error as? ZlibError, .truncated)
        }
    }

    func testKeepingFirstHoldsThoseBytesAndStillChecksTheWholeStream() throws {
        let gzip = try Zlib.compress(sample, format: .gzip)
        XCTAssertEqual(try Zlib.decompress(gzip, format: .gzip, maximumOutputBytes: 1 << 20, keepingFirst: 1000),
                       Array(sample.prefix(1000)))
        XCTAssertEqual(try Zlib.decompress(gzip, format: .gzip, maximumOutputBytes: 1 << 20, keepingFirst: 1 << 30), sample)
        // The discarded rest is inflated to its end: the CRC-32 is checked, and so is the output limit.
        var corrupt = gzip
        corrupt[corrupt.count - 5] ^= 0xFF
        XCTAssertThrowsError(try Zlib.decompress(corrupt, format: .gzip, maximumOutputBytes: 1 << 20, keepingFirst: 10)) { error in
            XCTAssertEqual(error as? ZlibError, .corrupt("incorrect data check"))
        }
        let bomb = try Zlib.compress([UInt8](repeating: 0, count: 8 << 20), format: .gzip, level: 9)
        XCTAssertThrowsError(try Zlib.decompress(bomb, format: .gzip, maximumOutputBytes: 1 << 20, keepingFirst: 100)) { error in
            XCTAssertEqual(error as? ZlibError, .outputLimitExceeded(limit: 1 << 20))
        }
        XCTAssertEqual(try Zlib.decompress(bomb, format: .gzip, maximumOutputBytes: 8 << 20, keepingFirst: 100),
                       [UInt8](repeating: 0, count: 100))
    }

    func testCRC32MatchesTheStandardCheckValue() {
        // The CRC-32 check value of "123456789" (ISO 3309 / ITU-T V.42).
        XCTAssertEqual(Zlib.crc32(Array("123456789".utf8)), 0xCBF4_3926)
        let continued = Zlib.crc32(Array("6789".utf8), initial: Zlib.crc32(Array("12345".utf8)))
        XCTAssertEqual(continued, 0xCBF4_3926)
        XCTAssertEqual(Zlib.crc32(Array("123456789".utf8)[2...]), Zlib.crc32(Array("3456789".utf8)))
    }
}
