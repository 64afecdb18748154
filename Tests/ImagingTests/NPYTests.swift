import Foundation
import Imaging
import XCTest

final class NPYTests: XCTestCase {
    func testFilesWrittenByNumPyDecodeToTheirValues() throws {
        let readable = try FixtureIndex.load().npy.readable
        XCTAssertGreaterThanOrEqual(readable.count, 20)
        for (name, expected) in readable {
            let array = try NPY.decode(fixtureBytes("npy/\(name)"))
            XCTAssertEqual(array.shape, expected.shape, name)
            XCTAssertEqual(array.values, expected.values, name)
        }
    }

    func testFortranOrderIsRearrangedToCOrder() throws {
        // fortran_3d.npy holds a[i, j, k] with i fastest on disk; values come back with k fastest.
        let array = try NPY.decode(fixtureBytes("npy/fortran_3d.npy"))
        let header = String(decoding: try fixtureBytes("npy/fortran_3d.npy")[10..<128], as: UTF8.self)
        XCTAssertTrue(header.contains("'fortran_order': True"))
        let volume = try XCTUnwrap(array.volume())
        XCTAssertEqual(volume.shape, [2, 3, 4])
        XCTAssertEqual(volume[1, 2, 3], array.values[(1 * 3 + 2) * 4 + 3])
        XCTAssertEqual(volume[1, 0, 0], array.values[12])
    }

    func testUnsupportedDTypesAreRefusedByName() throws {
        let expectations: [String: String] = ["complex.npy": "<c8", "object.npy": "|O", "unicode.npy": "<U5",
                                              "structured.npy": "structured (a list of fields)"]
        XCTAssertEqual(Set(try FixtureIndex.load().npy.refused), Set(expectations.keys))
        for (name, descr) in expectations {
            assertThrows(NPYError.unsupportedDType(descr)) { try NPY.decode(fixtureBytes("npy/\(name)")) }
        }
    }

