import Foundation
import Imaging
import TestSupport
import XCTest
import ZlibCodec

/// Repository root: three levels up from this file (Tests/ImagingTests/<file>).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let fixtures = repositoryRoot.appendingPathComponent("Tests/Fixtures/imaging")

/// `Tests/Fixtures/imaging/index.json`, written by `Training/tools/imaging_fixtures.py`. Read with
/// JSONDecoder, which parses numbers correctly rounded (JSONSerialization can be off by an ulp).
struct FixtureIndex: Decodable {
    struct ArrayEntry: Decodable {
        let shape: [Int]
        let values: [Float]
    }

    struct NIfTIEntry: Decodable {
        let shape: [Int]
        let values: [Float]
        let affine: [[Double]]
        let datatype: Int
        let voxOffset: Int?
    }

    struct PNGEntry: Decodable {
        let width: Int
        let height: Int
        let gray: [Float]
    }

    struct PixelPosition: Decodable {
        let row: Int
        let column: Int
    }

    struct PreprocessingCase: Decodable {
        let image: String
        let brain: String?
        let lesion: String?
        let clipValue: Float
        let inputShape: [Int]?
        let axes: [Int]?
        let flips: [Bool]?
        let spacing: [Double]?
        let resampledShape: [Int]?
        let cropStart: [Int]
    }

    struct Section<Readable: Decodable, Refused: Decodable>: Decodable {
        let readable: [String: Readable]
        let refused: Refused
    }

    struct PreprocessingSection: Decodable {
        let cases: [String: PreprocessingCase]
        let percentiles: [String: Float]
    }

    let npy: Section<ArrayEntry, [String]>
    let nifti: Section<NIfTIEntry, [String: String]>
    let png: Section<PNGEntry, [String: PixelPosition]>
    let preprocessing: PreprocessingSection

    static func load() throws -> FixtureIndex {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(FixtureIndex.self, from: Data(contentsOf: fixtures.appendingPathComponent("index.json")))
    }
}

func fixtureBytes(_ path: String) throws -> [UInt8] {
    try [UInt8](Data(contentsOf: fixtures.appendingPathComponent(path)))
}

/// A gzip-compressed `.npy` fixture.
func fixtureArray(_ path: String) throws -> NPYArray {
    try NPY.decode(Zlib.decompress(fixtureBytes(path), format: .gzip, maximumOutputBytes: 1 << 26))
}

/// A fresh directory under the system's temporary folder, removed by the caller.
func temporaryDirectory() throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}

struct PythonUnavailable: Error, CustomStringConvertible {
    var description: String { "no Python environment with numpy and nibabel: set MIMOOD_PYTHON or run scripts/test (it creates .venv)" }
}

/// Runs a Python script with the project's environment (numpy, nibabel): `$MIMOOD_PYTHON`, or the
/// `.venv` that scripts/test creates at the repository root. Returns standard output.
func runPython(_ script: String, arguments: [String] = []) throws -> String {
    let candidates: [String?] = [ProcessInfo.processInfo.environment["MIMOOD_PYTHON"], repositoryRoot.appendingPathComponent(".venv/bin/python").path]
    guard let python = candidates.compactMap({ $0 }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw PythonUnavailable()
    }
    let finished = try runProcess(python, ["-c", script] + arguments)
    guard finished.status == 0 else {
        XCTFail("python failed: \(finished.errors)")
        return ""
    }
    return finished.output
}

/// Asserts that `body` throws an error equal to `expected`.
func assertThrows<E: Error & Equatable, T>(_ expected: E, file: StaticString = #filePath, line: UInt = #line,
                                           _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected \(expected), nothing was thrown", file: file, line: line)
    } catch let error as E {
        XCTAssertEqual(error, expected, file: file, line: line)
    } catch {
        XCTFail("expected \(expected), got \(error)", file: file, line: line)
    }
}

/// Asserts that `body` throws an error of type `E` that `matches` accepts (for errors carrying text).
func assertThrows<E: Error, T>(_: E.Type, file: StaticString = #filePath, line: UInt = #line,
                               _ body: () throws -> T, matches: (E) -> Bool) {
    do {
        _ = try body()
        XCTFail("expected a \(E.self), nothing was thrown", file: file, line: line)
    } catch let error as E {
        XCTAssertTrue(matches(error), "unexpected \(error)", file: file, line: line)
    } catch {
        XCTFail("expected a \(E.self), got \(error)", file: file, line: line)
    }
}
