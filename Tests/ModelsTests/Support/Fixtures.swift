import Foundation
import JSON
import Kernels
import Crypto
import XCTest
@testable import Models

/// Paths of the repository's fixtures, found from this file (Tests/ModelsTests/Support/ → root).
enum Fixtures {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let parity = repositoryRoot.appendingPathComponent("Tests/Fixtures/parity")
    static let checkpoint = parity.appendingPathComponent("checkpoint")
    /// The same ATD and MVTM with the local tokenizer (patch encoder, l2-normalised codes).
    static let localCheckpoint = parity.appendingPathComponent("checkpoint-local")
}

/// A copy of the parity checkpoint in a fresh temporary directory, removed at the end of the test.
final class CheckpointCopy {
    let url: URL
    var path: String { url.path }

    init(testCase: XCTestCase) throws {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("ModelsTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        url = parent.appendingPathComponent("checkpoint")
        try FileManager.default.copyItem(at: Fixtures.checkpoint, to: url)
        testCase.addTeardownBlock { try? FileManager.default.removeItem(at: parent) }
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    var manifest: JSONObject {
        get throws {
            let bytes = try [UInt8](Data(contentsOf: file("model.json")))
            guard case .object(let object) = try JSONValue.parse(bytes) else { throw CocoaError(.fileReadCorruptFile) }
            return object
        }
    }

    func writeManifest(_ manifest: JSONObject) throws {
        try Data(JSONValue.object(manifest).jsonText.utf8).write(to: file("model.json"))
    }

    /// Applies `edit` to the manifest's top-level object.
    func editManifest(_ edit: (inout JSONObject) -> Void) throws {
        var object = try manifest
        edit(&object)
        try writeManifest(object)
    }

    /// Applies `edit` to one component's entry.
    func editEntry(_ component: String, _ edit: (inout JSONObject) -> Void) throws {
        try editManifest { manifest in
            var components = manifest["components"]?.objectValue ?? JSONObject()
            var entry = components[component]?.objectValue ?? JSONObject()
            edit(&entry)
            components[component] = .object(entry)
            manifest["components"] = .object(components)
        }
    }

    /// Writes `bytes` as the component's file and updates its SHA-256 in the manifest, so that a
    /// refusal comes from the checks after the hash.
    func replaceFile(of component: String, with bytes: [UInt8]) throws {
        try Data(bytes).write(to: file("\(component).safetensors"))
        try editEntry(component) { $0["sha256"] = .string(sha256Hex(bytes)) }
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    var hasher = Crypto.SHA256()
    hasher.update(data: bytes)
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

/// A safetensors file: 8-byte length, the header text, the data bytes.
func safetensors(header: String, data: [UInt8]) -> [UInt8] {
    let text = Array(header.utf8)
    return withUnsafeBytes(of: UInt64(text.count).littleEndian, Array.init) + text + data
}

/// A valid safetensors file holding `tensors` in the given order.
func safetensors(tensors: [(name: String, tensor: Tensor)]) -> [UInt8] {
    var header = JSONObject()
    var data: [UInt8] = []
    for (name, tensor) in tensors {
        var entry = JSONObject()
        entry["dtype"] = .string("F32")
        entry["shape"] = .array(tensor.shape.map { .integer($0) })
        entry["data_offsets"] = .array([.integer(data.count), .integer(data.count + 4 * tensor.count)])
        header[name] = .object(entry)
        for value in tensor.scalars { data += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init) }
    }
    return safetensors(header: JSONValue.object(header).jsonText, data: data)
}

/// Asserts that loading throws a CheckpointError whose message contains every one of `fragments`.
/// `label` names the corruption in a failure message.
func assertRefused(_ directory: String, only components: [Component]? = nil, _ fragments: [String], label: String = "",
                   file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try Checkpoint(directory: directory, only: components)
        XCTFail("\(label): loaded, expected a refusal containing \(fragments)", file: file, line: line)
    } catch {
        let message = error.description
        for fragment in fragments where !message.contains(fragment) {
            XCTFail("\(label): message \"\(message)\" lacks \"\(fragment)\"", file: file, line: line)
        }
    }
}
