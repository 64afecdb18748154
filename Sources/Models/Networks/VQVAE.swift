import Kernels

// The Taming Transformers VQ-VAE, or its local variant (patch encoder, l2-normalised codes;
// docs/checkpoint-format.md §5), at inference:
//
//   let vqvae = VQVAE(checkpoint.components[.vqvae]!)
//   let z = vqvae.encode(x)                 // x [B, C, H, W] → z [B, D, h, w] (encoder, quant_conv)
//   let tokens = vqvae.tokenize(x)          // [B][h·w] nearest codebook rows, row-major
//   let images = vqvae.decode(tokens)       // codebook rows → post_quant_conv → decoder → [B, C, H, W]
//
// The layers mirror models/vqvae.py; their initialisers are the one walk of its state_dict.

public struct VQVAE: Sendable {
    public let config: VQVAEConfig
    let weights: VQVAEWeights<Tensor>
    /// The codes as the look-up and the decoder read them: [K, D], l2-normalised rows when `l2Codes`.
    let codebook: Tensor

    /// The VQ-VAE of a loaded `vqvae` component.
    public init(_ component: LoadedComponent) {
        guard case .vqvae(let config) = component.architecture else {
            preconditionFailure("component '\(component.component.rawValue)' is not a VQ-VAE")
        }
        var binding = ParameterBinding(component: component)
        self.config = config
        weights = VQVAEWeights(config, &binding)
        let codes = weights.quantize.embedding.weight
        codebook = config.l2Codes ? l2Normalize(codes, axis: 1, eps: Self.l2Epsilon) : codes
    }

    /// F.normalize's ε in models/vqvae.py.
    static let l2Epsilon: Float = 1e-6

    /// x [B, C, H, W] → z [B, D, h, w]: the encoder followed by quant_conv.
    public func encode(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && Array(x.shape.dropFirst()) == [config.inChannels, config.resolution, config.resolution],
                     "the VQ-VAE takes images [B, \(config.inChannels), \(config.resolution), \(config.resolution)], got \(x.shape)")
        let h = switch weights.encoder {
        case .taming(let encoder): encoder(x)
        case .patch(let encoder): encoder(x)
        }
        return weights.quantConv(h)
    }

    /// Token grid of each image, flattened row-major: index of the nearest codebook row to z at each
    /// position (squared Euclidean distance between the l2-normalised vectors when `l2Codes`, ties to
    /// the lowest index).
    public func tokenize(_ x: Tensor) -> [[Int]] {
        var z = encode(x)
        if config.l2Codes { z = l2Normalize(z, axis: 1, eps: Self.l2Epsilon) }
        let codes = nearestCodes(z, codebook: codebook)
        let positions = config.grid * config.grid
        return (0..<x.shape[0]).map { Array(codes[$0 * positions ..< ($0 + 1) * positions]) }
    }

    /// Token grids (row-major, h·w ids each) → images [B, C, H, W]:
    /// z_q[:, y, x] = codebook[token], then post_quant_conv and the decoder.
    public func decode(_ tokens: [[Int]]) -> Tensor {
        let (grid, depth) = (config.grid, config.embedDim)
        precondition(tokens.allSatisfy { $0.count == grid * grid }, "the VQ-VAE decodes \(grid)×\(grid) token grids")
        let rows = embedding(tokens.flatMap { $0 }, weight: codebook)   // [B·h·w, D]
        let zq = permute(rows.reshaped([tokens.count, grid, grid, depth]), [0, 3, 1, 2])
        return weights.decoder(weights.postQuantConv(zq))
    }
}

// MARK: - The network's layers

/// Every parameter of the VQ-VAE, declared in state_dict order (models/vqvae.py's registration order).
struct VQVAEWeights<Parameter: Sendable>: Sendable {
    let encoder: VQVAEEncoderWeights<Parameter>
    let decoder: VQVAEDecoder<Parameter>
    let quantConv: Conv2d<Parameter>
    let postQuantConv: Conv2d<Parameter>
    let quantize: VectorQuantizer<Parameter>

