import Kernels

// The pre-LN token Transformer of the ATD, MVTM, AR and Token-Critic (docs/checkpoint-format.md §5):
//
//   x = tok_emb[tokens] + pos_emb[0, :N]
//   per block i:  x = x + attn.proj(MHA(ln1(x)))        (causal for the AR)
//                 x = x + mlp.fc2(GELU(mlp.fc1(ln2(x))))  (exact erf GELU)
//   logits = head(ln_f(x))                              [B, N, 1] (atd, critic) or [B, N, K] (mvtm, ar)
//
// The AR model also decodes incrementally, one position per call, with a KV cache (`KVCache`); the MVTM's
// logits can be asked for at some positions only (`logits(_:at:)`).
// The layers mirror models/transformer.py; their initialisers are the one walk of its state_dict.

public struct TokenTransformer: Sendable {
    public let config: TransformerConfig
    let weights: TokenTransformerWeights<Tensor>

    /// The Transformer of a loaded `atd`, `mvtm`, `ar` or `critic` component.
    public init(_ component: LoadedComponent) {
        guard case .tokenTransformer(let config) = component.architecture else {
            preconditionFailure("component '\(component.component.rawValue)' is not a token Transformer")
        }
        var binding = ParameterBinding(component: component)
        self.config = config
        weights = TokenTransformerWeights(config, &binding)
    }

    /// Logits for every position of each sequence: [B, N, outputWidth]. All sequences have one length N ≤ n_positions.
    public func logits(_ sequences: [[Int]]) -> Tensor {
        var x = embed(sequences)
        for block in weights.blocks { x = block(x) }
        return head(x)
    }

    /// The logits of one sequence at `positions` only (ascending): [positions.count, outputWidth], equal to
    /// those rows of `logits([sequence])`. The last block still computes every token's keys and values,
    /// but its attention output, projection and MLP, ln_f and the head run for those rows alone: the other
    /// rows' outputs feed nothing. (The MVTM needs its logits at the masked tokens only.)
    public func logits(_ sequence: [Int], at positions: [Int]) -> Tensor {
        var x = embed([sequence])
        for block in weights.blocks.dropLast() { x = block(x) }
        x = weights.blocks.last.map { $0(x, rows: positions) } ?? x.rows(positions)
        return head(x).reshaped([positions.count, config.outputWidth])
    }

    /// Detector heads (atd, critic): sigmoid of the per-token logit, one row of N probabilities per sequence.
    public func probabilities(_ sequences: [[Int]]) -> [[Float]] {
        precondition(config.outputWidth == 1, "head '\(config.role.rawValue)' does not output one logit per token")
        let probabilities = sigmoid(logits(sequences)).scalars
        let length = sequences.first?.count ?? 0
        return sequences.indices.map { Array(probabilities[$0 * length ..< ($0 + 1) * length]) }
    }

    /// tok_emb[tokens] + pos_emb[0, :N] → [B, N, dim].
    func embed(_ sequences: [[Int]]) -> Tensor {
        let length = sequences.first?.count ?? 0
        precondition(sequences.allSatisfy({ $0.count == length }) && length <= config.nPositions,
                     "sequences must all have one length ≤ \(config.nPositions), got lengths \(Set(sequences.map(\.count)).sorted())")
        let tokens = weights.tokenEmbedding(sequences.flatMap { $0 })
        return tokens.reshaped([sequences.count, length, config.dim]) + positions(0..<length)
    }

    /// pos_emb[0, range] as [range.count, dim].
    func positions(_ range: Range<Int>) -> Tensor {
        let dim = config.dim
        return Tensor(shape: [range.count, dim], scalars: Array(weights.positionEmbedding.scalars[range.lowerBound * dim ..< range.upperBound * dim]))
    }

    /// head(ln_f(x)).
    func head(_ x: Tensor) -> Tensor { weights.head(weights.finalNorm(x)) }
}

// MARK: - The network's layers

/// Every parameter of a token Transformer, declared in state_dict order (models/transformer.py: the
/// module's own parameter pos_emb first).
struct TokenTransformerWeights<Parameter: Sendable>: Sendable {
    /// `pos_emb` [1, n_positions, dim].
    let positionEmbedding: Parameter
    /// `tok_emb`.
    let tokenEmbedding: Embedding<Parameter>
    let blocks: [TransformerBlock<Parameter>]
    /// `ln_f`.
    let finalNorm: LayerNorm<Parameter>
    let head: Linear<Parameter>

    init(_ config: TransformerConfig, _ source: inout some ParameterSource<Parameter>) {
        positionEmbedding = source.parameter("pos_emb", shape: [1, config.nPositions, config.dim])
        tokenEmbedding = Embedding(&source, "tok_emb", count: config.vocabSize, dim: config.dim)
        blocks = (0..<config.depth).map { TransformerBlock(config, &source, "blocks.\($0)") }
        finalNorm = LayerNorm(&source, "ln_f", dim: config.dim, eps: Float(config.layerNormEps))
        head = Linear(&source, "head", in: config.dim, out: config.outputWidth)
    }
}

/// A pre-LN block: x + attn(ln1(x)), then x + mlp(ln2(x)).
struct TransformerBlock<Parameter: Sendable>: Sendable {
    let ln1: LayerNorm<Parameter>
    let attn: MultiHeadAttention<Parameter>
    let ln2: LayerNorm<Parameter>
    let mlp: MLP<Parameter>

