import CKernels
import Foundation
import Kernels
import XCTest

/// The repository root: three levels up from this file (Tests/KernelsTests/Fixtures.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// A little-endian float32 or int32 `.npy` array in C order (what np.save writes for the fixtures),
/// as its shape and its values widened to Double.
struct NPYArray {
    let shape: [Int]
    let values: [Double]

    init(contentsOf url: URL) throws {
        let bytes = [UInt8](try Data(contentsOf: url))
        guard bytes.count >= 10, bytes[0...5].elementsEqual([0x93] + Array("NUMPY".utf8)) else {
            throw FixtureError("\(url.lastPathComponent): not an .npy file")
        }
        let (headerLength, headerStart) = bytes[6] == 1
            ? (Int(bytes[8]) | Int(bytes[9]) << 8, 10)
            : (Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24, 12)
        let header = String(decoding: bytes[headerStart ..< headerStart + headerLength], as: UTF8.self)
        guard header.contains("'fortran_order': False"),
              let shapeOpen = header.range(of: "'shape': ("), let shapeClose = header[shapeOpen.upperBound...].firstIndex(of: ")")
        else { throw FixtureError("\(url.lastPathComponent): unexpected header \(header)") }
        shape = header[shapeOpen.upperBound ..< shapeClose].split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let data = bytes[(headerStart + headerLength)...]
        let count = shape.reduce(1, *)
        guard data.count == 4 * count else { throw FixtureError("\(url.lastPathComponent): \(data.count) data bytes for \(shape)") }
        let words = (0..<count).map { i in
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(data[data.startIndex + 4 * i + $1]) << (8 * $1) }
        }
        if header.contains("'descr': '<f4'") {
            values = words.map { Double(Float(bitPattern: $0)) }
        } else if header.contains("'descr': '<i4'") {
            values = words.map { Double(Int32(bitPattern: $0)) }
        } else {
            throw FixtureError("\(url.lastPathComponent): only <f4 and <i4 arrays are read here: \(header)")
        }
    }

    var tensor: Tensor { Tensor(shape: shape, scalars: values.map { Float($0) }) }
    var integers: [Int] { values.map { Int($0) } }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Tests/Fixtures/kernels/NAME.npy, written by Training/tools/kernel_fixtures.py.
func kernelFixture(_ name: String) throws -> NPYArray {
    try NPYArray(contentsOf: repositoryRoot.appendingPathComponent("Tests/Fixtures/kernels/\(name).npy"))
}

/// One float32 tensor of a safetensors file: an 8-byte little-endian header length, a JSON header
/// mapping names to dtype, shape and data offsets, then the data.
func safetensorsTensor(_ name: String, in url: URL) throws -> Tensor {
    let bytes = [UInt8](try Data(contentsOf: url))
    let headerLength = (0..<8).reduce(0) { $0 | Int(bytes[$1]) << (8 * $1) }
    let header = try JSONSerialization.jsonObject(with: Data(bytes[8 ..< 8 + headerLength])) as? [String: Any]
    guard let entry = header?[name] as? [String: Any], entry["dtype"] as? String == "F32",
          let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int]
    else { throw FixtureError("\(url.lastPathComponent): no float32 tensor \(name)") }
    let start = 8 + headerLength + offsets[0]
    let scalars = (0 ..< (offsets[1] - offsets[0]) / 4).map { i in
        Float(bitPattern: (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[start + 4 * i + $1]) << (8 * $1) })
    }
    return Tensor(shape: shape, scalars: scalars)
}

/// Fails unless both tensors have one shape and every pair of scalars differs by at most `tolerance`.
func assertClose(_ actual: Tensor, _ expected: Tensor, tolerance: Float, _ context: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "shapes", file: file, line: line)
    guard actual.shape == expected.shape else { return }
    var worst: (difference: Float, index: Int) = (0, 0)
    for i in 0..<actual.count {
        let difference = abs(actual.scalars[i] - expected.scalars[i])
        if !(difference <= worst.difference) { worst = (difference, i) }
    }
    XCTAssert(worst.difference <= tolerance,
              "\(context) scalar \(worst.index): \(actual.scalars[worst.index]) vs \(expected.scalars[worst.index]) (tolerance \(tolerance))",
              file: file, line: line)
}

/// The copies of the C kernels (CKernels), widest first.
private let instructionSets = ["avx512f", "avx2", "sse2"]

/// Selects the widest copy this CPU runs, as at start-up.
func selectWidestInstructionSet() {
    _ = instructionSets.first { ck_select_instruction_set($0) == 1 }
}

/// body once with each copy of the C kernels this CPU runs selected, named by its argument; the widest
/// is selected again afterwards.
func forEachInstructionSet(_ body: (String) throws -> Void) rethrows {
    defer { selectWidestInstructionSet() }
    for name in instructionSets where ck_select_instruction_set(name) == 1 {
        try body(name)
    }
}