    init(_ config: VQVAEConfig, _ source: inout some ParameterSource<Parameter>) {
        encoder = switch config.encoder {
        case .taming: .taming(TamingEncoder(config, &source))
        case .patch: .patch(PatchEncoder(config, &source))
        }
        decoder = VQVAEDecoder(config, &source)
        quantConv = Conv2d(&source, "quant_conv", in: config.zChannels, out: config.embedDim, kernel: 1)
        postQuantConv = Conv2d(&source, "post_quant_conv", in: config.embedDim, out: config.zChannels, kernel: 1)
        quantize = VectorQuantizer(&source, "quantize", codes: config.nEmbed, dim: config.embedDim)
    }
}

/// `encoder`, one of the two kinds `VQVAEConfig.encoder` names.
enum VQVAEEncoderWeights<Parameter: Sendable>: Sendable {
    case taming(TamingEncoder<Parameter>)
    case patch(PatchEncoder<Parameter>)
}

/// `quantize`: the codebook, row k the vector of code k.
struct VectorQuantizer<Parameter: Sendable>: Sendable {
    let embedding: Embedding<Parameter>

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, codes: Int, dim: Int) {
        embedding = Embedding(&source, name + ".embedding", count: codes, dim: dim)
    }
}

/// h = conv1(SiLU(norm1(x))), h = conv2(SiLU(norm2(h))); x + h, through the 1×1 `nin_shortcut` when the
/// channel count changes.
struct ResnetBlock<Parameter: Sendable>: Sendable {
    let norm1: GroupNorm<Parameter>
    let conv1: Conv2d<Parameter>
    let norm2: GroupNorm<Parameter>
    let conv2: Conv2d<Parameter>
    let ninShortcut: Conv2d<Parameter>?

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, in inputs: Int, out outputs: Int) {
        norm1 = GroupNorm(&source, name + ".norm1", channels: inputs)
        conv1 = Conv2d(&source, name + ".conv1", in: inputs, out: outputs, kernel: 3)
        norm2 = GroupNorm(&source, name + ".norm2", channels: outputs)
        conv2 = Conv2d(&source, name + ".conv2", in: outputs, out: outputs, kernel: 3)
        ninShortcut = inputs == outputs ? nil : Conv2d(&source, name + ".nin_shortcut", in: inputs, out: outputs, kernel: 1)
    }
}

extension ResnetBlock<Tensor> {
    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = conv2(norm2(conv1(norm1(x, activation: .silu)), activation: .silu))
        return (ninShortcut?(x) ?? x) + h
    }
}

/// Single-head attention over the H·W positions: x + proj_out(softmax(q·kᵀ/√C)·v), q, k, v 1×1 convs of norm(x).
struct AttnBlock<Parameter: Sendable>: Sendable {
    let norm: GroupNorm<Parameter>
    let q: Conv2d<Parameter>
    let k: Conv2d<Parameter>
    let v: Conv2d<Parameter>
    let projOut: Conv2d<Parameter>

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, channels: Int) {
        norm = GroupNorm(&source, name + ".norm", channels: channels)
        q = Conv2d(&source, name + ".q", in: channels, out: channels, kernel: 1)
        k = Conv2d(&source, name + ".k", in: channels, out: channels, kernel: 1)
        v = Conv2d(&source, name + ".v", in: channels, out: channels, kernel: 1)
        projOut = Conv2d(&source, name + ".proj_out", in: channels, out: channels, kernel: 1)
    }
}

extension AttnBlock<Tensor> {
    func callAsFunction(_ x: Tensor) -> Tensor {
        let n = norm(x)
        return x + projOut(spatialAttention(q: q(n), k: k(n), v: v(n)))
    }
}

/// The ResNet blocks of one resolution level (`{name}.block.{b}`), each followed by its attention block
/// (`{name}.attn.{b}`) at the resolutions listed in attn_resolutions.
struct ResnetStage<Parameter: Sendable>: Sendable {
    let blocks: [ResnetBlock<Parameter>]
    /// One per block, or none.
    let attentions: [AttnBlock<Parameter>]

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, in inputs: Int, out outputs: Int,
         blocks count: Int, attention: Bool) {
        blocks = (0..<count).map { ResnetBlock(&source, "\(name).block.\($0)", in: $0 == 0 ? inputs : outputs, out: outputs) }
        attentions = attention ? (0..<count).map { AttnBlock(&source, "\(name).attn.\($0)", channels: outputs) } : []
    }
}

