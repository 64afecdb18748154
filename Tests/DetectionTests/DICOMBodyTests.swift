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

    func testMultipartPartsAreReadBetweenDelimiters() throws {
        let parts = try MultipartRelated.parts(body(["one", "two\r\n-b"]), boundary: "b", limits: limits)
        XCTAssertEqual(parts.map { String(decoding: $0, as: UTF8.self) }, ["one", "two\r\n-b"])
        let opening = Array("--b\r\nContent-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\nx\r\n--b--".utf8)
        XCTAssertEqual(try MultipartRelated.parts(opening, boundary: "b", limits: limits), [Array("x".utf8)])
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
        XCTAssertThrowsError(try DICOMBody.files(archive, DICOMRequest(), limits: limits)) { error in
            XCTAssertEqual((error as? InputError)?.kind, .tooLarge, "\(error)")
        }
        let members = try ZIPArchive.members(archive, maximumMembers: 2, maximumBytes: 120)
        XCTAssertEqual(members.map(\.name), ["a.npy", "b.npy"])
        XCTAssertEqual(members.map(\.bytes), [Array(repeating: 1, count: 60), Array(repeating: 2, count: 60)])
        var corrupt = archive
        corrupt[36] ^= 0xFF   // inside the first member's deflated bytes (its data starts at 30 + 5)
        XCTAssertThrowsError(try ZIPArchive.members(corrupt, maximumMembers: 2, maximumBytes: 120))
    }

    func testDICOMIsSniffedByItsPreamble() {
        XCTAssertEqual(InputFormat.sniff([UInt8](repeating: 0, count: 128) + Array("DICM".utf8)), .dicom)
        XCTAssertNil(InputFormat.sniff([UInt8](repeating: 0, count: 128) + Array("DICX".utf8)))
    }
}
