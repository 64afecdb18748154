@testable import Detection
import Imaging
import XCTest
import ZlibCodec

/// How the files of a DICOM body are found: the strict multipart/related reader, ZIP members, and the
/// sniffing of DICOM and ZIP bytes. (The DICOM decoding itself is driven through the real server with
/// real files in Deploy/tests/test_dicom.py.)
final class DICOMBodyTests: XCTestCase {
    private let limits = DICOMLimits(maximumFiles: 3, maximumBytes: 100)

    private func body(_ parts: [String], boundary: String = "b", type: String = "application/dicom", close: String = "--b--") -> [UInt8] {
        Array(("preamble\r\n" + parts.map { "--\(boundary)\r\nContent-Type: \(type)\r\n\r\n\($0)\r\n" }.joined() + close + "\r\nepilogue").utf8)
    }

    /// A data element: its tag, VR and value.
    private typealias Element = (group: UInt16, element: UInt16, vr: String, value: [UInt8])

    /// A Part 10 file in explicit VR little endian holding the data set `elements`, in order.
    private func dicomFile(_ elements: [Element]) -> [UInt8] {
        func encoded(_ elements: [Element]) -> [UInt8] {
            elements.flatMap { element -> [UInt8] in
                let value = element.value.count % 2 == 0 ? element.value : element.value + [element.vr == "UI" ? 0 : 32]
                let tag = withUnsafeBytes(of: element.group.littleEndian, Array.init) + withUnsafeBytes(of: element.element.littleEndian, Array.init)
                let length = ["OB", "OW", "SQ", "UN"].contains(element.vr)
                    ? [0, 0] + withUnsafeBytes(of: UInt32(value.count).littleEndian, Array.init)
                    : withUnsafeBytes(of: UInt16(value.count).littleEndian, Array.init)
                return tag + Array(element.vr.utf8) + length + value
            }
        }
        let meta = encoded([(0x0002, 0x0001, "OB", [0, 1]), (0x0002, 0x0002, "UI", Array("1.2.840.10008.5.1.4.1.1.4".utf8)),
                            (0x0002, 0x0003, "UI", Array("1.2.3.4".utf8)), (0x0002, 0x0010, "UI", Array("1.2.840.10008.1.2.1".utf8))])
        let groupLength = encoded([(0x0002, 0x0000, "UL", withUnsafeBytes(of: UInt32(meta.count).littleEndian, Array.init))])
        return [UInt8](repeating: 0, count: 128) + Array("DICM".utf8) + groupLength + meta + encoded(elements)
    }

    /// A 16-bit grayscale MR image of `count` frames of 4 × 4 pixels placed in space, with `pixels` (little
    /// endian) as Pixel Data or without it.
    private func frames(_ count: Int, pixels: [UInt8]? = nil) -> [UInt8] {
        let header: [Element] = [
            (0x0008, 0x0060, "CS", Array("MR".utf8)), (0x0020, 0x0032, "DS", Array("0\\0\\0".utf8)),
            (0x0020, 0x0037, "DS", Array("1\\0\\0\\0\\1\\0".utf8)), (0x0028, 0x0002, "US", [1, 0]),
            (0x0028, 0x0004, "CS", Array("MONOCHROME2".utf8)), (0x0028, 0x0008, "IS", Array(String(count).utf8)),
            (0x0028, 0x0010, "US", [4, 0]), (0x0028, 0x0011, "US", [4, 0]), (0x0028, 0x0030, "DS", Array("1\\1".utf8)),
            (0x0028, 0x0100, "US", [16, 0]), (0x0028, 0x0101, "US", [16, 0]),
        ]
        return dicomFile(header + (pixels.map { [(0x7FE0, 0x0010, "OW", $0)] } ?? []))
    }

    func testMultipartPartsAreReadBetweenDelimiters() throws {
        let bytes = body(["one", "two\r\n-b"])
        let parts = try MultipartRelated.parts(bytes, boundary: "b", limits: limits)
        XCTAssertEqual(parts.map { String(decoding: bytes[$0], as: UTF8.self) }, ["one", "two\r\n-b"])
        let opening = Array("--b\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\nx\r\n--b--".utf8)
        XCTAssertEqual(try MultipartRelated.parts(opening, boundary: "b", limits: limits).map { Array(opening[$0]) }, [Array("x".utf8)])
    }