    init(_ config: TransformerConfig, _ source: inout some ParameterSource<Parameter>, _ name: String) {
        let eps = Float(config.layerNormEps)
        ln1 = LayerNorm(&source, name + ".ln1", dim: config.dim, eps: eps)
        attn = MultiHeadAttention(config, &source, name + ".attn")
        ln2 = LayerNorm(&source, name + ".ln2", dim: config.dim, eps: eps)
        mlp = MLP(config, &source, name + ".mlp")
    }
}

extension TransformerBlock<Tensor> {
    /// x [B, N, dim].
    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = attn(ln1(x), adding: x)
        return mlp(ln2(h), adding: h)
    }

    /// `callAsFunction`'s rows `rows` (ascending) of one sequence, x [1, N, dim] → [1, rows.count, dim].
    func callAsFunction(_ x: Tensor, rows: [Int]) -> Tensor {
        let h = attn(ln1(x), rows: rows, adding: x.rows(rows))
        return mlp(ln2(h), adding: h)
    }

    /// x [S, dim], one position per sequence: `callAsFunction` at position `cache.length`, this block's
    /// (number `index`) keys and values kept in the cache.
    func step(_ x: Tensor, block index: Int, cache: inout KVCache) -> Tensor {
        let h = attn.step(ln1(x), block: index, cache: &cache, adding: x)
        return mlp(ln2(h), adding: h)
    }
}

/// proj(MHA(qkv(x))): one Linear gives [q | k | v], heads of dim / heads features, causal for the AR.
struct MultiHeadAttention<Parameter: Sendable>: Sendable {
    let qkv: Linear<Parameter>
    let proj: Linear<Parameter>
    let heads: Int
    let causal: Bool

    init(_ config: TransformerConfig, _ source: inout some ParameterSource<Parameter>, _ name: String) {
        qkv = Linear(&source, name + ".qkv", in: config.dim, out: 3 * config.dim)
        proj = Linear(&source, name + ".proj", in: config.dim, out: config.dim)
        heads = config.heads
        causal = config.causal
    }
}

extension MultiHeadAttention<Tensor> {
    /// residual + proj(MHA(qkv(x))), the residual add done by the projection's pass over its output.
    func callAsFunction(_ x: Tensor, adding residual: Tensor) -> Tensor {
        proj(attention(qkv(x), heads: heads, causal: causal), adding: residual)
    }

    /// The same at the query rows `rows` of one sequence only, x [1, N, dim], residual [1, rows.count, dim].
    func callAsFunction(_ x: Tensor, rows: [Int], adding residual: Tensor) -> Tensor {
        proj(attention(qkv(x), heads: heads, causal: causal, queries: rows), adding: residual)
    }

    /// The causal attention output of position `cache.length` alone, x [S, dim], its k and v appended to
    /// the cache, plus the residual.
    func step(_ x: Tensor, block index: Int, cache: inout KVCache, adding residual: Tensor) -> Tensor {
        let projections = qkv(x)   // [S, 3·dim]: q | k | v
        cache.append(block: index, qkv: projections)
        return proj(cachedAttention(projections, keys: cache.keys[index], values: cache.values[index], length: cache.length + 1, heads: heads),
                    adding: residual)
    }
}

/// fc2(GELU(fc1(x))), exact erf GELU.
struct MLP<Parameter: Sendable>: Sendable {
    let fc1: Linear<Parameter>
    let fc2: Linear<Parameter>

    init(_ config: TransformerConfig, _ source: inout some ParameterSource<Parameter>, _ name: String) {
        fc1 = Linear(&source, name + ".fc1", in: config.dim, out: config.mlpHidden)
        fc2 = Linear(&source, name + ".fc2", in: config.mlpHidden, out: config.dim)
    }
}

extension MLP<Tensor> {
    /// residual + fc2(GELU(fc1(x))), the GELU and the add done by the Linear layers' passes over their outputs.
    func callAsFunction(_ x: Tensor, adding residual: Tensor) -> Tensor {
        fc2(fc1(x, activation: .gelu), adding: residual)
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
    public func makeCache(sequences: Int) -> KVCache {
        precondition(config.causal, "only a causal Transformer decodes incrementally; '\(config.role.rawValue)' is not causal")
        return KVCache(sequences: sequences, config: config)
    }

    /// Feeds one token per sequence at position `cache.length` and returns that position's logits
    /// [sequences, outputWidth] — equal to the full causal pass's logits at that position.
    public func step(_ tokens: [Int], cache: inout KVCache) -> Tensor {
        precondition(cache.dim == config.dim && cache.capacity == config.nPositions && cache.keys.count == config.depth,
                     "step: the cache was made by another model")
        precondition(tokens.count == cache.sequences && cache.length < cache.capacity,
                     "step: \(tokens.count) tokens for a cache of \(cache.sequences) sequences at position \(cache.length) of \(cache.capacity)")
        var x = weights.tokenEmbedding(tokens) + positions(cache.length ..< cache.length + 1)
        for (index, block) in weights.blocks.enumerated() { x = block.step(x, block: index, cache: &cache) }
        cache.advance()
        return head(x)
    }
}

extension Tensor {
    /// Rows `rows` of one sequence x [1, N, width] (or a matrix [N, width]) as [1, rows.count, width].
    func rows(_ rows: [Int]) -> Tensor {
        let width = shape[rank - 1]
        return embedding(rows, weight: reshaped([count / max(width, 1), width])).reshaped([1, rows.count, width])
    }
}
