import JSON

/// The five networks a checkpoint can hold, and the optional positional code-frequency prior, a
/// baseline token scorer no inference method needs (docs/checkpoint-format.md §1).
public enum Component: String, CaseIterable, Sendable, Hashable {
    case vqvae, atd, mvtm, ar, critic, prior
}

/// `architecture` with `"kind": "vqvae"` — the Taming VQ-VAE (`VQVAEConfig` of the training side).
public struct VQVAEConfig: Sendable, Equatable {
    public let inChannels: Int
    public let ch: Int
    public let chMult: [Int]
    public let numResBlocks: Int
    public let attnResolutions: [Int]
    public let resolution: Int
    public let zChannels: Int
    public let embedDim: Int
    public let nEmbed: Int
    public let dropout: Double
    public let beta: Double
    public let encoder: VQVAEEncoder
    /// Latents and codes l2-normalised before the look-up, and the codes the decoder reads too (ViT-VQGAN).
    public let l2Codes: Bool

    /// GroupNorm's group count throughout the VQ-VAE.
    public static let groups = 32

    /// f: pixels per token along each axis; one halving per level but the last.
    public var downsamplingFactor: Int { 1 << (chMult.count - 1) }
    /// h = w: token grid side.
    public var grid: Int { resolution / downsamplingFactor }
    /// K: codebook size.
    public var codebookSize: Int { nEmbed }
}

/// How the VQ-VAE's encoder reaches from pixels to tokens (`encoder` in the architecture).
public enum VQVAEEncoder: String, Sendable, CaseIterable {
    /// Taming's: ResNet levels with attention; every token may depend on the whole slice.
    case taming
    /// Each f×f patch embedded alone, one 3×3 convolution of context, per-token MLP blocks (LayerNorm over
    /// a token's channels): a token depends on its own patch and its eight neighbours' only.
    case patch
}

/// `architecture` with `"kind": "token_transformer"` (`TransformerConfig` of the training side).
public struct TransformerConfig: Sendable, Equatable {
    public let vocabSize: Int
    public let nPositions: Int
    public let dim: Int
    public let depth: Int
    public let heads: Int
    public let mlpRatio: Double
    public let dropout: Double
    public let dropPath: Double
    /// The component the network serves as (`head` in model.json): it decides the output head.
    public let role: Component
    public let causal: Bool
    public let layerNormEps: Double

    public var headDim: Int { dim / heads }
    /// MLP hidden width, `int(dim · mlp_ratio)` as in Python (truncation).
    public var mlpHidden: Int { Int(Double(dim) * mlpRatio) }
    /// One logit per token for a detector, K logits (the special id excluded) for a generator.
    public var outputWidth: Int { role == .atd || role == .critic ? 1 : vocabSize - 1 }
}

/// `architecture` with `"kind": "token_prior"` (`TokenPriorConfig` of the training side): log p(code | grid
/// position) counted on healthy training tokens, one tensor `log_prob` [nPositions, nCodes].
public struct TokenPriorConfig: Sendable, Equatable {
    public let nPositions: Int
    public let nCodes: Int
    /// How the table was smoothed: for the record only.
    public let alpha: Double
    public let sigma: Double
}

public enum Architecture: Sendable, Equatable {
    case vqvae(VQVAEConfig)
    case tokenTransformer(TransformerConfig)
    case tokenPrior(TokenPriorConfig)

    static let kinds = ["token_prior", "token_transformer", "vqvae"]
}

/// Why an architecture is refused; the message is the reference reader's.
struct ArchitectureProblem: Error {
    let message: String
}

extension Architecture {
    /// Parses an `architecture` object: `kind` known, fields exactly those of the configuration,
    /// values the model can be built with, and the kind (and head) the component needs.
    static func parse(_ value: JSONValue, for component: Component) throws(ArchitectureProblem) -> Architecture {
        let kind = value.objectValue?["kind"]
        guard let object = value.objectValue, case .string(let kindName)? = kind, kinds.contains(kindName) else {
            throw ArchitectureProblem(message: "unknown architecture kind \((kind ?? .null).pythonDescription) "
                                      + "(known: \(JSONValue.array(kinds.map { .string($0) }).pythonDescription))")
        }
        let (configName, expected) = switch kindName {
        case "vqvae": ("VQVAEConfig", VQVAEConfig.fieldNames)
        case "token_prior": ("TokenPriorConfig", TokenPriorConfig.fieldNames)
        default: ("TransformerConfig", TransformerConfig.fieldNames)
        }
        let given = Set(object.keys).subtracting(["kind"])
        guard given == expected else {
            let missing = expected.subtracting(given).sorted().map { JSONValue.string($0) }
            let unknown = given.subtracting(expected).sorted().map { JSONValue.string($0) }
            throw ArchitectureProblem(message: "architecture fields do not match \(configName): missing "
                                      + "\(JSONValue.array(missing).pythonDescription), unknown \(JSONValue.array(unknown).pythonDescription)")
        }
        let fields = FieldReader(object: object, configName: configName)
        let architecture: Architecture = switch kindName {
        case "vqvae": .vqvae(try VQVAEConfig(fields))
        case "token_prior": .tokenPrior(try TokenPriorConfig(fields))
        default: .tokenTransformer(try TransformerConfig(fields))
        }
        try architecture.check(fits: component)
        return architecture
    }

