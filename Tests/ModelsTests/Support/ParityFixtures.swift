import Foundation
import Kernels
import XCTest

/// Tests/Fixtures/parity/index.json: every array PyTorch computed, with shape and tolerance.
struct ParityIndex: Decodable {
    struct Pipeline: Decodable {
        let method: String
        let lambda: Double
        let steps: Int
        let restorations: Int
        let stepsRun: Int
        let lambdaMargin: Double
        let seed: Int
        let maskID: Int
        let temperature: Double
        let minPool: Int
        let avgPool: Int

        enum CodingKeys: String, CodingKey {
            case method, lambda, steps, restorations, seed, temperature
            case stepsRun = "steps_run", lambdaMargin = "lambda_margin", maskID = "mask_id"
            case minPool = "min_pool", avgPool = "avg_pool"
        }
    }

    struct Array: Decodable {
        let file: String
        let shape: [Int]
        let dtype: String
        let tolerance: Float?
    }

    let pipeline: Pipeline
    let arrays: [String: Array]

    static func load() throws -> ParityIndex {
        try JSONDecoder().decode(ParityIndex.self, from: Data(contentsOf: Fixtures.parity.appendingPathComponent("index.json")))
    }
}

/// A parsed .npy file (format version 1 or 2, little-endian <f4 or <i4, C order).
struct NumpyArray {
    let shape: [Int]
    let floats: [Float]
    let integers: [Int32]

    init(contentsOf url: URL) throws {
        let bytes = try [UInt8](Data(contentsOf: url))
        guard bytes.count >= 10, bytes[0] == 0x93, Swift.String(decoding: bytes[1..<6], as: UTF8.self) == "NUMPY" else {
            throw NumpyError("\(url.lastPathComponent): not an .npy file")
        }
        let major = bytes[6]
        let headerLengthSize = major == 1 ? 2 : 4
        let headerLength = (0..<headerLengthSize).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
        let dataStart = 8 + headerLengthSize + headerLength
        let header = Swift.String(decoding: bytes[(8 + headerLengthSize)..<dataStart], as: UTF8.self)
        guard header.contains("'fortran_order': False") else { throw NumpyError("\(url.lastPathComponent): not C order") }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw NumpyError("\(url.lastPathComponent): no shape")
        }
        shape = header[open.upperBound..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let words = stride(from: dataStart, to: dataStart + 4 * count, by: 4).map { offset in
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
        }
        if header.contains("'descr': '<f4'") {
            floats = words.map(Float.init(bitPattern:))
            integers = []
        } else if header.contains("'descr': '<i4'") {
            integers = words.map { Int32(bitPattern: $0) }
            floats = []
        } else {
            throw NumpyError("\(url.lastPathComponent): dtype is neither <f4 nor <i4")
        }
    }

    var tensor: Tensor { Tensor(shape: shape, scalars: floats) }
    var ints: [Int] { integers.map(Int.init) }
}

struct NumpyError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A fixture array by its index.json name, with the shape the index states.
struct ParityFixture {
    let index: ParityIndex

    init() throws { index = try ParityIndex.load() }

    func array(_ name: String) throws -> NumpyArray {
        let entry = try XCTUnwrap(index.arrays[name], "index.json has no array \(name)")
        let array = try NumpyArray(contentsOf: Fixtures.parity.appendingPathComponent(entry.file))
        XCTAssertEqual(array.shape, entry.shape, name)
        return array
    }

    func tolerance(_ name: String) throws -> Float {
        try XCTUnwrap(index.arrays[name]?.tolerance, "\(name) has no tolerance")
    }

    /// Asserts |actual − expected| ≤ tolerance element-wise, reporting the worst element.
    func assertClose(_ actual: Tensor, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try array(name)
        let tolerance = try tolerance(name)
        XCTAssertEqual(actual.shape, expected.shape, "\(name): shape", file: file, line: line)
        guard actual.count == expected.floats.count else { return }
        var worst = (index: 0, error: Float(0))
        for index in 0..<actual.count {
            let error = abs(actual.scalars[index] - expected.floats[index])
            if !(error <= worst.error) { worst = (index, error) }   // NaN counts as worst
        }
        XCTAssert(worst.error <= tolerance,
                  "\(name): |swift − torch| = \(worst.error) at flat index \(worst.index) "
                  + "(swift \(actual.scalars[worst.index]), torch \(expected.floats[worst.index])) > tolerance \(tolerance)",
                  file: file, line: line)
    }
}