    /// The DICOM answer's framing reads back with the reader a request's body goes through.
    func testMultipartWrittenReadsBackPartForPart() throws {
        let parts = [Array("first".utf8), Array("\r\n--second\r\n".utf8), []]
        let (contentType, body) = MultipartRelated.encode(parts, partType: "application/dicom")
        XCTAssertTrue(contentType.hasPrefix("multipart/related; type=\"application/dicom\"; boundary=mimood-"), contentType)
        let boundary = String(contentType.split(separator: "=").last!)
        XCTAssertEqual(try MultipartRelated.parts(body, boundary: boundary, limits: limits).map { Array(body[$0]) }, parts)
    }

    func testMultipartRefusalsAreSpecific() {
        let cases: [([UInt8], String)] = [
            (body(["one"], type: "image/png"), "must be application/dicom"),
            (body(["one"], close: ""), "not closed by a delimiter"),
            (body(["one"], close: "--b"), "do not end"),
            (body(["one"], boundary: "c", close: "--c--"), "no delimiter"),
            (Array("--b\r\nContent-Type: application/dicom\r\n\r\none\r\n--bx".utf8), "not followed by CRLF"),
            (body(["a", "b", "c", "d"]), "more than the 3 DICOM files"),
            (body([String(repeating: "x", count: 101)]), "more than the 100 bytes"),
            (Array("--b\r\nContent-Type: application/dicom\r\n".utf8) + [UInt8](repeating: 65, count: 9000), "do not end"),
            (Array("--b--".utf8), "no part"),
        ]
        for (bytes, detail) in cases {
            XCTAssertThrowsError(try MultipartRelated.parts(bytes, boundary: "b", limits: limits)) { error in
                XCTAssertTrue("\(error)".contains(detail), "\(error)")
            }
        }
    }

    func testZIPMembersAreCheckedAgainstTheLimitsFromTheDirectory() throws {
        let archive = try NPZ.encode([("a", Array(repeating: 1, count: 60)), ("b", Array(repeating: 2, count: 60))])
        XCTAssertEqual(InputFormat.sniff(archive), .dicom)
        XCTAssertThrowsError(try DICOMBody(locating: archive, DICOMRequest(), limits: limits)) { error in
            XCTAssertEqual((error as? InputError)?.kind, .tooLarge, "\(error)")
            XCTAssertEqual((error as? InputError)?.limit, .decoder, "\(error)")
        }
        let entries = try ZIPArchive.entries(archive, maximumMembers: 2, maximumBytes: 120)
        XCTAssertEqual(entries.map(\.name), ["a.npy", "b.npy"])
        XCTAssertEqual(try entries.map { try ZIPArchive.contents(of: $0, in: archive) }, [Array(repeating: 1, count: 60), Array(repeating: 2, count: 60)])
        var corrupt = archive
        corrupt[36] ^= 0xFF   // inside the first member's deflated bytes (its data starts at 30 + 5)
        XCTAssertThrowsError(try ZIPArchive.contents(of: entries[0], in: corrupt))
    }