    private func check(fits component: Component) throws(ArchitectureProblem) {
        let isPrior = if case .tokenPrior = self { true } else { false }
        guard isPrior == (component == .prior) else {
            throw ArchitectureProblem(message: "component '\(component.rawValue)' needs kind "
                                      + (isPrior ? "'vqvae' or 'token_transformer', not 'token_prior'" : "'token_prior', not '\(kindName)'"))
        }
        switch self {
        case .tokenPrior:
            return
        case .vqvae:
            guard component == .vqvae else {
                throw ArchitectureProblem(message: "component '\(component.rawValue)' needs kind 'token_transformer', not 'vqvae'")
            }
        case .tokenTransformer(let config):
            guard component != .vqvae else {
                throw ArchitectureProblem(message: "component 'vqvae' needs kind 'vqvae', not 'token_transformer'")
            }
            guard config.role == component else {
                throw ArchitectureProblem(message: "component '\(component.rawValue)' needs head '\(component.rawValue)', "
                                          + "the architecture has head '\(config.role.rawValue)'")
            }
            guard config.causal == (config.role == .ar) else {
                throw ArchitectureProblem(message: "head '\(config.role.rawValue)' needs causal \(config.role == .ar ? "true" : "false")")
            }
        }
    }
}

/// Reads typed configuration fields, refusing values the model cannot be built with. Sizes are
/// bounded so that no derived size or element count can overflow, and repeat counts (blocks) so that
/// the list of expected tensor names stays small whatever the manifest says.
private struct FieldReader {
    static let largestSize = 1 << 24
    static let largestRepeat = 256

    let object: JSONObject
    let configName: String

    func refuse(_ reason: String) -> ArchitectureProblem {
        ArchitectureProblem(message: "architecture does not fit \(configName): \(reason)")
    }

    func integer(_ key: String, minimum: Int, maximum: Int = largestSize) throws(ArchitectureProblem) -> Int {
        guard case .integer(let value)? = object[key], (minimum...maximum).contains(value) else {
            throw refuse("\(key) must be an integer from \(minimum) to \(maximum), got \((object[key] ?? .null).pythonDescription)")
        }
        return value
    }

    func integers(_ key: String, minimum: Int, count: ClosedRange<Int>) throws(ArchitectureProblem) -> [Int] {
        let reason = "\(key) must be a list of \(count.lowerBound) to \(count.upperBound) integers from \(minimum) to \(Self.largestSize)"
        guard case .array(let elements)? = object[key], count.contains(elements.count) else {
            throw refuse("\(reason), got \((object[key] ?? .null).pythonDescription)")
        }
        var values: [Int] = []
        for element in elements {
            guard case .integer(let value) = element, (minimum...Self.largestSize).contains(value) else {
                throw refuse("\(reason), got \((object[key] ?? .null).pythonDescription)")
            }
            values.append(value)
        }
        return values
    }

    func number(_ key: String, in range: ClosedRange<Double> = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude) throws(ArchitectureProblem) -> Double {
        guard let value = object[key]?.numberValue, range.contains(value) else {
            throw refuse("\(key) must be a number in [\(range.lowerBound), \(range.upperBound)], got \((object[key] ?? .null).pythonDescription)")
        }
        return value
    }

    func bool(_ key: String) throws(ArchitectureProblem) -> Bool {
        guard case .bool(let value)? = object[key] else {
            throw refuse("\(key) must be true or false, got \((object[key] ?? .null).pythonDescription)")
        }
        return value
    }
}

extension VQVAEConfig {
    static let fieldNames: Set<String> = ["in_channels", "ch", "ch_mult", "num_res_blocks", "attn_resolutions",
                                          "resolution", "z_channels", "embed_dim", "n_embed", "dropout", "beta",
                                          "encoder", "l2_codes"]

