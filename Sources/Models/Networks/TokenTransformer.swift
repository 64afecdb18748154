import Kernels

// The pre-LN token Transformer of the ATD, MVTM, AR and Token-Critic (docs/checkpoint-format.md §5):
//
//   x = tok_emb[tokens] + pos_emb[0, :N]
//   per block i:  x = x + attn.proj(MHA(ln1(x)))        (causal for the AR)
//                 x = x + mlp.fc2(GELU(mlp.fc1(ln2(x))))  (exact erf GELU)
//   logits = head(ln_f(x))                              [B, N, 1] (atd, critic) or [B, N, K] (mvtm, ar)
//
// The AR model also decodes incrementally, one position per call, with a KV cache (`KVCache`).

public struct TokenTransformer: Sendable {
    public let config: TransformerConfig
    private let weights: LoadedComponent

    public init(_ component: LoadedComponent) throws {
        guard case .tokenTransformer(let config) = component.architecture else {
            throw InferenceError("component '\(component.component.rawValue)' is not a token Transformer")
        }
        self.config = config
        self.weights = component
    }

    /// Logits for every position of each sequence: [B, N, outputWidth]. All sequences have one length N ≤ n_positions.
    public func logits(_ sequences: [[Int]]) throws -> Tensor {
        var x = try embed(sequences)
        for block in 0..<config.depth { x = try self.block(block, x) }
        return try head(x)
    }

    /// Detector heads (atd, critic): sigmoid of the per-token logit, one row of N probabilities per sequence.
    public func probabilities(_ sequences: [[Int]]) throws -> [[Float]] {
        guard config.outputWidth == 1 else { throw InferenceError("head '\(config.head.rawValue)' does not output one logit per token") }
        let probabilities = sigmoid(try logits(sequences)).scalars
        let length = sequences.first?.count ?? 0
        return sequences.indices.map { Array(probabilities[$0 * length ..< ($0 + 1) * length]) }
    }

    // MARK: - Layers

    /// tok_emb[tokens] + pos_emb[0, :N] → [B, N, dim].
    func embed(_ sequences: [[Int]]) throws -> Tensor {
        let length = sequences.first?.count ?? 0
        guard sequences.allSatisfy({ $0.count == length }), length <= config.nPositions else {
            throw InferenceError("sequences must all have one length ≤ \(config.nPositions), got lengths \(Set(sequences.map(\.count)).sorted())")
        }
        let tokens = try embedding(sequences.flatMap { $0 }, weight: weights["tok_emb.weight"])
        return try add(tokens.reshaped([sequences.count, length, config.dim]), positions(0..<length))
    }

    /// pos_emb[0, range] as [range.count, dim].
    func positions(_ range: Range<Int>) -> Tensor {
        let dim = config.dim
        return Tensor(shape: [range.count, dim], scalars: Array(weights["pos_emb"].scalars[range.lowerBound * dim ..< range.upperBound * dim]))
    }

    /// One pre-LN block on x [B, N, dim].
    func block(_ index: Int, _ x: Tensor) throws -> Tensor {
        let p = "blocks.\(index)"
        let qkv = try linear(layerNorm(p + ".ln1", x), p + ".attn.qkv")
        let mixed = try attention(qkv, heads: config.heads, causal: config.causal)
        let h = try add(x, linear(mixed, p + ".attn.proj"))
        return try add(h, mlp(p, layerNorm(p + ".ln2", h)))
    }

    /// fc2(GELU(fc1(x))).
    func mlp(_ prefix: String, _ x: Tensor) throws -> Tensor {
        try linear(gelu(linear(x, prefix + ".mlp.fc1")), prefix + ".mlp.fc2")
    }

    /// head(ln_f(x)).
    func head(_ x: Tensor) throws -> Tensor {
        try linear(layerNorm("ln_f", x), "head")
    }

    func linear(_ x: Tensor, _ prefix: String) throws -> Tensor {
        try Kernels.linear(x, weight: weights[prefix + ".weight"], bias: weights[prefix + ".bias"])
    }

    func layerNorm(_ prefix: String, _ x: Tensor) throws -> Tensor {
        try Kernels.layerNorm(x, weight: weights[prefix + ".weight"], bias: weights[prefix + ".bias"],
                              eps: Float(config.layerNormEps))
    }
}

// MARK: - Incremental decoding

/// The keys and values of every block for the positions a causal Transformer has already seen, so
/// that each new position costs one token's work instead of a pass over the whole prefix.
public struct KVCache: Sendable {
    public let sequences: Int
    /// Positions filled so far; the next `step` computes position `length`.
    public private(set) var length = 0
    let capacity: Int
    let dim: Int
    /// Per block, [sequences, capacity, dim]: the features of position t of sequence s at (s·capacity + t)·dim.
    var keys: [Tensor]
    var values: [Tensor]

    init(sequences: Int, config: TransformerConfig) {
        self.sequences = sequences
        capacity = config.nPositions
        dim = config.dim
        keys = Array(repeating: Tensor(zeros: [sequences, capacity, dim]), count: config.depth)
        values = keys
    }

    /// Stores position `length`'s k and v (rows of qkv [sequences, 3·dim]: q | k | v) for `block`.
    mutating func append(block: Int, qkv: Tensor) {
        for s in 0..<sequences {
            let target = (s * capacity + length) * dim
            let row = s * 3 * dim
            keys[block].scalars.replaceSubrange(target ..< target + dim, with: qkv.scalars[row + dim ..< row + 2 * dim])
            values[block].scalars.replaceSubrange(target ..< target + dim, with: qkv.scalars[row + 2 * dim ..< row + 3 * dim])
        }
    }

    mutating func advance() { length += 1 }
}

extension TokenTransformer {
    public func makeCache(sequences: Int) throws -> KVCache {
        guard config.causal else { throw InferenceError("only a causal Transformer decodes incrementally; '\(config.head.rawValue)' is not causal") }
        return KVCache(sequences: sequences, config: config)
    }

    /// Feeds one token per sequence at position `cache.length` and returns that position's logits
    /// [sequences, outputWidth] — equal to the full causal pass's logits at that position.
    public func step(_ tokens: [Int], cache: inout KVCache) throws -> Tensor {
        guard cache.dim == config.dim, cache.capacity == config.nPositions, cache.keys.count == config.depth else {
            throw InferenceError("step: the cache was made by another model")
        }
        guard tokens.count == cache.sequences, cache.length < cache.capacity else {
            throw InferenceError("step: \(tokens.count) tokens for a cache of \(cache.sequences) sequences at position \(cache.length) of \(cache.capacity)")
        }
        let position = cache.length
        var x = try add(embedding(tokens, weight: weights["tok_emb.weight"]), positions(position ..< position + 1))
        for index in 0..<config.depth {
            let p = "blocks.\(index)"
            let qkv = try linear(layerNorm(p + ".ln1", x), p + ".attn.qkv")   // [S, 3·dim]
            cache.append(block: index, qkv: qkv)
            let mixed = try cachedAttention(qkv, keys: cache.keys[index], values: cache.values[index],
                                            length: position + 1, heads: config.heads)
            x = try add(x, linear(mixed, p + ".attn.proj"))
            x = try add(x, mlp(p, layerNorm(p + ".ln2", x)))
        }
        cache.advance()
        return try head(x)
    }
}
