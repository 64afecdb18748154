import JSON

/// What the input slices must look like (`preprocessing` in model.json; docs/preprocessing.md).
public struct Preprocessing: Sendable, Equatable {
    public let imageSize: Int
    public let downsamplingFactor: Int
    /// Token grid (h, w).
    public let tokenGrid: [Int]
    public let spacingMM: Double
    public let clipPercentile: Double
    /// Intensity range [low, high] of the slices fed to the VQ-VAE.
    public let outputRange: [Double]
    public let reference: String
}

/// model.json as read and checked (docs/checkpoint-format.md §2).
public struct Manifest: Sendable {
    public let name: String
    /// UTC time of export, `YYYY-MM-DDTHH:MM:SSZ`.
    public let created: String
    public let preprocessing: Preprocessing
    /// The checkpoint's default inference settings.
    public let inference: InferenceParameters
    /// `inference.map_threshold`: the anomaly-map value above which a pixel is marked anomalous (the DICOM
    /// Segmentation's), calibrated on validation for the default settings; nil when the checkpoint has none.
    public let mapThreshold: Float?
    /// Free-form record of where the weights came from, uninterpreted.
    public let provenance: JSONValue
    /// The whole manifest as parsed, for fields this reader does not interpret.
    public let json: JSONObject
}

/// A refusal of model.json's contents; the loader adds the location.
struct ManifestProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

extension Manifest {
    static let format = "mimood-checkpoint"
    static let formatVersion = 2
    public static let fileName = "model.json"

    /// Step 1 of §6: an object with the right format, version and a non-empty set of known components.
    /// Returns the component entries in document order.
    static func checkHeader(_ json: JSONValue) throws(ManifestProblem) -> (JSONObject, [(Component, JSONValue)]) {
        guard case .object(let object) = json else { throw ManifestProblem("not a JSON object") }
        let format = object["format"] ?? .null
        guard format == .string(Self.format) else {
            throw ManifestProblem("format is \(format.pythonDescription), expected \(singleQuoted(Self.format))")
        }
        let version = object["format_version"] ?? .null
        guard version == .integer(Self.formatVersion) else {
            throw ManifestProblem("unsupported format_version \(version.pythonDescription) (this reader knows \(Self.formatVersion))")
        }
        guard case .object(let declared)? = object["components"], declared.count > 0 else {
            throw ManifestProblem("'components' must be a non-empty object")
        }
        var entries: [(Component, JSONValue)] = []
        for key in declared.keys {
            guard let component = Component(rawValue: key) else {
                let known = Component.allCases.map { singleQuoted($0.rawValue) }.joined(separator: ", ")
                throw ManifestProblem("unknown component \(singleQuoted(key)) (known: (\(known)))")
            }
            entries.append((component, declared[key] ?? .null))
        }
        return (object, entries)
    }

    /// The fields after the components: name, created, preprocessing, inference, provenance.
    init(_ object: JSONObject) throws(ManifestProblem) {
        guard case .string(let name)? = object["name"] else { throw ManifestProblem("'name' must be a string") }
        guard case .string(let created)? = object["created"] else { throw ManifestProblem("'created' must be a string") }
        self.name = name
        self.created = created
        preprocessing = try Preprocessing(json: object["preprocessing"])
        inference = try InferenceParameters(json: object["inference"])
        switch object["inference"]?.objectValue?["map_threshold"] {
        case nil: mapThreshold = nil
        case let value?:
            guard let number = value.numberValue, number > 0, number < 1 else {
                throw ManifestProblem("inference.map_threshold must be a number in (0, 1), got \(value.pythonDescription)")
            }
            mapThreshold = Float(number)
        }
        provenance = object["provenance"] ?? .null
        guard provenance.objectValue != nil else { throw ManifestProblem("'provenance' must be an object") }
        json = object
    }
}

extension Preprocessing {
    init(json value: JSONValue?) throws(ManifestProblem) {
        guard let object = value?.objectValue else { throw ManifestProblem("'preprocessing' must be an object") }
        func field(_ key: String) -> JSONValue { object[key] ?? .null }
        func integer(_ key: String) throws(ManifestProblem) -> Int {
            guard case .integer(let value) = field(key), value >= 1 else {
                throw ManifestProblem("preprocessing.\(key) must be a positive integer, got \(field(key).pythonDescription)")
            }
            return value
        }
        func pair<Value>(_ key: String, _ kind: String, _ read: (JSONValue) -> Value?) throws(ManifestProblem) -> [Value] {
            guard case .array(let elements) = field(key), elements.count == 2 else {
                throw ManifestProblem("preprocessing.\(key) must be a list of 2 \(kind), got \(field(key).pythonDescription)")
            }
            let values = elements.compactMap(read)
            guard values.count == 2 else {
                throw ManifestProblem("preprocessing.\(key) must be a list of 2 \(kind), got \(field(key).pythonDescription)")
            }
            return values
        }
        func number(_ key: String) throws(ManifestProblem) -> Double {
            guard let value = field(key).numberValue else {
                throw ManifestProblem("preprocessing.\(key) must be a number, got \(field(key).pythonDescription)")
            }
            return value
        }
        imageSize = try integer("image_size")
        downsamplingFactor = try integer("downsampling_factor")
        tokenGrid = try pair("token_grid", "integers") { if case .integer(let value) = $0 { value } else { nil } }
        spacingMM = try number("spacing_mm")
        clipPercentile = try number("clip_percentile")
        outputRange = try pair("output_range", "numbers", \.numberValue)
        guard case .string(let reference) = field("reference") else {
            throw ManifestProblem("preprocessing.reference must be a string, got \(field("reference").pythonDescription)")
        }
        self.reference = reference
    }

    /// The VQ-VAE fixes image size, factor and grid; a manifest saying otherwise is wrong.
    func check(against config: VQVAEConfig) throws(ManifestProblem) {
        let pairs = [("image_size", [imageSize], "resolution", [config.resolution]),
                     ("downsampling_factor", [downsamplingFactor], "downsampling factor", [config.downsamplingFactor]),
                     ("token_grid", tokenGrid, "token grid", [config.grid, config.grid])]
        for (field, stated, property, actual) in pairs where stated != actual {
            throw ManifestProblem("preprocessing.\(field) \(stated.count == 1 ? "\(stated[0])" : "\(stated)") "
                                  + "disagrees with the VQ-VAE's \(property) \(actual.count == 1 ? "\(actual[0])" : "\(actual)")")
        }
    }
}