    /// Over `maximumFiles` (a ZIP's directory, multipart delimiters) or `maximumFrames` (each file's
    /// header, all files together): refused naming that limit, before any file is inflated or parsed.
    func testFilesAndFramesOverTheLimitsAreRefusedNamingThem() throws {
        var limits = DetectionInput.Limits()
        (limits.dicom.maximumFiles, limits.dicom.maximumFrames) = (2, 5)
        let cases: [(name: String, bytes: [UInt8], boundary: String?, limit: InputError.Limit, detail: String)] = [
            ("three ZIP members", try NPZ.encode([("a", [1]), ("b", [2]), ("c", [3])]), nil, .dicomFiles, "3 members, more than the 2"),
            ("three parts", body(["one", "two", "three"]), "b", .dicomFiles, "more than the 2 DICOM files"),
            ("six frames in one file", frames(6), nil, .dicomFrames, "6 frames, more than the 5"),
            ("three and three frames", body([frames(3), frames(3)].map { String(decoding: $0, as: Unicode.ASCII.self) }), "b",
             .dicomFrames, "more than the 5 frames"),
        ]
        for (name, bytes, boundary, limit, detail) in cases {
            let request = DICOMRequest(multipartBoundary: boundary)
            let bound = { _ = try InputHeader.locateDICOM(bytes: bytes, preprocessed: false, limits: limits, dicom: request)?.peakBound }
            let header = { _ = try InputHeader(bytes: bytes, preprocessed: false, limits: limits, dicom: request) }
            // Files are counted from the framing, before the memory for reading them is reserved; frames from each file's header.
            for read in limit == .dicomFiles ? [bound, header] : [header] {
                XCTAssertThrowsError(try read()) { error in
                    guard let error = error as? InputError else { return XCTFail("\(name): \(error)") }
                    XCTAssertEqual(error.kind, .tooLarge, "\(name): \(error)")
                    XCTAssertEqual(error.limit, limit, "\(name): \(error)")
                    XCTAssertTrue(error.description.contains(detail), "\(name): \(error)")
                }
            }
            if limit == .dicomFrames { XCTAssertNoThrow(try bound(), name) }
        }
    }

    func testTheBoundReadBeforeParsingCoversThePeakOfTheHeaderReadAfter() throws {
        let limits = DetectionInput.Limits(maximumDecodedBytes: 1 << 20)
        let file = frames(1)
        for (bytes, boundary) in [(file, nil), (body([String(decoding: file, as: Unicode.ASCII.self)]), "b")] {
            let request = DICOMRequest(multipartBoundary: boundary)
            let header = try InputHeader(bytes: bytes, preprocessed: false, limits: limits, dicom: request)
            XCTAssertEqual(header.cost.volumeShape, [4, 4, 1])
            let bound = try XCTUnwrap(InputHeader.locateDICOM(bytes: bytes, preprocessed: false, limits: limits, dicom: request)?.peakBound)
            XCTAssertLessThanOrEqual(header.cost.peakBytes, bound)
            // Parsed in place: reading a file holds nothing besides the body.
            XCTAssertEqual(bound, InputCost.largestDICOMPeakBytes(fileReadingBytes: 0, limits))
        }
        // Decoded from its header, whose parsed object gives its pixels.
        let image = frames(1, pixels: (0..<16).flatMap { index -> [UInt8] in [UInt8(index * 10 + 50), 0] })
        let input = try DetectionInput(bytes: image, header: InputHeader(bytes: image, preprocessed: false, limits: limits))
        XCTAssertEqual(input.sliceCount, 1)
        // A ZIP's largest member as its directory declares it, stored and inflated.
        let archive = try NPZ.encode([("a", Array(repeating: 1, count: 1000))])
        let bound = try XCTUnwrap(InputHeader.locateDICOM(bytes: archive, preprocessed: false, limits: limits, dicom: DICOMRequest())?.peakBound)
        let member = try ZIPArchive.entries(archive, maximumMembers: 1, maximumBytes: 1 << 20)[0]
        XCTAssertEqual(bound, InputCost.largestDICOMPeakBytes(fileReadingBytes: member.readingBytes, limits))
        XCTAssertLessThanOrEqual(bound, InputCost.largestPeakBytes(limits))
        XCTAssertNil(try InputHeader.locateDICOM(bytes: NPY.encode(shape: [2, 2], float32: [0, 1, 2, 3]), preprocessed: false,
                                                 limits: limits, dicom: DICOMRequest()))
    }

    func testDICOMIsSniffedByItsPreamble() {
        XCTAssertEqual(InputFormat.sniff([UInt8](repeating: 0, count: 128) + Array("DICM".utf8)), .dicom)
        XCTAssertNil(InputFormat.sniff([UInt8](repeating: 0, count: 128) + Array("DICX".utf8)))
    }
}
