import Crypto
import JSON
import Kernels

/// A checkpoint that does not follow docs/checkpoint-format.md, or cannot be read. The fields locate
/// the problem; `description` reads like the reference reader's messages, prefixed by the directory.
public struct CheckpointError: Error, Sendable, CustomStringConvertible {
    public let directory: String
    public let component: Component?
    public let file: String?
    public let tensor: String?
    public let problem: String

    init(directory: String, component: Component? = nil, file: String? = nil, tensor: String? = nil, problem: String) {
        (self.directory, self.component, self.file, self.tensor, self.problem) = (directory, component, file, tensor, problem)
    }

    public var description: String {
        let location = [directory, component.map { "component '\($0.rawValue)'" }, file.map { "file \($0)" },
                        tensor.map { "tensor \(singleQuoted($0))" }]
        return location.compactMap { $0 }.joined(separator: ", ") + ": " + problem
    }
}

/// One loaded network: its architecture and its weights keyed by state_dict name.
public struct LoadedComponent: Sendable {
    public let component: Component
    public let file: String
    public let sha256: String
    public let architecture: Architecture
    public let tensors: [String: Tensor]

    /// The tensor of a state_dict name the architecture has; the loader guarantees every such name
    /// is present, so a miss is a bug in the caller, not in the file.
    public subscript(name: String) -> Tensor {
        guard let tensor = tensors[name] else {
            preconditionFailure("\(component.rawValue) has no tensor \(name) (not a name of its architecture)")
        }
        return tensor
    }

    public var numParameters: Int { tensors.values.reduce(0) { $0 + $1.count } }
}

/// A verified checkpoint directory: manifest, and the weights of the components loaded.
public struct Checkpoint: Sendable {
    public let directory: String
    public let manifest: Manifest
    /// SHA-256 of model.json as read here, the bytes verified: it names every weight file's SHA-256, so it is
    /// the model's identity.
    public let manifestSHA256: String
    public let components: [Component: LoadedComponent]

    /// Reads and verifies `directory` in the order of docs/checkpoint-format.md §6, stopping at the
    /// first failure: the manifest; for each component (all declared ones, or `only` those) its
    /// entry, file, SHA-256, container, offsets, architecture, tensor names, shapes and counts; then
    /// the rest of the manifest. When every declared component is loaded, the default method's
    /// components must be among them (§6 step 3).
    public init(directory: String, only requested: [Component]? = nil) throws(CheckpointError) {
        func refuse(_ problem: String, file: String? = nil) -> CheckpointError {
            CheckpointError(directory: directory, file: file, problem: problem)
        }
        let manifestPath = directory + "/" + Manifest.fileName
        let manifestFile: MappedFile
        do {
            manifestFile = try MappedFile(path: manifestPath)
        } catch .notARegularFile {
            throw refuse("no \(Manifest.fileName)")
        } catch {
            throw refuse(error.reason, file: Manifest.fileName)
        }
        let object: JSONObject
        let declared: [(Component, JSONValue)]
        do throws(ManifestProblem) {
            let json: JSONValue
            do {
                json = try JSONValue.parse(manifestFile.bytes)
            } catch {
                throw ManifestProblem("not UTF-8 JSON: \(error)")
            }
            (object, declared) = try Manifest.checkHeader(json)
        } catch {
            throw refuse(error.message, file: Manifest.fileName)
        }

        let wanted = requested ?? declared.map(\.0)
        let absent = wanted.filter { component in !declared.contains { $0.0 == component } }
        guard absent.isEmpty else {
            let names = { (list: [Component]) in JSONValue.array(list.map { .string($0.rawValue) }).pythonDescription }
            throw refuse("component(s) \(names(absent)) not declared in \(Manifest.fileName) (declared: \(names(declared.map(\.0))))")
        }
        var components: [Component: LoadedComponent] = [:]
        for component in wanted where components[component] == nil {
            let entry = declared.first { $0.0 == component }?.1 ?? .null
            components[component] = try LoadedComponent(directory: directory, component: component, entry: entry)
        }

        let manifest: Manifest
        do throws(ManifestProblem) {
            manifest = try Manifest(object)
            if case .vqvae(let config)? = components[.vqvae]?.architecture {
                try manifest.preprocessing.check(against: config)
            }
        } catch {
            throw refuse(error.message, file: Manifest.fileName)
        }
        if requested == nil {
            let lacking = manifest.inference.method.requiredComponents.filter { components[$0] == nil }
            guard lacking.isEmpty else {
                throw refuse("inference method '\(manifest.inference.method.rawValue)' needs component(s) "
                             + JSONValue.array(lacking.map { .string($0.rawValue) }).pythonDescription)
            }
        }
        self.directory = directory
        self.manifest = manifest
        var hasher = SHA256()
        hasher.update(bufferPointer: manifestFile.bytes)
        self.manifestSHA256 = hexDigest(hasher)
        self.components = components
    }
}

