import Kernels

/// A token-level anomaly score of the paper's Table 1 (higher = more anomalous).
public enum TokenScorer: String, Sendable, CaseIterable {
    /// The ATD's probability that the token is anomalous (MIM-OOD).
    case atd
    /// −log p(token) under the MVTM, the token masked and its 8 neighbours visible.
    case mvtm
    /// −log p(token | raster prefix) under the AR model, teacher-forced (the input's own prefix).
    case ar
    /// The Token-Critic's probability that the token was not original.
    case critic
    /// −log p(code | position) under the positional code-frequency prior: a non-learned baseline.
    case codeFrequency = "code-frequency"

    public var component: Component {
        switch self {
        case .atd: .atd
        case .mvtm: .mvtm
        case .ar: .ar
        case .critic: .critic
        case .codeFrequency: .prior
        }
    }
}

extension Engine {
    /// Token grids of slices [B, C, H, W], row-major, encoding at most `maxImagesPerPass` at a time.
    public func tokens(of images: Tensor) throws -> [[Int]] {
        try validate(images: images)
        return tokenize([images])
    }

    /// The scorer's score of every token of every grid, one row per grid, at most
    /// `maxSequencesPerPass` grids per pass (reference: Training/mimood_train/evaluate.py).
    public func tokenScores(_ scorer: TokenScorer, grids: [[Int]]) throws -> [[Float]] {
        let lacking = InferenceError("token scorer '\(scorer.rawValue)' needs component '\(scorer.component.rawValue)', which this checkpoint does not have")
        guard has(scorer.component) else { throw lacking }
        let (positions, codes) = (vqvae.config.grid * vqvae.config.grid, vqvae.config.codebookSize)
        if let bad = grids.firstIndex(where: { $0.count != positions || $0.contains { !(0..<codes).contains($0) } }) {
            throw InferenceError("grid \(bad) must hold \(positions) tokens in 0..<\(codes)")
        }
        if scorer == .codeFrequency, let prior { return prior.scores(grids) }
        guard let network = network(scorer.component) else { throw lacking }
        var scores: [[Float]] = []
        for start in stride(from: 0, to: grids.count, by: maxSequencesPerPass) {
            let chunk = Array(grids[start ..< min(grids.count, start + maxSequencesPerPass)])
            switch scorer {
            case .mvtm: scores += maskedNLL(network, chunk)
            case .ar: scores += teacherForcedNLL(network, chunk)
            default: scores += network.probabilities(chunk)   // the ATD and the critic
            }
        }
        return scores
    }

    /// MVTM: the grid masked in 4 interleaved groups (row % 2, column % 2), one pass per group, so each
    /// token is predicted while masked with its 8 neighbours visible.
    private func maskedNLL(_ mvtm: TokenTransformer, _ grids: [[Int]]) -> [[Float]] {
        let (grid, maskID) = (vqvae.config.grid, mvtm.config.vocabSize - 1)
        let group = (0..<grid * grid).map { 2 * ($0 / grid % 2) + $0 % grid % 2 }
        var nll = grids.map { [Float](repeating: 0, count: $0.count) }
        for masked in 0..<4 {
            let inputs = grids.map { tokens in tokens.indices.map { group[$0] == masked ? maskID : tokens[$0] } }
            let logProbabilities = logSoftmax(mvtm.logits(inputs))
            let (length, codes) = (logProbabilities.shape[1], logProbabilities.shape[2])
            for (s, tokens) in grids.enumerated() {
                for position in 0..<length where group[position] == masked {
                    nll[s][position] = -logProbabilities.scalars[(s * length + position) * codes + tokens[position]]
                }
            }
        }
        return nll
    }

    /// AR: one causal pass over [SOS] + the grid without its last token; position i's logits score token i.
    private func teacherForcedNLL(_ ar: TokenTransformer, _ grids: [[Int]]) -> [[Float]] {
        let startID = ar.config.vocabSize - 1
        let logProbabilities = logSoftmax(ar.logits(grids.map { [startID] + $0.dropLast() }))
        let (length, codes) = (logProbabilities.shape[1], logProbabilities.shape[2])
        return grids.enumerated().map { s, tokens in
            (0..<length).map { -logProbabilities.scalars[(s * length + $0) * codes + tokens[$0]] }
        }
    }
}
