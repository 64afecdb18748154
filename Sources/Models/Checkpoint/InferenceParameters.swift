import JSON

/// The restoration method (docs/checkpoint-format.md §3 and `inference.method`).
public enum InferenceMethod: String, Sendable, CaseIterable {
    /// ATD picks the tokens to resample, MVTM in-paints them (the paper's method).
    case mimOOD = "mim-ood"
    /// Autoregressive baseline: raster order, resample tokens whose NLL exceeds λ_NLL.
    case ar
    /// MVTM + Token-Critic baseline: the critic picks the tokens, MVTM in-paints them.
    case mvtmCritic = "mvtm-critic"

    public var requiredComponents: [Component] {
        switch self {
        case .mimOOD: [.vqvae, .atd, .mvtm]
        case .ar: [.vqvae, .ar]
        case .mvtmCritic: [.vqvae, .mvtm, .critic]
        }
    }
}

/// How the R residual maps of one image are combined.
public enum CombineRule: String, Sendable {
    case mean
    /// Σ_j w_j d_j with w = softmax_j(temperature / max(mean_pixels d_j, 1e-8)).
    case softmaxWeighted = "softmax-weighted"
}

/// Every setting of one restoration (`inference` in model.json). The checkpoint's values are the
/// defaults; a caller copies them and overrides any field per request.
public struct InferenceParameters: Sendable, Equatable, Hashable {
    public var method: InferenceMethod
    /// λ: a token is resampled when the ATD's probability is > λ.
    public var lambda: Float
    /// T ≥ 1: maximum detect-and-resample iterations (`mim-ood`, `mvtm-critic`).
    public var steps: Int
    /// R ≥ 1: independent restorations per image.
    public var restorations: Int
    public var combine: CombineRule
    /// Temperature of `softmax-weighted`.
    public var temperature: Float
    /// Odd window sizes of the min-pool and then the average pool smoothing the combined residual.
    public var minPool: Int
    public var avgPool: Int
    /// λ_NLL (`ar`): a token is resampled when its NLL given the restored prefix is > λ_NLL.
    public var lambdaNLL: Float
    /// (`mvtm-critic`): a token is resampled when the critic's probability is > this.
    public var criticThreshold: Float
    /// Seed of the draws; the same seed gives the same output.
    public var seed: UInt64

    public init(method: InferenceMethod, lambda: Float, steps: Int, restorations: Int, combine: CombineRule,
                temperature: Float, minPool: Int, avgPool: Int, lambdaNLL: Float, criticThreshold: Float, seed: UInt64) {
        self.method = method
        self.lambda = lambda
        self.steps = steps
        self.restorations = restorations
        self.combine = combine
        self.temperature = temperature
        self.minPool = minPool
        self.avgPool = avgPool
        self.lambdaNLL = lambdaNLL
        self.criticThreshold = criticThreshold
        self.seed = seed
    }

    /// The first setting the engine cannot run with, as a sentence naming the field; nil when all are valid.
    public var problem: String? {
        for (name, value) in [("lambda", lambda), ("temperature", temperature), ("lambda_nll", lambdaNLL),
                              ("critic_threshold", criticThreshold)] where !value.isFinite {
            return "\(name) must be a finite number, got \(value)"
        }
        if steps < 1 { return "steps must be at least 1, got \(steps)" }
        if restorations < 1 { return "restorations must be at least 1, got \(restorations)" }
        for (name, size) in [("min_pool", minPool), ("avg_pool", avgPool)] where size < 1 || size % 2 == 0 {
            return "smoothing.\(name) must be an odd window size ≥ 1 (same-size output), got \(size)"
        }
        return nil
    }
}

extension InferenceParameters {
    /// Reads model.json's `inference` object; every field of the format is required.
    init(json value: JSONValue?) throws(ManifestProblem) {
        guard let object = value?.objectValue else { throw ManifestProblem("'inference' must be an object") }
        func field(_ key: String) -> JSONValue { object[key] ?? .null }
        func number(_ key: String) throws(ManifestProblem) -> Float {
            guard let value = field(key).numberValue else {
                throw ManifestProblem("inference.\(key) must be a number, got \(field(key).pythonDescription)")
            }
            return Float(value)
        }
        func integer(_ value: JSONValue, _ name: String) throws(ManifestProblem) -> Int {
            guard case .integer(let integer) = value else {
                throw ManifestProblem("inference.\(name) must be an integer, got \(value.pythonDescription)")
            }
            return integer
        }
        guard case .string(let methodName) = field("method"), let method = InferenceMethod(rawValue: methodName) else {
            throw ManifestProblem("unknown inference method \(field("method").pythonDescription) "
                                  + "(known: ['ar', 'mim-ood', 'mvtm-critic'])")
        }
        guard case .string(let combineName) = field("combine"), let combine = CombineRule(rawValue: combineName) else {
            throw ManifestProblem("inference.combine must be 'mean' or 'softmax-weighted', got \(field("combine").pythonDescription)")
        }
        guard let smoothing = field("smoothing").objectValue else {
            throw ManifestProblem("inference.smoothing must be an object {\"min_pool\": int, \"avg_pool\": int}")
        }
        let seed = try integer(field("seed"), "seed")
        guard seed >= 0 else { throw ManifestProblem("inference.seed must be non-negative, got \(seed)") }
        self.init(method: method, lambda: try number("lambda"), steps: try integer(field("steps"), "steps"),
                  restorations: try integer(field("restorations"), "restorations"), combine: combine,
                  temperature: try number("temperature"),
                  minPool: try integer(smoothing["min_pool"] ?? .null, "smoothing.min_pool"),
                  avgPool: try integer(smoothing["avg_pool"] ?? .null, "smoothing.avg_pool"),
                  lambdaNLL: try number("lambda_nll"), criticThreshold: try number("critic_threshold"),
                  seed: UInt64(seed))
        if let problem { throw ManifestProblem("inference: \(problem)") }
    }
}

extension InferenceParameters {
    /// The threshold the method compares its token scores with: λ (`mim-ood`), the critic threshold
    /// (`mvtm-critic`), λ_NLL (`ar`).
    public var methodThreshold: Float {
        get {
            switch method {
            case .mimOOD: lambda
            case .mvtmCritic: criticThreshold
            case .ar: lambdaNLL
            }
        }
        set {
            switch method {
            case .mimOOD: lambda = newValue
            case .mvtmCritic: criticThreshold = newValue
            case .ar: lambdaNLL = newValue
            }
        }
    }
}

extension InferenceParameters {
    /// These parameters with a caller's overrides (a query, command-line options); nil keeps the value.
    /// The threshold is set after the method, because the method picks which threshold it is.
    public func overriding(method: InferenceMethod? = nil, restorations: Int? = nil, steps: Int? = nil,
                           threshold: Float? = nil, seed: UInt64? = nil, combine: CombineRule? = nil) -> InferenceParameters {
        var parameters = self
        if let method { parameters.method = method }
        if let restorations { parameters.restorations = restorations }
        if let steps { parameters.steps = steps }
        if let threshold { parameters.methodThreshold = threshold }
        if let seed { parameters.seed = seed }
        if let combine { parameters.combine = combine }
        return parameters
    }
}