extension ResnetStage<Tensor> {
    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        for (index, block) in blocks.enumerated() {
            h = block(h)
            if !attentions.isEmpty { h = attentions[index](h) }
        }
        return h
    }
}

/// `mid`: block_1, attn_1, block_2 at the lowest resolution.
struct MidBlock<Parameter: Sendable>: Sendable {
    let block1: ResnetBlock<Parameter>
    let attention: AttnBlock<Parameter>
    let block2: ResnetBlock<Parameter>

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, channels: Int) {
        block1 = ResnetBlock(&source, name + ".block_1", in: channels, out: channels)
        attention = AttnBlock(&source, name + ".attn_1", channels: channels)
        block2 = ResnetBlock(&source, name + ".block_2", in: channels, out: channels)
    }
}

extension MidBlock<Tensor> {
    func callAsFunction(_ x: Tensor) -> Tensor { block2(attention(block1(x))) }
}

/// `encoder.down.{l}`: a stage, then the halving to the next level (none after the last).
struct DownLevel<Parameter: Sendable>: Sendable {
    let stage: ResnetStage<Parameter>
    /// `downsample.conv`: zero-pad one column right and one row below, then 3×3 with stride 2 and no other padding.
    let downsample: Conv2d<Parameter>?
}

/// `decoder.up.{l}`: a stage, then the doubling to the level above (none at level 0).
struct UpLevel<Parameter: Sendable>: Sendable {
    let stage: ResnetStage<Parameter>
    /// `upsample.conv`, a 3×3 conv after nearest-neighbour ×2.
    let upsample: Conv2d<Parameter>?
}

/// Taming's encoder: conv_in; per level a stage and a downsample; mid; conv_out(SiLU(norm_out(h))).
struct TamingEncoder<Parameter: Sendable>: Sendable {
    let convIn: Conv2d<Parameter>
    let down: [DownLevel<Parameter>]
    let mid: MidBlock<Parameter>
    let normOut: GroupNorm<Parameter>
    let convOut: Conv2d<Parameter>

    init(_ config: VQVAEConfig, _ source: inout some ParameterSource<Parameter>) {
        let levels = config.chMult.count
        convIn = Conv2d(&source, "encoder.conv_in", in: config.inChannels, out: config.ch, kernel: 3)
        var channels = config.ch
        down = (0..<levels).map { level in
            let name = "encoder.down.\(level)"
            let stage = ResnetStage(&source, name, in: channels, out: config.channels(level: level),
                                    blocks: config.numResBlocks, attention: config.hasAttention(level: level))
            if config.numResBlocks > 0 { channels = config.channels(level: level) }
            let downsample = level == levels - 1 ? nil : Conv2d(&source, name + ".downsample.conv", in: channels, out: channels, kernel: 3,
                                                                stride: 2, padding: Padding(top: 0, left: 0, bottom: 1, right: 1))
            return DownLevel(stage: stage, downsample: downsample)
        }
        mid = MidBlock(&source, "encoder.mid", channels: channels)
        normOut = GroupNorm(&source, "encoder.norm_out", channels: channels)
        convOut = Conv2d(&source, "encoder.conv_out", in: channels, out: config.zChannels, kernel: 3)
    }
}

extension TamingEncoder<Tensor> {
    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = convIn(x)
        for level in down {
            h = level.stage(h)
            if let downsample = level.downsample { h = downsample(h) }
        }
        return convOut(normOut(mid(h), activation: .silu))
    }
}

/// A per-token MLP block of the patch encoder: x + fc2(SiLU(fc1(LayerNorm(x)))) on each token's channels.
struct TokenBlock<Parameter: Sendable>: Sendable {
    let norm: LayerNorm<Parameter>
    let fc1: Linear<Parameter>
    let fc2: Linear<Parameter>

    init(_ source: inout some ParameterSource<Parameter>, _ name: String, channels: Int) {
        norm = LayerNorm(&source, name + ".norm", dim: channels, eps: PatchEncoder<Parameter>.layerNormEpsilon)
        fc1 = Linear(&source, name + ".fc1", in: channels, out: channels)
        fc2 = Linear(&source, name + ".fc2", in: channels, out: channels)
    }
}

