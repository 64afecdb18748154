import Foundation
import Imaging
import XCTest
import ZlibCodec

final class PNGTests: XCTestCase {
    func testFilesFromImageMagickAndTheSpecDecodeToTheirPixels() throws {
        let readable = try FixtureIndex.load().png.readable
        // Filters 0–4 at 8 and 16 bits, adaptive, Adam7 (8, 16, 4 bits, tiny), palette, RGB, RGBA.
        XCTAssertGreaterThanOrEqual(readable.count, 19)
        for (name, expected) in readable {
            let image = try PNG.decode(fixtureBytes("png/\(name)")).grayscale()
            XCTAssertEqual(image.width, expected.width, name)
            XCTAssertEqual(image.height, expected.height, name)
            XCTAssertEqual(image.pixels, expected.gray, name)
        }
    }

    func testColourIsRefusedNamingThePixel() throws {
        let image = try PNG.decode(fixtureBytes("png/colour_rgb.png"))
        XCTAssertEqual(image.color, .rgb)
        let position = try XCTUnwrap(try FixtureIndex.load().png.refused["colour_rgb.png"])
        assertThrows(PNGError.notGrayscale(row: position.row, column: position.column)) { try image.grayscale() }
    }

    func testEveryLayoutRoundTrips() throws {
        var generator = SystemRandomNumberGenerator()
        let layouts: [(PNGImage.Color, Int)] = [(.gray, 1), (.gray, 2), (.gray, 4), (.gray, 8), (.gray, 16), (.grayAlpha, 8),
                                                (.grayAlpha, 16), (.rgb, 8), (.rgb, 16), (.rgba, 8), (.rgba, 16)]
        for (color, depth) in layouts {
            for (width, height) in [(1, 1), (13, 7), (64, 3)] {
                let count = width * height * color.channels
                // Half smooth ramps (so every filter wins somewhere), half noise.
                let samples = (0..<count).map { index -> UInt16 in
                    let maximum = (1 << depth) - 1
                    return index % 2 == 0 ? UInt16(index * 5 % (maximum + 1)) : UInt16(Int.random(in: 0...maximum, using: &generator))
                }
                let image = PNGImage(width: width, height: height, color: color, bitDepth: depth, samples: samples)
                XCTAssertEqual(try PNG.decode(PNG.encode(image)), image, "\(color) \(depth)-bit \(width)×\(height)")
            }
        }
    }