    func testWrittenArraysLoadInNumPy() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let values: [Float] = (0..<(160 * 160)).map { Float($0 % 251) / 250 }
        try Data(NPY.encode(shape: [160, 160], float32: values)).write(to: directory.appendingPathComponent("slice.npy"))
        try Data(NPY.encode(shape: [2, 3], int32: [-7, 0, 1, 2, 3, Int32.max])).write(to: directory.appendingPathComponent("ints.npy"))
        try Data(NPY.encode(shape: [4], uint8: [0, 1, 254, 255])).write(to: directory.appendingPathComponent("bytes.npy"))
        var volume = Volume(zeros: [3, 4, 5])
        volume[2, 1, 4] = 9
        volume[0, 3, 1] = -2
        try Data(NPY.encode(volume)).write(to: directory.appendingPathComponent("volume.npy"))
        let output = try runPython("""
            import sys, numpy as np
            d = sys.argv[1]
            s = np.load(d + '/slice.npy'); i = np.load(d + '/ints.npy'); b = np.load(d + '/bytes.npy'); v = np.load(d + '/volume.npy')
            print(s.dtype, s.shape, np.array_equal(s.ravel(), (np.arange(25600) % 251).astype(np.float32) / np.float32(250)))
            print(i.dtype, i.tolist(), b.dtype, b.tolist())
            print(v.dtype, v.shape, v[2, 1, 4], v[0, 3, 1], v.sum())
            print(open(d + '/slice.npy', 'rb').read(128)[-1:] == b'\\n', len(open(d + '/slice.npy', 'rb').read()))
            """, arguments: [directory.path])
        XCTAssertEqual(output, """
            float32 (160, 160) True
            int32 [[-7, 0, 1], [2, 3, 2147483647]] uint8 [0, 1, 254, 255]
            float32 (3, 4, 5) 9.0 -2.0 7.0
            True 102528

            """)
        // And our reader agrees with our writer.
        let reread = try NPY.decode([UInt8](Data(contentsOf: directory.appendingPathComponent("volume.npy"))))
        XCTAssertEqual(reread.volume(), volume)
    }

    func testMalformedFilesGiveSpecificErrors() throws {
        let good = NPY.encode(shape: [2, 3], float32: [1, 2, 3, 4, 5, 6])
        assertThrows(NPYError.badMagic) { try NPY.decode(Array("PNG and other things".utf8)) }
        assertThrows(NPYError.badMagic) { try NPY.decode([]) }
        assertThrows(NPYError.truncatedHeader) { try NPY.decode(Array(good[..<7])) }
        assertThrows(NPYError.truncatedHeader) { try NPY.decode(Array(good[..<60])) }
        var version = good
        version[6] = 4
        assertThrows(NPYError.unsupportedVersion(major: 4, minor: 0)) { try NPY.decode(version) }
        assertThrows(NPYError.truncatedData(expected: 24, actual: 20)) { try NPY.decode(Array(good.dropLast(4))) }
        assertThrows(NPYError.sizeMismatch(expected: 24, actual: 28)) { try NPY.decode(good + [0, 0, 0, 0]) }

        func withHeader(_ dict: String) -> [UInt8] {
            let text = Array(dict.utf8) + [UInt8(ascii: "\n")]
            return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(text.count), 0] + text + [UInt8](repeating: 0, count: 24)
        }
        assertThrows(NPYError.badHeader("expected the keys 'descr', 'fortran_order' and 'shape', found [\"descr\", \"shape\"]")) {
            try NPY.decode(withHeader("{'descr': '<f4', 'shape': (6,), }"))
        }
        assertThrows(NPYError.badHeader("'shape' holds something other than non-negative integers")) {
            try NPY.decode(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }"))
        }
        assertThrows(NPYError.badHeader("'fortran_order' is not True or False")) {
            try NPY.decode(withHeader("{'descr': '<f4', 'fortran_order': 'no', 'shape': (6,), }"))
        }
        assertThrows(NPYError.badHeader("key 'shape' appears twice")) {
            try NPY.decode(withHeader("{'descr': '<f4', 'shape': (6,), 'fortran_order': False, 'shape': (6,)}"))
        }
        assertThrows(NPYError.badHeader("unterminated string")) { try NPY.decode(withHeader("{'descr: <f4}")) }
        assertThrows(NPYError.badHeader("text after the closing brace")) {
            try NPY.decode(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} __import__('os')"))
        }
        assertThrows(NPYError.unsupportedDType("float32")) {
            try NPY.decode(withHeader("{'descr': 'float32', 'fortran_order': False, 'shape': (6,), }"))
        }
        // Python 2 writers put an L after longs; keys in another order are fine too.
        let legacy = try NPY.decode(withHeader("{'shape': (2L, 3L), 'fortran_order': False, 'descr': '<f4'}"))
        XCTAssertEqual(legacy.shape, [2, 3])
        assertThrows(NPYError.tooManyElements(count: 1 << 40, limit: NPY.defaultMaximumElements)) {
            try NPY.decode(withHeader("{'descr': '|u1', 'fortran_order': False, 'shape': (1048576, 1048576), }"))
        }
        assertThrows(NPYError.tooManyElements(count: .max, limit: NPY.defaultMaximumElements)) {
            try NPY.decode(withHeader("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 4611686018427387904), }"))
        }
    }

    func testHostileHeadersAreReadAloneAndEchoedShort() throws {
        func header(_ dict: String) -> [UInt8] {
            let text = Array(dict.utf8) + [UInt8(ascii: "\n")]
            return [0x93] + Array("NUMPY".utf8) + [2, 0] + withUnsafeBytes(of: UInt32(text.count).littleEndian, Array.init) + text
        }
        // The header alone (no data) says the shape: a (1, 1, 1000000) array costs nothing to look at.
        let long = try NPY.header(header("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1000000), }"))
        XCTAssertEqual(long.shape, [1, 1, 1_000_000])
        XCTAssertEqual(long.dataBytes, 4_000_000)
        let manyAxes = try NPY.header(header("{'descr': '|u1', 'fortran_order': True, 'shape': (\(Array(repeating: "1", count: 26).joined(separator: ", "))), }"))
        XCTAssertEqual(manyAxes.shape.count, 26)
        // A 5 MiB dtype string is quoted in 200 characters, not 5 MiB (nor 31 MB of JSON escapes).
        let huge = String(repeating: "\u{7}x", count: 5 << 19)
        assertThrows(NPYError.self, { try NPY.decode(header("{'descr': '\(huge)', 'fortran_order': False, 'shape': (6,), }")) }) { error in
            guard case .unsupportedDType(let descr) = error else { return false }
            return descr.count < 250 && "\(error)".count < 400 && descr.hasSuffix("(\(huge.count) characters)")
        }
        let keys = (0..<100_000).map { "'k\($0)': 1" }.joined(separator: ", ")
        assertThrows(NPYError.self, { try NPY.decode(header("{\(keys)}")) }) { error in
            "\(error)".count < 500
        }
    }

    func testHalfPrecisionEdgeValues() throws {
        // float16 bit patterns: 1.0, −2.0, the largest finite (65504), the smallest subnormal (2^−24), +∞.
        let bits: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00]
        let text = Array("{'descr': '<f2', 'fortran_order': False, 'shape': (5,), }".utf8)
        let padded = text + [UInt8](repeating: UInt8(ascii: " "), count: (64 - (10 + text.count + 1) % 64) % 64) + [UInt8(ascii: "\n")]
        let file = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(padded.count), 0] + padded + bits.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        XCTAssertEqual(try NPY.decode(file).values, [1, -2, 65504, 0x1p-24, .infinity])
    }
}
