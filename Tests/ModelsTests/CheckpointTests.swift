import Foundation
import JSON
import Kernels
import XCTest
@testable import Models

final class CheckpointTests: XCTestCase {
    // MARK: - The good checkpoint

    func testLoadsEveryComponentOfTheParityCheckpoint() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.checkpoint.path)
        // Every network; the prior is optional and the parity checkpoint has none.
        XCTAssertEqual(Set(checkpoint.components.keys), Set(Component.allCases).subtracting([.prior]))
        let manifest = checkpoint.manifest
        XCTAssertEqual(manifest.name, "parity-fixture")
        XCTAssertEqual(manifest.created, "2024-09-17T00:00:00Z")
        XCTAssertEqual(manifest.preprocessing.imageSize, 160)
        XCTAssertEqual(manifest.preprocessing.tokenGrid, [20, 20])
        XCTAssertEqual(manifest.preprocessing.outputRange, [0, 1])
        XCTAssertEqual(manifest.provenance.objectValue?["data"], .string("random weights (Training/tools/fixtures.py)"))

        let index = try ParityIndex.load()
        XCTAssertEqual(manifest.inference.method, .mimOOD)
        XCTAssertEqual(manifest.inference.lambda, Float(index.pipeline.lambda))
        XCTAssertEqual(manifest.inference.steps, index.pipeline.steps)
        XCTAssertEqual(manifest.inference.restorations, index.pipeline.restorations)
        XCTAssertEqual(manifest.inference.seed, UInt64(index.pipeline.seed))
        XCTAssertEqual(manifest.inference.combine, .softmaxWeighted)
        XCTAssertEqual(manifest.inference.minPool, 3)
        XCTAssertEqual(manifest.inference.avgPool, 7)
        XCTAssertEqual(manifest.mapThreshold, 0.25)

        guard case .vqvae(let vqvae)? = checkpoint.components[.vqvae]?.architecture else { return XCTFail("vqvae kind") }
        XCTAssertEqual(vqvae.chMult, [1, 2, 1, 1])
        XCTAssertEqual(vqvae.grid, 20)
        XCTAssertEqual(vqvae.codebookSize, index.pipeline.maskID)
        guard case .tokenTransformer(let ar)? = checkpoint.components[.ar]?.architecture else { return XCTFail("ar kind") }
        XCTAssertEqual(ar.role, .ar)
        XCTAssertTrue(ar.causal)
        XCTAssertEqual(ar.outputWidth, 64)

        // Counts and shapes agree with the manifest's own lists (written by the PyTorch exporter).
        let entries = try XCTUnwrap(manifest.json["components"]?.objectValue)
        for (component, loaded) in checkpoint.components {
            let entry = try XCTUnwrap(entries[component.rawValue]?.objectValue)
            XCTAssertEqual(entry["num_parameters"], .integer(loaded.numParameters))
            let listed = try XCTUnwrap(entry["tensors"]?.objectValue)
            XCTAssertEqual(Set(listed.keys), Set(loaded.tensors.keys))
            for (name, tensor) in loaded.tensors {
                XCTAssertEqual(listed[name]?.objectValue?["shape"], .array(tensor.shape.map { .integer($0) }), name)
            }
            XCTAssertEqual(loaded.sha256, sha256Hex(try [UInt8](Data(contentsOf: Fixtures.checkpoint.appendingPathComponent(loaded.file)))))
        }
    }

    func testTensorValuesAreTheFileBytesAtTheirOffsets() throws {
        // Rewritten in reverse name order with known values: the reader must find each tensor by its
        // offsets, not by position, and decode little-endian binary32 exactly.
        let copy = try CheckpointCopy(testCase: self)
        let original = try Checkpoint(directory: copy.path, only: [.critic]).components[.critic]!
        var replaced: [(name: String, tensor: Tensor)] = []
        for name in original.tensors.keys.sorted(by: >) {
            let shape = original[name].shape
            let count = shape.reduce(1, *)
            replaced.append((name, Tensor(shape: shape, scalars: (0..<count).map { Float($0) * 0.5 - Float(name.count) })))
        }
        try copy.replaceFile(of: "critic", with: safetensors(tensors: replaced))
        let loaded = try Checkpoint(directory: copy.path, only: [.critic]).components[.critic]!
        for (name, tensor) in replaced { XCTAssertEqual(loaded[name], tensor, name) }
    }

    func testLoadsOnlyTheRequestedComponents() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.checkpoint.path, only: [.vqvae, .ar])
        XCTAssertEqual(Set(checkpoint.components.keys), [.vqvae, .ar])
    }

    func testIgnoresUnknownTopLevelFieldsAndKeyOrder() throws {
        let copy = try CheckpointCopy(testCase: self)
        try copy.editManifest { manifest in
            var reordered = JSONObject()
            for key in manifest.keys.reversed() { reordered[key] = manifest[key] }
            reordered["comment"] = .string("not part of the format")
            manifest = reordered
        }
        XCTAssertNoThrow(try Checkpoint(directory: copy.path))
    }

    // MARK: - Manifest (§6 step 1)

    func testManifestRefusals() throws {
        let cases: [(String, (CheckpointCopy) throws -> Void, [String])] = [
            ("no model.json", { try FileManager.default.removeItem(at: $0.file("model.json")) }, ["no model.json"]),
            ("model.json not JSON", { try Data("{".utf8).write(to: $0.file("model.json")) }, ["file model.json: not UTF-8 JSON"]),
            ("model.json not UTF-8", { try Data([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D]).write(to: $0.file("model.json")) },
             ["not UTF-8 JSON", "not valid UTF-8"]),
            ("model.json not an object", { try Data("[]".utf8).write(to: $0.file("model.json")) }, ["model.json: not a JSON object"]),
            ("bad format", { try $0.editManifest { $0["format"] = .string("other") } },
             ["format is 'other', expected 'mimood-checkpoint'"]),
            ("bad format_version", { try $0.editManifest { $0["format_version"] = .integer(1) } },
             ["unsupported format_version 1 (this reader knows 2)"]),
            ("no components", { try $0.editManifest { $0["components"] = .object(JSONObject()) } },
             ["'components' must be a non-empty object"]),
            ("unknown component", { copy in
                try copy.editManifest { $0["components"] = .object({ var c = $0["components"]!.objectValue!; c["decoder"] = c["atd"]; return c }($0)) }
            }, ["unknown component 'decoder'"]),
            ("unknown method", { try $0.editManifest { $0["inference"] = .object({ var i = $0["inference"]!.objectValue!; i["method"] = .string("magic"); return i }($0)) } },
             ["unknown inference method 'magic'"]),
            ("method without its components", { copy in
                try copy.editManifest { $0["components"] = .object({ var c = $0["components"]!.objectValue!; c["mvtm"] = nil; return c }($0)) }
            }, ["inference method 'mim-ood' needs component(s) ['mvtm']"]),
            ("inference field missing", { try $0.editManifest { $0["inference"] = .object({ var i = $0["inference"]!.objectValue!; i["lambda"] = nil; return i }($0)) } },
             ["inference.lambda must be a number, got None"]),
            ("map threshold outside (0, 1)", { try $0.editManifest { $0["inference"] = .object({ var i = $0["inference"]!.objectValue!; i["map_threshold"] = .integer(1); return i }($0)) } },
             ["inference.map_threshold must be a number in (0, 1), got 1"]),
            ("even smoothing window", { copy in
                try copy.editManifest { $0["inference"] = .object({ var i = $0["inference"]!.objectValue!
                    var smoothing = JSONObject(); smoothing["min_pool"] = .integer(3); smoothing["avg_pool"] = .integer(6)
                    i["smoothing"] = .object(smoothing); return i }($0)) }
            }, ["smoothing.avg_pool must be an odd window size"]),
            ("preprocessing disagreeing with the VQ-VAE", { try $0.editManifest { $0["preprocessing"] = .object({ var p = $0["preprocessing"]!.objectValue!; p["image_size"] = .integer(128); return p }($0)) } },
             ["preprocessing.image_size 128 disagrees with the VQ-VAE's resolution 160"]),
        ]
        for (name, corrupt, fragments) in cases {
            let copy = try CheckpointCopy(testCase: self)
            try corrupt(copy)
            assertRefused(copy.path, fragments + [copy.path], label: name)   // every message names the directory
        }
    }

    func testRequestingAnUndeclaredComponent() throws {
        let copy = try CheckpointCopy(testCase: self)
        try copy.editManifest { $0["components"] = .object({ var c = $0["components"]!.objectValue!; c["ar"] = nil; return c }($0)) }
        assertRefused(copy.path, only: [.vqvae, .ar], ["component(s) ['ar'] not declared in model.json"])
    }

    // MARK: - Component entry, file, hash (§6 steps 2.1–2.3)

    func testEntryFileAndHashRefusals() throws {
        let cases: [(String, (CheckpointCopy) throws -> Void, [String])] = [
            ("entry lacks sha256", { try $0.editEntry("atd") { $0["sha256"] = nil } },
             ["component 'atd': manifest entry lacks ['sha256']"]),
            ("entry not an object", { try $0.editManifest { $0["components"] = .object({ var c = $0["components"]!.objectValue!; c["atd"] = .integer(1); return c }($0)) } },
             ["component 'atd': manifest entry is not an object"]),
            ("file outside the directory", { try $0.editEntry("ar") { $0["file"] = .string("../ar.safetensors") } },
             ["component 'ar': file '../ar.safetensors' must be a plain file name"]),
            ("file name ..", { try $0.editEntry("ar") { $0["file"] = .string("..") } }, ["must be a plain file name"]),
            ("missing component file", { try FileManager.default.removeItem(at: $0.file("ar.safetensors")) },
             ["component 'ar', file ar.safetensors: file is missing"]),
            ("component file is a directory", { copy in
                try FileManager.default.removeItem(at: copy.file("ar.safetensors"))
                try FileManager.default.createDirectory(at: copy.file("ar.safetensors"), withIntermediateDirectories: false)
            }, ["component 'ar', file ar.safetensors: file is missing"]),
            ("flipped byte", { copy in
                var data = try Data(contentsOf: copy.file("mvtm.safetensors"))
                data[data.count - 5] ^= 0x01
                try data.write(to: copy.file("mvtm.safetensors"))
            }, ["component 'mvtm', file mvtm.safetensors: SHA-256 mismatch (manifest "]),
            ("sha256 not a string", { try $0.editEntry("atd") { $0["sha256"] = .integer(7) } }, ["SHA-256 mismatch (manifest 7, file "]),
        ]
        for (name, corrupt, fragments) in cases {
            let copy = try CheckpointCopy(testCase: self)
            try corrupt(copy)
            assertRefused(copy.path, fragments, label: name)
        }
    }

    // MARK: - Container (§4, §6 steps 2.4–2.5)

    func testContainerRefusals() throws {
        let f32x4 = #""dtype":"F32","shape":[4]"#
        let entryA = #""a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}"#
        let lengthPrefix = { (n: UInt64) in withUnsafeBytes(of: n.littleEndian, Array.init) }
        let cases: [(String, [UInt8], [String])] = [
            ("empty file", [], ["truncated file (0 bytes)"]),
            ("truncated file", [0x10, 0, 0], ["truncated file (3 bytes)"]),
            ("header length beyond file", lengthPrefix(1000) + Array("{}".utf8), ["header length 1000 is larger than the file (10 bytes)"]),
            ("header length near 2^64", lengthPrefix(UInt64.max) + Array("{}".utf8), ["header length 18446744073709551615 is larger than the file"]),
            ("header not JSON", lengthPrefix(5) + Array("nope!".utf8), ["header is not UTF-8 JSON"]),
            ("header not UTF-8", safetensors(header: "{\"\u{FFFD}\":1}", data: []).map { $0 == 0xEF ? 0xFF : $0 }, ["header is not UTF-8 JSON", "not valid UTF-8"]),
            ("header nested too deep", safetensors(header: String(repeating: "[", count: 100_000), data: []), ["header is not UTF-8 JSON", "nesting deeper"]),
            ("duplicate tensor name", safetensors(header: "{\(entryA),\(entryA)}", data: [UInt8](repeating: 0, count: 16)),
             ["header is not UTF-8 JSON: duplicate name 'a'"]),
            ("header not an object", safetensors(header: "[]", data: []), ["header is not a JSON object"]),
            ("bad metadata", safetensors(header: #"{"__metadata__":{"a":1}}"#, data: []), ["__metadata__ must map strings to strings"]),
            ("entry not an object", safetensors(header: #"{"a":[1]}"#, data: []), ["tensor 'a': entry must have exactly dtype, shape, data_offsets"]),
            ("extra entry field", safetensors(header: "{\"a\":{\(f32x4),\"data_offsets\":[0,16],\"x\":1}}", data: .init(repeating: 0, count: 16)),
             ["tensor 'a': entry must have exactly dtype, shape, data_offsets"]),
            ("unknown dtype", safetensors(header: #"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}"#, data: .init(repeating: 0, count: 8)),
             ["tensor 'a': unsupported dtype 'F16' (only F32 is allowed)"]),
            ("negative shape", safetensors(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#, data: []),
             ["tensor 'a': shape [-1] is not a list of non-negative integers"]),
            ("float in shape", safetensors(header: #"{"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}"#, data: .init(repeating: 0, count: 16)),
             ["shape [4.0] is not a list of non-negative integers"]),
            ("boolean in shape", safetensors(header: #"{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}"#, data: .init(repeating: 0, count: 4)),
             ["shape [True] is not a list of non-negative integers"]),
            ("offsets reversed", safetensors(header: "{\"a\":{\(f32x4),\"data_offsets\":[16,0]}}", data: .init(repeating: 0, count: 16)),
             ["data_offsets [16, 0] is not [begin, end] with 0 <= begin <= end"]),
            ("offsets not a pair", safetensors(header: "{\"a\":{\(f32x4),\"data_offsets\":[0]}}", data: []), ["data_offsets [0] is not [begin, end]"]),
            ("offsets not matching shape", safetensors(header: "{\"a\":{\(f32x4),\"data_offsets\":[0,12]}}", data: .init(repeating: 0, count: 12)),
             ["tensor 'a': data_offsets [0, 12] span 12 bytes, shape [4] needs 16"]),
            ("shape whose size overflows", safetensors(header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#, data: .init(repeating: 0, count: 16)),
             ["span 16 bytes, shape [4294967296, 4294967296] needs more than"]),
            ("overlapping offsets", safetensors(header: "{\"a\":{\(f32x4),\"data_offsets\":[0,16]},\"b\":{\(f32x4),\"data_offsets\":[8,24]}}", data: .init(repeating: 0, count: 24)),
             ["data_offsets of tensors 'a' and 'b' overlap"]),
            ("gap between tensors", safetensors(header: "{\"a\":{\(f32x4),\"data_offsets\":[0,16]},\"b\":{\(f32x4),\"data_offsets\":[20,36]}}", data: .init(repeating: 0, count: 36)),
             ["gap of 4 bytes before tensor 'b'"]),
            ("offsets beyond the file", safetensors(header: "{\"a\":{\(f32x4),\"data_offsets\":[0,16]},\"b\":{\(f32x4),\"data_offsets\":[16,32]}}", data: .init(repeating: 0, count: 16)),
             ["data buffer is 16 bytes, tensors cover 32"]),
            ("bytes after the last tensor", safetensors(header: "{\(entryA)}", data: .init(repeating: 0, count: 20)),
             ["data buffer is 20 bytes, tensors cover 16"]),
        ]
        for (name, blob, fragments) in cases {
            let copy = try CheckpointCopy(testCase: self)
            try copy.replaceFile(of: "critic", with: blob)
            assertRefused(copy.path, fragments + ["component 'critic', file critic.safetensors"], label: name)
        }
    }

    func testEveryTruncationAndHeaderByteChangeIsRefusedWithoutACrash() throws {
        let copy = try CheckpointCopy(testCase: self)
        let original = try [UInt8](Data(contentsOf: copy.file("atd.safetensors")))
        let headerEnd = 8 + Int(original[0]) + Int(original[1]) << 8
        var lengths = Array(0..<24) + Array(headerEnd - 4...headerEnd + 4) + [original.count - 1]
        var state: UInt64 = 0x9E3779B97F4A7C15   // xorshift: a fixed, reproducible sample of lengths and bytes
        func next() -> Int { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return Int(state >> 1) }
        lengths += (0..<20).map { _ in next() % original.count }
        for length in lengths {
            try copy.replaceFile(of: "atd", with: Array(original[..<length]))
            assertRefused(copy.path, only: [.atd], ["component 'atd', file atd.safetensors"], label: "length \(length)")
        }
        // A changed header byte either breaks the container or changes a name, shape or offset that
        // the architecture or the manifest's tensor list then refuses.
        for _ in 0..<40 {
            var damaged = original
            let position = 8 + next() % (headerEnd - 8)
            damaged[position] ^= UInt8(1 + next() % 255)
            try copy.replaceFile(of: "atd", with: damaged)
            assertRefused(copy.path, only: [.atd], ["component 'atd'"], label: "byte \(position)")
        }
    }

    // MARK: - Architecture, names, shapes, counts (§6 steps 2.6–2.9)

    func testArchitectureAndTensorRefusals() throws {
        func editArchitecture(_ edit: @escaping (inout JSONObject) -> Void) -> (CheckpointCopy) throws -> Void {
            { copy in try copy.editEntry("atd") { entry in
                var architecture = entry["architecture"]!.objectValue!
                edit(&architecture)
                entry["architecture"] = .object(architecture)
            } }
        }
        func editCriticTensors(_ edit: @escaping (inout [(name: String, tensor: Tensor)]) -> Void) -> (CheckpointCopy) throws -> Void {
            { copy in
                let loaded = try Checkpoint(directory: copy.path, only: [.critic]).components[.critic]!
                var tensors: [(name: String, tensor: Tensor)] = loaded.tensors.keys.sorted().map { ($0, loaded[$0]) }
                edit(&tensors)
                try copy.replaceFile(of: "critic", with: safetensors(tensors: tensors))
            }
        }
        let cases: [(String, (CheckpointCopy) throws -> Void, [String])] = [
            ("unknown architecture kind", { try $0.editEntry("atd") { var a = JSONObject(); a["kind"] = .string("lstm"); $0["architecture"] = .object(a) } },
             ["component 'atd', file atd.safetensors: unknown architecture kind 'lstm'"]),
            ("architecture without kind", editArchitecture { $0["kind"] = nil }, ["unknown architecture kind None"]),
            ("architecture field unknown", editArchitecture { $0["width"] = .integer(3) },
             ["architecture fields do not match TransformerConfig: missing [], unknown ['width']"]),
            ("architecture field missing", editArchitecture { $0["dim"] = nil }, ["missing ['dim'], unknown []"]),
            ("architecture the model rejects", editArchitecture { $0["heads"] = .integer(5) },
             ["architecture does not fit TransformerConfig: dim 48 is not divisible by heads 5"]),
            ("architecture field of the wrong type", editArchitecture { $0["dim"] = .string("48") },
             ["architecture does not fit TransformerConfig: dim must be an integer"]),
            ("architecture size beyond bounds", editArchitecture { $0["dim"] = .integer(Int.max) }, ["dim must be an integer from 1 to"]),
            ("depth beyond bounds", editArchitecture { $0["depth"] = .integer(1 << 40) }, ["depth must be an integer from 1 to 256"]),
            ("mlp width overflowing", editArchitecture { $0["mlp_ratio"] = .number(1e300) }, ["mlp_ratio must be a number in"]),
            ("head of another component", editArchitecture { $0["head"] = .string("critic") },
             ["component 'atd' needs head 'atd', the architecture has head 'critic'"]),
            ("causal detector", editArchitecture { $0["causal"] = .bool(true) }, ["head 'atd' needs causal false"]),
            ("transformer as vqvae", { copy in
                let atd = try copy.manifest["components"]!.objectValue!["atd"]!.objectValue!["architecture"]!
                try copy.editEntry("vqvae") { $0["architecture"] = atd }
            }, ["component 'vqvae' needs kind 'vqvae'"]),
            ("vqvae channels not multiples of 32", { try $0.editEntry("vqvae") { entry in
                var architecture = entry["architecture"]!.objectValue!
                architecture["ch"] = .integer(48)
                entry["architecture"] = .object(architecture)
            } }, ["architecture does not fit VQVAEConfig: GroupNorm needs channel counts divisible by 32"]),
            ("architecture of another size", editArchitecture { $0["dim"] = .integer(64) },
             ["tensor 'pos_emb': shape [1, 400, 48], architecture expects [1, 400, 64]"]),
            ("missing tensor", editCriticTensors { $0.removeAll { $0.name == "head.bias" } }, ["missing tensor(s) ['head.bias']"]),
            ("unexpected tensor", editCriticTensors { $0.append(("extra", Tensor(zeros: [2]))) }, ["unexpected tensor(s) ['extra']"]),
            ("wrong shape", editCriticTensors { tensors in
                tensors = tensors.map { $0.name == "head.bias" ? ($0.name, Tensor(zeros: [2])) : $0 }
            }, ["tensor 'head.bias': shape [2], architecture expects [1]"]),
            ("num_parameters wrong", { try $0.editEntry("atd") { $0["num_parameters"] = .integer(1) } },
             ["num_parameters 1 disagrees with the file (78961)"]),
            ("tensors list empty", { try $0.editEntry("atd") { $0["tensors"] = .object(JSONObject()) } },
             ["the manifest's 'tensors' list disagrees with the file header"]),
            ("tensors list with a wrong shape", { try $0.editEntry("atd") { entry in
                var listed = entry["tensors"]!.objectValue!
                var description = JSONObject()
                description["dtype"] = .string("F32")
                description["shape"] = .array([.integer(2)])
                listed["head.bias"] = .object(description)
                entry["tensors"] = .object(listed)
            } }, ["tensor 'head.bias': the manifest's 'tensors' list disagrees with the file header"]),
        ]
        for (name, corrupt, fragments) in cases {
            let copy = try CheckpointCopy(testCase: self)
            try corrupt(copy)
            assertRefused(copy.path, fragments, label: name)
        }
    }

    func testExpectedTensorsFollowStateDictOrder() throws {
        // The manifest lists names sorted; the architecture must produce the same set, first the
        // transformer's own parameter pos_emb (PyTorch lists a module's parameters before its children's).
        let checkpoint = try Checkpoint(directory: Fixtures.checkpoint.path)
        for (component, loaded) in checkpoint.components {
            let expected = loaded.architecture.expectedTensors
            XCTAssertEqual(Set(expected.map(\.name)), Set(loaded.tensors.keys), component.rawValue)
            XCTAssertEqual(expected.count, loaded.tensors.count, component.rawValue)
        }
        XCTAssertEqual(checkpoint.components[.atd]?.architecture.expectedTensors.first?.name, "pos_emb")
        XCTAssertEqual(checkpoint.components[.vqvae]?.architecture.expectedTensors.last?.name, "quantize.embedding.weight")
    }

    // MARK: - The optional prior

    /// Adds a `prior` component holding `table` [positions, codes], with its manifest entry.
    private func addPrior(to copy: CheckpointCopy, table: Tensor, architecture: JSONObject? = nil) throws {
        let bytes = safetensors(tensors: [("log_prob", table)])
        try Data(bytes).write(to: copy.file("prior.safetensors"))
        var fields = JSONObject()
        fields["kind"] = .string("token_prior")
        fields["n_positions"] = .integer(table.shape[0])
        fields["n_codes"] = .integer(table.shape[1])
        fields["alpha"] = .number(1)
        fields["sigma"] = .number(1)
        var description = JSONObject()
        description["dtype"] = .string("F32")
        description["shape"] = .array(table.shape.map { .integer($0) })
        var listed = JSONObject()
        listed["log_prob"] = .object(description)
        var entry = JSONObject()
        entry["file"] = .string("prior.safetensors")
        entry["sha256"] = .string(sha256Hex(bytes))
        entry["architecture"] = .object(architecture ?? fields)
        entry["num_parameters"] = .integer(table.count)
        entry["tensors"] = .object(listed)
        try copy.editManifest { manifest in
            var components = manifest["components"]?.objectValue ?? JSONObject()
            components["prior"] = .object(entry)
            manifest["components"] = .object(components)
        }
    }

    func testAPriorIsLoadedAndScoresTokensByMinusLogProbability() throws {
        let copy = try CheckpointCopy(testCase: self)
        let codes = 64, positions = 400
        // log p(code | position) = −(code + position) / 1000: known values to read back.
        let table = Tensor(shape: [positions, codes], scalars: (0..<positions * codes).map { -Float($0 / codes + $0 % codes) / 1000 })
        try addPrior(to: copy, table: table)
        let engine = try Engine(Checkpoint(directory: copy.path))
        XCTAssertTrue(engine.has(.prior))
        let grid = (0..<positions).map { $0 % codes }
        let scores = try engine.tokenScores(.codeFrequency, grids: [grid])
        XCTAssertEqual(scores, [(0..<positions).map { Float($0 + $0 % codes) / 1000 }])
    }

    func testWithoutAPriorTheEngineRunsAndCodeFrequencyIsRefused() throws {
        let engine = try Engine(Checkpoint(directory: Fixtures.checkpoint.path))
        XCTAssertFalse(engine.has(.prior))
        XCTAssertThrowsError(try engine.tokenScores(.codeFrequency, grids: [[0]])) { error in
            XCTAssertTrue("\(error)".contains("token scorer 'code-frequency' needs component 'prior'"), "\(error)")
        }
    }

    func testPriorRefusals() throws {
        let copy = try CheckpointCopy(testCase: self)
        try addPrior(to: copy, table: Tensor(zeros: [400, 32]))
        XCTAssertThrowsError(try Engine(Checkpoint(directory: copy.path))) { error in
            XCTAssertTrue("\(error)".contains("'prior' has n_positions 400 and n_codes 32; the VQ-VAE (K = 64, 400 tokens) needs 400 and 64"), "\(error)")
        }
        let atd = try copy.manifest["components"]!.objectValue!["atd"]!.objectValue!["architecture"]!.objectValue!
        try addPrior(to: copy, table: Tensor(zeros: [400, 64]), architecture: atd)
        assertRefused(copy.path, ["component 'prior'", "needs kind 'token_prior', not 'token_transformer'"])
        var wrongShape = JSONObject()
        for (key, value) in [("kind", JSONValue.string("token_prior")), ("n_positions", .integer(400)), ("n_codes", .integer(63)),
                             ("alpha", .number(1)), ("sigma", .number(0))] { wrongShape[key] = value }
        try addPrior(to: copy, table: Tensor(zeros: [400, 64]), architecture: wrongShape)
        assertRefused(copy.path, ["tensor 'log_prob': shape [400, 64], architecture expects [400, 63]"])
    }
}