    fileprivate init(_ fields: FieldReader) throws(ArchitectureProblem) {
        inChannels = try fields.integer("in_channels", minimum: 1)
        ch = try fields.integer("ch", minimum: 1)
        chMult = try fields.integers("ch_mult", minimum: 1, count: 1...16)
        numResBlocks = try fields.integer("num_res_blocks", minimum: 0, maximum: FieldReader.largestRepeat)
        attnResolutions = try fields.integers("attn_resolutions", minimum: 0, count: 0...16)
        resolution = try fields.integer("resolution", minimum: 1)
        zChannels = try fields.integer("z_channels", minimum: 1)
        embedDim = try fields.integer("embed_dim", minimum: 1)
        nEmbed = try fields.integer("n_embed", minimum: 1)
        dropout = try fields.number("dropout", in: 0...1)
        beta = try fields.number("beta")
        guard case .string(let encoderName)? = fields.object["encoder"], let encoder = VQVAEEncoder(rawValue: encoderName) else {
            throw fields.refuse("encoder must be one of \(VQVAEEncoder.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")), "
                                + "got \((fields.object["encoder"] ?? .null).pythonDescription)")
        }
        self.encoder = encoder
        l2Codes = try fields.bool("l2_codes")
        for channels in [ch] + chMult.map({ ch * $0 }) where channels % Self.groups != 0 {
            throw fields.refuse("GroupNorm needs channel counts divisible by \(Self.groups), ch · ch_mult gives \(channels)")
        }
        guard resolution % downsamplingFactor == 0 else {
            throw fields.refuse("resolution \(resolution) is not a multiple of the downsampling factor \(downsamplingFactor)")
        }
    }

    /// Channel count of level `level` (encoder.down.{level} and decoder.up.{level}).
    func channels(level: Int) -> Int { ch * chMult[level] }

    /// Feature-map side at level `level`: the input resolution halved once per level below it.
    func resolution(level: Int) -> Int { resolution >> level }

    func hasAttention(level: Int) -> Bool { attnResolutions.contains(resolution(level: level)) }

    /// The patch encoder's width (that of the last level) and its number of per-token MLP blocks.
    var patchEncoderChannels: Int { channels(level: chMult.count - 1) }
    var patchEncoderBlocks: Int { 2 * numResBlocks }
}

extension TransformerConfig {
    static let fieldNames: Set<String> = ["vocab_size", "n_positions", "dim", "depth", "heads", "mlp_ratio",
                                          "dropout", "drop_path", "head", "causal", "layer_norm_eps"]

    fileprivate init(_ fields: FieldReader) throws(ArchitectureProblem) {
        vocabSize = try fields.integer("vocab_size", minimum: 1)
        nPositions = try fields.integer("n_positions", minimum: 1)
        dim = try fields.integer("dim", minimum: 1)
        depth = try fields.integer("depth", minimum: 1, maximum: FieldReader.largestRepeat)
        heads = try fields.integer("heads", minimum: 1)
        mlpRatio = try fields.number("mlp_ratio", in: 0...Double(FieldReader.largestSize))
        dropout = try fields.number("dropout", in: 0...1)
        dropPath = try fields.number("drop_path")
        let transformers: [Component] = [.atd, .mvtm, .ar, .critic]
        guard case .string(let headName)? = fields.object["head"], let role = Component(rawValue: headName), transformers.contains(role) else {
            throw fields.refuse("head must be one of 'atd', 'mvtm', 'ar', 'critic', got \((fields.object["head"] ?? .null).pythonDescription)")
        }
        self.role = role
        causal = try fields.bool("causal")
        layerNormEps = try fields.number("layer_norm_eps", in: Double.leastNonzeroMagnitude...1)
        guard dim % heads == 0 else { throw fields.refuse("dim \(dim) is not divisible by heads \(heads)") }
        guard (1...FieldReader.largestSize).contains(mlpHidden) else {
            throw fields.refuse("MLP width int(dim · mlp_ratio) = \(mlpHidden) is out of range")
        }
        guard outputWidth >= 1 else { throw fields.refuse("head '\(headName)' needs vocab_size ≥ 2 (K codes + 1 special id)") }
    }
}

extension TokenPriorConfig {
    static let fieldNames: Set<String> = ["n_positions", "n_codes", "alpha", "sigma"]

    fileprivate init(_ fields: FieldReader) throws(ArchitectureProblem) {
        nPositions = try fields.integer("n_positions", minimum: 1)
        nCodes = try fields.integer("n_codes", minimum: 2)
        alpha = try fields.number("alpha", in: Double.leastNonzeroMagnitude...Double.greatestFiniteMagnitude)
        sigma = try fields.number("sigma", in: 0...Double.greatestFiniteMagnitude)
    }
}

extension Architecture {
    /// Every state_dict entry, in state_dict order: the network's layers declaring their parameters, the
    /// same walk that binds the loaded tensors to them.
    var expectedTensors: [(name: String, shape: [Int])] {
        var declarations = ParameterDeclarations()
        switch self {
        case .vqvae(let config): _ = VQVAEWeights(config, &declarations)
        case .tokenTransformer(let config): _ = TokenTransformerWeights(config, &declarations)
        case .tokenPrior(let config): _ = TokenPriorWeights(config, &declarations)
        }
        return declarations.declared
    }

    /// The `kind` the manifest gives.
    var kindName: String {
        switch self {
        case .vqvae: "vqvae"
        case .tokenTransformer: "token_transformer"
        case .tokenPrior: "token_prior"
        }
    }
}
