import Kernels

/// A request the engine cannot serve: parameters, images or components that do not fit.
public struct InferenceError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Slices to restore with one set of parameters. Jobs with different parameters (λ, T, R, seed,
/// method, …) run together in one `Engine.run` call.
public struct RestorationJob: Sendable {
    /// [B, C, H, W] preprocessed slices in the checkpoint's `output_range` (docs/preprocessing.md).
    public var images: Tensor
    public var parameters: InferenceParameters
    /// Polled at each detect-and-resample step boundary: once it answers true (its requester left or ran
    /// out of time), the job's remaining steps are skipped and its result is meaningless.
    public var isAbandoned: @Sendable () -> Bool

    public init(images: Tensor, parameters: InferenceParameters, isAbandoned: @escaping @Sendable () -> Bool = { false }) {
        self.images = images
        self.parameters = parameters
        self.isAbandoned = isAbandoned
    }
}

/// One detect-and-resample pass over the B·R sequences of a job (row b·R + r).
public struct RestorationStep: Sendable, Equatable {
    /// The score of every token that decided the mask: ATD (`mim-ood`) or critic (`mvtm-critic`)
    /// probability, or (`ar`) the token's negative log-likelihood given the restored prefix.
    public let scores: [[Float]]
    /// True where the token was resampled (score above the threshold).
    public let masked: [[Bool]]
}

/// What a job's restoration produced.
public struct RestorationResult: Sendable {
    public let parameters: InferenceParameters
    /// [B][h·w] tokens of each input slice, row-major.
    public let inputTokens: [[Int]]
    /// [B·R][h·w] final tokens; row b·R + r is restoration r of image b.
    public let restoredTokens: [[Int]]
    /// [B, R, C, H, W] decoded restorations.
    public let restorations: Tensor
    /// [B, C, H, W] combined, smoothed residual, clamped to [0, 1].
    public let anomalyMap: Tensor
    /// [B, h, w] per input token: `mim-ood` the ATD probability, `mvtm-critic` the critic
    /// probability, `ar` its NLL given the restored prefix averaged over the R restorations.
    public let tokenScores: Tensor
    /// Passes that resampled something (≤ T; the AR baseline's raster pass counts as one).
    public var stepsRun: Int { steps.count }
    /// Those passes, in order.
    public let steps: [RestorationStep]
    /// Sequences the detector (ATD, critic; AR: the raster pass) scored. Work not needed is not done: at step 0
    /// one per image (its R restorations are still its input), then only sequences that a draw changed; none
    /// for a background-only image.
    public let sequencesScored: Int
    /// The masked tokens of each generator (MVTM) pass the job ran, in order (none for `ar`): the passes of
    /// equal inputs are one, and a sequence given the input of its last pass again keeps that pass's logits.
    public let generatorPasses: [Int]
}

/// The MIM-OOD engine (paper §3.4; reference Training/mimood_train/pipeline.py): a checkpoint's
/// networks and the restoration pipeline over them.
public struct Engine: Sendable {
    public let manifest: Manifest
    /// SHA-256 of the model.json the checkpoint was verified from: the model's identity.
    public let modelSHA256: String
    public let vqvae: VQVAE
    public let atd: TokenTransformer?
    public let mvtm: TokenTransformer?
    public let ar: TokenTransformer?
    public let critic: TokenTransformer?
    /// The baseline token scorer `code-frequency`, when the checkpoint has one.
    public let prior: CodeFrequencyPrior?
    /// Most images per VQ-VAE pass and sequences per Transformer pass. They bound memory only:
    /// results do not depend on them.
    public var maxImagesPerPass = 8
    public var maxSequencesPerPass = 64
    /// How the AR baseline computes each raster position's logits. Results do not depend on it
    /// beyond float rounding; only the time does.
    public var arDecoding = ARDecoding.kvCache
    /// Whether a generator input met before within one `run` (the R restorations of an image at step 0, a
    /// sequence masked as at its last pass) reuses those logits. Results do not depend on it; the forced
    /// `mimood bench` turns it off to run every pass PyTorch's bench runs.
    public var reusesGeneratorPasses = true

    /// The checkpoint's `inference` settings: copy and override per job.
    public var defaults: InferenceParameters { manifest.inference }

    public init(_ checkpoint: Checkpoint) throws {
        guard let vqvae = checkpoint.components[.vqvae] else {
            throw InferenceError("\(checkpoint.directory): every method needs the 'vqvae' component, which was not loaded")
        }
        self.manifest = checkpoint.manifest
        self.modelSHA256 = checkpoint.manifestSHA256
        self.vqvae = VQVAE(vqvae)
        let codes = self.vqvae.config.codebookSize
        let positions = self.vqvae.config.grid * self.vqvae.config.grid
        func transformer(_ component: Component, vocabulary: Int) throws -> TokenTransformer? {
            guard let loaded = checkpoint.components[component] else { return nil }
            let network = TokenTransformer(loaded)
            guard network.config.vocabSize == vocabulary, network.config.nPositions == positions else {
                throw InferenceError("\(checkpoint.directory): '\(component.rawValue)' has vocab_size \(network.config.vocabSize) and "
                                     + "n_positions \(network.config.nPositions); the VQ-VAE (K = \(codes), \(positions) tokens) needs "
                                     + "\(vocabulary) and \(positions)")
            }
            return network
        }
        atd = try transformer(.atd, vocabulary: codes)
        mvtm = try transformer(.mvtm, vocabulary: codes + 1)   // + [MASK]
        ar = try transformer(.ar, vocabulary: codes + 1)       // + [SOS]
        critic = try transformer(.critic, vocabulary: codes)
        prior = checkpoint.components[.prior].map(CodeFrequencyPrior.init)
        if let prior, prior.config.nPositions != positions || prior.config.nCodes != codes {
            throw InferenceError("\(checkpoint.directory): 'prior' has n_positions \(prior.config.nPositions) and n_codes "
                                 + "\(prior.config.nCodes); the VQ-VAE (K = \(codes), \(positions) tokens) needs \(positions) and \(codes)")
        }
    }

    /// The token Transformer of a component, when the checkpoint has it.
    public func network(_ component: Component) -> TokenTransformer? {
        switch component {
        case .atd: atd
        case .mvtm: mvtm
        case .ar: ar
        case .critic: critic
        case .vqvae, .prior: nil
        }
    }

    /// Whether the checkpoint has the component (every engine has its VQ-VAE).
    public func has(_ component: Component) -> Bool {
        switch component {
        case .vqvae: true
        case .prior: prior != nil
        case .atd, .mvtm, .ar, .critic: network(component) != nil
        }
    }

    /// Why this checkpoint cannot run `method` (the components it lacks), or nil when it can.
    public func refusal(of method: InferenceMethod) -> String? {
        let lacking = method.requiredComponents.filter { !has($0) }
        guard !lacking.isEmpty else { return nil }
        return "method '\(method.rawValue)' needs component\(lacking.count > 1 ? "s" : "") "
            + lacking.map { "'\($0.rawValue)'" }.joined(separator: ", ") + ", which this checkpoint does not have"
    }

    public func supports(_ method: InferenceMethod) -> Bool { refusal(of: method) == nil }

    /// Checks a job before it is queued: parameters, the method's components, image shape and values.
    public func validate(_ job: RestorationJob) throws {
        if let problem = job.parameters.problem ?? refusal(of: job.parameters.method) { throw InferenceError(problem) }
        try validate(images: job.images)
    }

    /// Checks images for the VQ-VAE: [B ≥ 1, C, H, W] of the checkpoint's sizes, every value finite.
    func validate(images: Tensor) throws {
        let config = vqvae.config
        let expected = [config.inChannels, config.resolution, config.resolution]
        guard images.rank == 4, images.shape[0] >= 1, Array(images.shape.dropFirst()) == expected else {
            throw InferenceError("images must be [B ≥ 1, \(expected.map(String.init).joined(separator: ", "))], got \(images.shape)")
        }
        if let index = images.scalars.firstIndex(where: { !$0.isFinite }) {
            throw InferenceError("image \(index / images.shape.dropFirst().reduce(1, *)) holds a non-finite value")
        }
    }

    /// Which images of x [B, C, H, W] are background only: every pixel at the low end of the output range,
    /// where preprocessing puts everything outside the brain (docs/preprocessing.md §5). Such a slice has
    /// nothing to restore, so it skips the Transformers and the decoder.
    public func backgroundOnly(_ images: Tensor) -> [Bool] {
        let background = Float(manifest.preprocessing.outputRange[0])
        let size = images.count / max(images.shape[0], 1)
        return (0..<images.shape[0]).map { image in
            images.scalars[image * size ..< (image + 1) * size].allSatisfy { $0 == background }
        }
    }

    /// Runs every job with draws seeded by its own `parameters.seed`; the same jobs give the same results.
    public func run(_ jobs: [RestorationJob]) throws -> [RestorationResult] {
        var sampler = SeededSampler(seeds: jobs.map(\.parameters.seed))
        return try run(jobs, sampler: &sampler)
    }

    /// Runs every job, taking each resampled token from `sampler`. Work is shared across jobs: one
    /// encoder pass for all slices, one detector and one generator pass per step for all jobs of a
    /// method still running, one raster pass for all AR jobs, one decoder pass for all restorations.
    public func run(_ jobs: [RestorationJob], sampler: inout some TokenSampler) throws -> [RestorationResult] {
        var timings = StageTimings()
        return try run(jobs, sampler: &sampler, timings: &timings)
    }

    /// `run`, adding the wall time of each stage to `timings`.
    public func run(_ jobs: [RestorationJob], sampler: inout some TokenSampler,
                    timings: inout StageTimings) throws -> [RestorationResult] {
        let clock = ContinuousClock()
        var stageStart = clock.now
        func endStage(_ stage: WritableKeyPath<StageTimings, Duration>) {
            let now = clock.now
            timings[keyPath: stage] += now - stageStart
            stageStart = now
        }
        for (index, job) in jobs.enumerated() {
            do { try validate(job) } catch let error as InferenceError { throw InferenceError("job \(index): \(error)") }
        }
        // 1. Tokenise every slice.
        let tokensPerJob = split(tokenize(jobs.map(\.images)), counts: jobs.map { $0.images.shape[0] })
        let backgroundPerJob = jobs.map { backgroundOnly($0.images) }
        endStage(\.tokenize)

        // 2. Restore the token grids, each method's jobs together.
        var restorations = [Restoration?](repeating: nil, count: jobs.count)
        for method in InferenceMethod.allCases {
            let group = jobs.indices.filter { jobs[$0].parameters.method == method }
            guard !group.isEmpty else { continue }
            let members: [JobTokens] = group.map {
                (index: $0, tokens: tokensPerJob[$0], background: backgroundPerJob[$0], parameters: jobs[$0].parameters,
                 isAbandoned: jobs[$0].isAbandoned)
            }
            // validate() has checked that each job's method has its networks.
            let lacking = InferenceError("method '\(method.rawValue)' lacks a network")
            let restored: [Restoration]
            switch method {
            case .mimOOD, .mvtmCritic:
                guard let generator = mvtm, let detector = method == .mimOOD ? atd : critic else { throw lacking }
                restored = try restoreIteratively(members, detector: detector, generator: generator, sampler: &sampler)
            case .ar:
                guard let ar else { throw lacking }
                restored = try restoreAutoregressively(members, model: ar, sampler: &sampler)
            }
            for (job, restoration) in zip(group, restored) { restorations[job] = restoration }
        }

        endStage(\.restore)
        // 3. Decode every restoration (a background-only slice's restorations are the slice itself: nothing
        // was restored, and its map is zero); 4. residuals → anomaly maps.
        let decodable = jobs.indices.map { index in
            (restorations[index]?.tokens ?? []).enumerated().filter { !backgroundPerJob[index][$0.offset / jobs[index].parameters.restorations] }
                .map(\.element)
        }
        let decodedPerJob = split(decode(decodable.flatMap { $0 }), counts: decodable.map(\.count))
        endStage(\.decode)
        defer { endStage(\.anomalyMap) }
        return try jobs.indices.map { index in
            let (job, restoration) = (jobs[index], restorations[index])
            guard let restoration else { throw InferenceError("job \(index): no restoration was produced") }
            let count = job.parameters.restorations
            var (restoredSlices, next) = ([Tensor](), 0)
            for (image, slice) in unstack(job.images).enumerated() {
                if backgroundPerJob[index][image] {
                    restoredSlices += Array(repeating: slice, count: count)
                } else {
                    restoredSlices += decodedPerJob[index][next ..< next + count]
                    next += count
                }
            }
            let restored = stack(restoredSlices, leading: [job.images.shape[0], job.parameters.restorations])
            let grid = vqvae.config.grid
            return RestorationResult(
                parameters: job.parameters, inputTokens: tokensPerJob[index], restoredTokens: restoration.tokens,
                restorations: restored, anomalyMap: anomalyMap(job.images, restored, job.parameters),
                tokenScores: Tensor(shape: [job.images.shape[0], grid, grid], scalars: restoration.tokenScores.flatMap { $0 }),
                steps: restoration.steps, sequencesScored: restoration.sequencesScored,
                generatorPasses: restoration.generatorPasses)
        }
    }

    // MARK: - VQ-VAE passes over many images

    /// Tokens of every slice of every batch, in order, encoding at most `maxImagesPerPass` at a time.
    func tokenize(_ batches: [Tensor]) -> [[Int]] {
        let images = batches.flatMap(unstack)
        var tokens: [[Int]] = []
        for start in stride(from: 0, to: images.count, by: maxImagesPerPass) {
            let chunk = Array(images[start ..< min(images.count, start + maxImagesPerPass)])
            tokens += vqvae.tokenize(stack(chunk, leading: [chunk.count]))
        }
        return tokens
    }

    /// Images of the token grids, one [C, H, W] tensor each, decoding at most `maxImagesPerPass` at a time.
    /// A grid that occurs more than once is decoded once: a slice whose detector flags nothing keeps its
    /// tokens in all R restorations.
    func decode(_ grids: [[Int]]) -> [Tensor] {
        mapDistinct(grids) { distinct in
            stride(from: 0, to: distinct.count, by: maxImagesPerPass).flatMap { start in
                overCores(Array(distinct[start ..< min(distinct.count, start + maxImagesPerPass)])) { unstack(vqvae.decode($0)) }
            }
        }
    }
}

/// Wall time spent in each stage of `Engine.run`, summed over calls (benchmarks, Server-Timing).
public struct StageTimings: Sendable, Equatable {
    public var tokenize = Duration.zero
    public var restore = Duration.zero
    public var decode = Duration.zero
    public var anomalyMap = Duration.zero

    public init() {}

    public var total: Duration { tokenize + restore + decode + anomalyMap }
}

/// What restoring one job produced, before decoding.
struct Restoration {
    /// [B·R][N] final tokens.
    var tokens: [[Int]]
    /// [B][N] the score of each input token (RestorationResult.tokenScores).
    var tokenScores: [[Float]]
    var steps: [RestorationStep]
    var sequencesScored = 0
    var generatorPasses: [Int] = []
}

/// A job as the restoration loops see it: its index (for draw sites), its input tokens, which of its
/// images are background only (their sequences are left as they are, with scores 0), its settings,
/// and whether it is still wanted.
typealias JobTokens = (index: Int, tokens: [[Int]], background: [Bool], parameters: InferenceParameters,
                       isAbandoned: @Sendable () -> Bool)

// MARK: - Small array helpers

/// `items` cut into consecutive runs of the given lengths.
func split<Element>(_ items: [Element], counts: [Int]) -> [[Element]] {
    var start = 0
    return counts.map { count in
        defer { start += count }
        return Array(items[start ..< start + count])
    }
}

/// `transform`'s results for every item, computed for the distinct items only (once each, in order of first
/// occurrence): a network is a function of its input, so an input that repeats needs one pass.
func mapDistinct<Item: Hashable, Result>(_ items: [Item], _ transform: ([Item]) throws -> [Result]) rethrows -> [Result] {
    var firstIndex: [Item: Int] = [:]
    var distinct: [Item] = []
    let indices = items.map { item in
        if let index = firstIndex[item] { return index }
        firstIndex[item] = distinct.count
        distinct.append(item)
        return distinct.count - 1
    }
    let results = try transform(distinct)
    return indices.map { results[$0] }
}

/// The slices of x along its first dimension.
func unstack(_ x: Tensor) -> [Tensor] {
    let inner = Array(x.shape.dropFirst())
    let size = inner.reduce(1, *)
    return (0..<(x.shape.first ?? 0)).map { Tensor(shape: inner, scalars: Array(x.scalars[$0 * size ..< ($0 + 1) * size])) }
}

/// Tensors of one shape S stacked into [leading..., S]; leading's product is parts.count.
func stack(_ parts: [Tensor], leading: [Int]) -> Tensor {
    Tensor(shape: leading + (parts.first?.shape ?? []), scalars: parts.flatMap(\.scalars))
}