    func testEncodedFilesDecodeInPillow() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (width, height) = (37, 23)
        let gray8 = (0..<(width * height)).map { UInt16(($0 * 7) % 256) }
        let gray16 = (0..<(width * height)).map { UInt16(($0 * 2741) % 65536) }
        let rgba = (0..<(width * height * 4)).map { UInt16(($0 * 13) % 256) }
        let files: [(String, PNGImage)] = [
            ("gray8", PNGImage(width: width, height: height, color: .gray, bitDepth: 8, samples: gray8)),
            ("gray16", PNGImage(width: width, height: height, color: .gray, bitDepth: 16, samples: gray16)),
            ("rgb", PNGImage(width: width, height: height, color: .rgb, bitDepth: 8, samples: Array(rgba[..<(width * height * 3)]))),
            ("rgba", PNGImage(width: width, height: height, color: .rgba, bitDepth: 8, samples: rgba)),
        ]
        for (name, image) in files {
            try Data(PNG.encode(image)).write(to: directory.appendingPathComponent("\(name).png"))
            let shape = image.color.channels == 1 ? [height, width] : [height, width, image.color.channels]
            try Data(NPY.encode(shape: shape, int32: image.samples.map(Int32.init))).write(to: directory.appendingPathComponent("\(name).npy"))
        }
        let output = try runPython("""
            import sys, numpy as np
            from PIL import Image
            for name in ['gray8', 'gray16', 'rgb', 'rgba']:
                with Image.open(f'{sys.argv[1]}/{name}.png') as image:
                    image.load()
                    print(name, image.mode, np.array_equal(np.asarray(image).astype(np.int64), np.load(f'{sys.argv[1]}/{name}.npy')))
            """, arguments: [directory.path])
        XCTAssertEqual(output, "gray8 L True\ngray16 I;16 True\nrgb RGB True\nrgba RGBA True\n")
    }

    func testGrayscaleFromAFloatImageQuantisesAndClamps() throws {
        let image = GrayImage(width: 4, height: 1, pixels: [-0.5, 0.5, 1.5, .nan])
        XCTAssertEqual(PNGImage(gray: image).samples, [0, 128, 255, 0])
        XCTAssertEqual(PNGImage(gray: image, bitDepth: 16).samples, [0, 32768, 65535, 0])
    }

    // MARK: Malformed files

    private func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + body + bigEndian(Zlib.crc32(body))
    }

    private func bigEndian(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian, Array.init) }

    private func header(width: UInt32 = 4, height: UInt32 = 2, depth: UInt8 = 8, color: UInt8 = 0, compression: UInt8 = 0,
                        filter: UInt8 = 0, interlace: UInt8 = 0) -> [UInt8] {
        chunk("IHDR", bigEndian(width) + bigEndian(height) + [depth, color, compression, filter, interlace])
    }

    /// Rows of a 4×2 8-bit gray image: filter byte then four samples.
    private func imageData(_ rows: [UInt8] = [0, 10, 20, 30, 40, 1, 5, 5, 5, 5]) throws -> [UInt8] {
        chunk("IDAT", try Zlib.compress(rows, format: .zlib))
    }

    private let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    private var end: [UInt8] { chunk("IEND", []) }

    func testAHandBuiltFileDecodes() throws {
        let image = try PNG.decode(signature + header() + imageData() + end)
        XCTAssertEqual(image.samples, [10, 20, 30, 40, 5, 10, 15, 20])    // row 2: Sub filter
    }

    func testMalformedFilesGiveSpecificErrors() throws {
        let good = try signature + header() + imageData() + end
        assertThrows(PNGError.badSignature) { try PNG.decode(Array(good.dropFirst())) }
        assertThrows(PNGError.badSignature) { try PNG.decode(Array("GIF89a".utf8)) }
        var flipped = good
        flipped[good.count - 14] ^= 0x01          // last byte of IDAT's CRC
        assertThrows(PNGError.crcMismatch(chunk: "IDAT")) { try PNG.decode(flipped) }
        var corruptHeader = good
        corruptHeader[18] ^= 0x01                 // inside IHDR's data
        assertThrows(PNGError.crcMismatch(chunk: "IHDR")) { try PNG.decode(corruptHeader) }
        assertThrows(PNGError.truncated("inside chunk IDAT")) { try PNG.decode(Array(good.dropLast(20))) }
        assertThrows(PNGError.truncated("no IEND chunk")) { try PNG.decode(Array(good.dropLast(12))) }
        assertThrows(PNGError.truncated("no IHDR chunk")) { try PNG.decode(self.signature) }

        assertThrows(PNGError.badChunk("the first chunk is IDAT, not IHDR")) { try PNG.decode(self.signature + self.imageData() + self.header() + self.end) }
        assertThrows(PNGError.missingChunk("IDAT")) { try PNG.decode(self.signature + self.header() + self.end) }
        assertThrows(PNGError.badChunk("unknown critical chunk ABCD")) {
            try PNG.decode(self.signature + self.header() + self.chunk("ABCD", [1]) + self.imageData() + self.end)
        }
        // Unknown ancillary chunks (lower-case first letter) are skipped.
        XCTAssertNoThrow(try PNG.decode(signature + header() + chunk("abCD", [1]) + imageData() + end))
        let split = try Zlib.compress([0, 10, 20, 30, 40, 1, 5, 5, 5, 5], format: .zlib)
        assertThrows(PNGError.badChunk("IDAT chunks are not consecutive")) {
            try PNG.decode(self.signature + self.header() + self.chunk("IDAT", Array(split[..<5])) + self.chunk("teXt", [65])
                           + self.chunk("IDAT", Array(split[5...])) + self.end)
        }
        XCTAssertNoThrow(try PNG.decode(signature + header() + chunk("IDAT", Array(split[..<5])) + chunk("IDAT", Array(split[5...])) + end))
        assertThrows(PNGError.badChunk("a chunk name is not four letters (at byte 33)")) {
            try PNG.decode(self.signature + self.header() + self.chunk("ID4T", [])  + self.end)
        }
    }

    func testHeaderValidation() throws {
        func decode(_ header: [UInt8]) throws -> PNGImage { try PNG.decode(signature + header + imageData() + end) }
        assertThrows(PNGError.badHeader("the size 0×2 is not 1…2^31−1 in both directions")) { try decode(self.header(width: 0)) }
        assertThrows(PNGError.badHeader("the size 4×2147483648 is not 1…2^31−1 in both directions")) { try decode(self.header(height: 1 << 31)) }
        assertThrows(PNGError.badHeader("bit depth 3 is not allowed for colour type 0")) { try decode(self.header(depth: 3)) }
        assertThrows(PNGError.badHeader("bit depth 4 is not allowed for colour type 2")) { try decode(self.header(depth: 4, color: 2)) }
        assertThrows(PNGError.badHeader("colour type 5 does not exist")) { try decode(self.header(color: 5)) }
        assertThrows(PNGError.badHeader("compression method 1 is not 0 (deflate)")) { try decode(self.header(compression: 1)) }
        assertThrows(PNGError.badHeader("filter method 1 is not 0")) { try decode(self.header(filter: 1)) }
        assertThrows(PNGError.badHeader("interlace method 2 is not 0 or 1")) { try decode(self.header(interlace: 2)) }
        assertThrows(PNGError.badHeader("IHDR has 12 bytes, not 13")) {
            try PNG.decode(self.signature + self.chunk("IHDR", Array(self.header()[8..<20])) + self.imageData() + self.end)
        }
        assertThrows(PNGError.tooLarge("100000×100000 pixels exceed the limits (16384×16384, 67108864 pixels)")) {
            try decode(self.header(width: 100_000, height: 100_000))
        }
        let limits = PNGLimits(maximumWidth: 100, maximumHeight: 100, maximumPixels: 6)
        assertThrows(PNGError.tooLarge("4×2 pixels exceed the limits (100×100, 6 pixels)")) {
            try PNG.decode(self.signature + self.header() + self.imageData() + self.end, limits: limits)
        }
    }

    func testIHDRAloneTellsTheSizeBeforeAnyImageData() throws {
        // The signature and IHDR: 33 bytes, nothing after them.
        let header = try PNG.header(signature + self.header(interlace: 1))
        XCTAssertEqual([header.width, header.height, header.channels], [4, 2, 1])
        XCTAssertTrue(header.interlaced)
        // Adam7's non-empty passes of a 4×2 image, one row each with its filter byte: 1, 1, 2 and 4 pixels.
        XCTAssertEqual(header.inflatedByteCount, 2 + 2 + 3 + 5)
        assertThrows(PNGError.tooLarge("100000×100000 pixels exceed the limits (16384×16384, 67108864 pixels)")) {
            try PNG.header(self.signature + self.header(width: 100_000, height: 100_000))
        }
        assertThrows(PNGError.badChunk("the first chunk is IDAT, not IHDR")) { try PNG.header(self.signature + (try self.imageData())) }
        assertThrows(PNGError.truncated("no IHDR chunk")) { try PNG.header(self.signature) }
    }

    func testImageDataMustMatchTheHeader() throws {
        func decode(_ rows: [UInt8], _ header: [UInt8]? = nil) throws -> PNGImage {
            try PNG.decode(signature + (header ?? self.header()) + imageData(rows) + end)
        }
        assertThrows(PNGError.badImageData("row 1 uses filter type 7; only 0…4 exist")) { try decode([0, 1, 2, 3, 4, 7, 1, 2, 3, 4]) }
        assertThrows(PNGError.badImageData("it inflates to 9 bytes; the header implies 10")) { try decode([0, 1, 2, 3, 4, 0, 1, 2, 3]) }
        assertThrows(PNGError.badImageData("it inflates to more than the 10 bytes the header implies")) {
            try decode([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0])
        }
        assertThrows(PNGError.compression(.corrupt("incorrect header check"))) {
            try PNG.decode(self.signature + self.header() + self.chunk("IDAT", [1, 2, 3, 4]) + self.end)
        }
        // Palette: 2 entries, but a pixel uses entry 3.
        let palette = chunk("PLTE", [0, 0, 0, 255, 255, 255])
        assertThrows(PNGError.badImageData("pixel 3 uses palette entry 3; the palette has 2")) {
            try PNG.decode(self.signature + self.header(color: 3) + palette + self.imageData([0, 0, 1, 1, 3, 0, 0, 0, 0, 0]) + self.end)
        }
        assertThrows(PNGError.missingChunk("PLTE")) { try decode([0, 0, 1, 1, 0, 0, 0, 0, 0, 0], self.header(color: 3)) }
        assertThrows(PNGError.badChunk("a PLTE chunk in a grayscale image")) {
            try PNG.decode(self.signature + self.header() + palette + self.imageData() + self.end)
        }
        assertThrows(PNGError.badChunk("tRNS of 6 bytes does not fit colour type 0")) {
            try PNG.decode(self.signature + self.header() + self.chunk("tRNS", [0, 0, 0, 0, 0, 0]) + self.imageData() + self.end)
        }
    }

    func testTransparencyIsCompositedOverBlack() throws {
        // Gray colour key 20: that pixel becomes background (0); palette alpha 128 halves an entry.
        let keyed = try PNG.decode(signature + header() + chunk("tRNS", [0, 20]) + imageData() + end)
        XCTAssertEqual(keyed.color, .grayAlpha)
        XCTAssertEqual(try keyed.grayscale().pixels, [10, 0, 30, 40, 5, 10, 15, 0].map { Float($0) / 255 })
        let palette = chunk("PLTE", [0, 0, 0, 200, 200, 200]) + chunk("tRNS", [255, 128])
        let translucent = try PNG.decode(signature + header(color: 3) + palette + imageData([0, 0, 1, 1, 0, 0, 0, 0, 0, 1]) + end)
        XCTAssertEqual(translucent.color, .rgba)
        XCTAssertEqual(try translucent.grayscale().pixels[1], Float(200) / 255 * (Float(128) / 255))
    }
}