extension LoadedComponent {
    static let entryFields = ["file", "sha256", "architecture", "num_parameters", "tensors"]

    /// §6 step 2 for one component.
    fileprivate init(directory: String, component: Component, entry: JSONValue) throws(CheckpointError) {
        var fileName: String?   // named in messages once the entry has given it
        func refuse(_ problem: String, tensor: String? = nil) -> CheckpointError {
            CheckpointError(directory: directory, component: component, file: fileName, tensor: tensor, problem: problem)
        }

        // 1. Entry.
        guard case .object(let fields) = entry else { throw refuse("manifest entry is not an object") }
        let lacking = Self.entryFields.filter { fields[$0] == nil }
        guard lacking.isEmpty else {
            throw refuse("manifest entry lacks \(JSONValue.array(lacking.map { .string($0) }).pythonDescription)")
        }
        let fileValue = fields["file"] ?? .null
        guard case .string(let file) = fileValue, isPlainFileName(file) else {
            throw refuse("file \(fileValue.pythonDescription) must be a plain file name")
        }
        fileName = file

        // 2. File exists.
        let mapped: MappedFile
        do {
            mapped = try MappedFile(path: directory + "/" + file)
        } catch {
            throw refuse(error.reason)
        }

        // 3. SHA-256 over the mapped bytes.
        var hasher = SHA256()
        hasher.update(bufferPointer: mapped.bytes)
        let digest = hexDigest(hasher)
        let stated = fields["sha256"] ?? .null
        guard stated == .string(digest) else {
            let shown = if case .string(let text) = stated { text } else { stated.pythonDescription }
            throw refuse("SHA-256 mismatch (manifest \(shown), file \(digest))")
        }

        // 4–5. Container: header, entries, offsets tiling the data buffer.
        let container: SafeTensorsContainer
        do {
            container = try SafeTensorsContainer(bytes: mapped.bytes)
        } catch {
            throw refuse(error.message, tensor: error.tensor)
        }

        // 6. Architecture.
        let architecture: Architecture
        do {
            architecture = try Architecture.parse(fields["architecture"] ?? .null, for: component)
        } catch {
            throw refuse(error.message)
        }

        // 7. Names: nothing missing, nothing unexpected.
        let expected = architecture.expectedTensors
        let expectedNames = Set(expected.map(\.name))
        let entries = Dictionary(container.entries.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let missing = expectedNames.subtracting(entries.keys).sorted()
        let unexpected = Set(entries.keys).subtracting(expectedNames).sorted()
        let list = { (names: [String]) in JSONValue.array(names.map { .string($0) }).pythonDescription }
        guard missing.isEmpty else { throw refuse("missing tensor(s) \(list(missing))") }
        guard unexpected.isEmpty else { throw refuse("unexpected tensor(s) \(list(unexpected))") }

        // 8. Shapes, in state_dict order.
        for (name, shape) in expected where entries[name]?.shape != shape {
            throw refuse("shape \(entries[name]?.shape ?? []), architecture expects \(shape)", tensor: name)
        }

        // 9. num_parameters and the manifest's tensor list agree with the file.
        let total = container.entries.reduce(0) { $0 + $1.span.count / 4 }
        let statedCount = fields["num_parameters"] ?? .null
        guard statedCount == .integer(total) else {
            throw refuse("num_parameters \(statedCount.pythonDescription) disagrees with the file (\(total))")
        }
        guard case .object(let listed)? = fields["tensors"], Set(listed.keys) == Set(entries.keys) else {
            throw refuse("the manifest's 'tensors' list disagrees with the file header (names differ)")
        }
        for name in listed.keys.sorted() {
            var description = JSONObject()
            description["dtype"] = .string("F32")
            description["shape"] = .array((entries[name]?.shape ?? []).map { .integer($0) })
            guard let given = listed[name]?.objectValue, unordered(given) == unordered(description) else {
                throw refuse("the manifest's 'tensors' list disagrees with the file header", tensor: name)
            }
        }

        self.component = component
        self.file = file
        self.sha256 = digest
        self.architecture = architecture
        self.tensors = Dictionary(uniqueKeysWithValues: container.entries.map { ($0.name, container.tensor($0)) })
    }
}

/// A JSON object's members regardless of their order (the format never depends on key order).
private func unordered(_ object: JSONObject) -> [String: JSONValue] {
    Dictionary(uniqueKeysWithValues: object.keys.map { ($0, object[$0] ?? .null) })
}

/// A name inside the directory, never a path: no separator, not empty, not `.` or `..`.
private func isPlainFileName(_ name: String) -> Bool {
    !name.isEmpty && name != "." && name != ".." && !name.utf8.contains(UInt8(ascii: "/")) && !name.utf8.contains(0)
}

/// The hasher's digest as lowercase hex, as sha256sum and the manifest write it.
private func hexDigest(_ hasher: SHA256) -> String {
    hasher.finalize().map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
}