extension TokenBlock<Tensor> {
    func callAsFunction(_ x: Tensor) -> Tensor { x + fc2(silu(fc1(norm(x)))) }
}

/// The local encoder: each f×f patch embedded alone (conv_in, kernel and stride f), one 3×3 convolution
/// of context, then per-token blocks and proj_out(SiLU(norm_out(x))): [B, C, H, W] → [B, z, h, w].
struct PatchEncoder<Parameter: Sendable>: Sendable {
    let convIn: Conv2d<Parameter>
    let convContext: Conv2d<Parameter>
    let blocks: [TokenBlock<Parameter>]
    let normOut: LayerNorm<Parameter>
    let projOut: Linear<Parameter>

    /// nn.LayerNorm's default ε, which the patch encoder keeps.
    static var layerNormEpsilon: Float { 1e-5 }

    init(_ config: VQVAEConfig, _ source: inout some ParameterSource<Parameter>) {
        let (width, f) = (config.patchEncoderChannels, config.downsamplingFactor)
        convIn = Conv2d(&source, "encoder.conv_in", in: config.inChannels, out: width, kernel: f, stride: f, padding: 0)
        convContext = Conv2d(&source, "encoder.conv_context", in: width, out: width, kernel: 3)
        blocks = (0..<config.patchEncoderBlocks).map { TokenBlock(&source, "encoder.block.\($0)", channels: width) }
        normOut = LayerNorm(&source, "encoder.norm_out", dim: width, eps: Self.layerNormEpsilon)
        projOut = Linear(&source, "encoder.proj_out", in: width, out: config.zChannels)
    }
}

extension PatchEncoder<Tensor> {
    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = convContext(silu(convIn(x)))
        let (batch, channels, grid) = (h.shape[0], h.shape[1], h.shape[2])
        var tokens = permute(h, [0, 2, 3, 1]).reshaped([batch, grid * grid, channels])
        for block in blocks { tokens = block(tokens) }
        tokens = projOut(silu(normOut(tokens)))
        return permute(tokens.reshaped([batch, grid, grid, tokens.shape[2]]), [0, 3, 1, 2])
    }
}

/// The decoder: conv_in; mid; the levels from the lowest resolution up, each a stage then an upsample;
/// conv_out(SiLU(norm_out(h))).
struct VQVAEDecoder<Parameter: Sendable>: Sendable {
    let convIn: Conv2d<Parameter>
    let mid: MidBlock<Parameter>
    /// By level: up[0] is the full resolution, run last.
    let up: [UpLevel<Parameter>]
    let normOut: GroupNorm<Parameter>
    let convOut: Conv2d<Parameter>

    init(_ config: VQVAEConfig, _ source: inout some ParameterSource<Parameter>) {
        let levels = config.chMult.count
        let top = config.channels(level: levels - 1)
        convIn = Conv2d(&source, "decoder.conv_in", in: config.zChannels, out: top, kernel: 3)
        mid = MidBlock(&source, "decoder.mid", channels: top)
        // state_dict lists up.0 … up.{L−1}, but each level's input comes from the level above it (or the mid).
        up = (0..<levels).map { level in
            let name = "decoder.up.\(level)"
            let channels = config.channels(level: level)
            let stage = ResnetStage(&source, name, in: config.channels(level: min(level + 1, levels - 1)), out: channels,
                                    blocks: config.numResBlocks + 1, attention: config.hasAttention(level: level))
            let upsample = level == 0 ? nil : Conv2d(&source, name + ".upsample.conv", in: channels, out: channels, kernel: 3)
            return UpLevel(stage: stage, upsample: upsample)
        }
        normOut = GroupNorm(&source, "decoder.norm_out", channels: config.channels(level: 0))
        convOut = Conv2d(&source, "decoder.conv_out", in: config.channels(level: 0), out: config.inChannels, kernel: 3)
    }
}

extension VQVAEDecoder<Tensor> {
    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = mid(convIn(z))
        for level in up.reversed() {
            h = level.stage(h)
            if let upsample = level.upsample { h = upsample(upsampleNearest2x(h)) }
        }
        return convOut(normOut(h, activation: .silu))
    }
}
