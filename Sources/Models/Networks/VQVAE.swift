import Kernels

// The Taming Transformers VQ-VAE, or its local variant (patch encoder, l2-normalised codes;
// docs/checkpoint-format.md §5), at inference:
//
//   let vqvae = try VQVAE(checkpoint.components[.vqvae])
//   let z = try vqvae.encode(x)                 // x [B, C, H, W] → z [B, D, h, w] (encoder, quant_conv)
//   let tokens = try vqvae.tokenize(x)          // [B][h·w] nearest codebook rows, row-major
//   let images = try vqvae.decode(tokens)       // codebook rows → post_quant_conv → decoder → [B, C, H, W]
//
// Every layer reads its weights by state_dict name, e.g. "encoder.down.2.block.0.conv1.weight".

public struct VQVAE: Sendable {
    public let config: VQVAEConfig
    private let weights: LoadedComponent

    public init(_ component: LoadedComponent) throws {
        guard case .vqvae(let config) = component.architecture else {
            throw InferenceError("component '\(component.component.rawValue)' is not a VQ-VAE")
        }
        self.config = config
        self.weights = component
    }

    private var levels: Int { config.chMult.count }

    /// x [B, C, H, W] → z [B, D, h, w]: the encoder followed by quant_conv.
    public func encode(_ x: Tensor) throws -> Tensor {
        guard x.rank == 4, x.shape[1] == config.inChannels, x.shape[2] == config.resolution, x.shape[3] == config.resolution else {
            throw InferenceError("the VQ-VAE takes images [B, \(config.inChannels), \(config.resolution), \(config.resolution)], got \(x.shape)")
        }
        var h: Tensor
        switch config.encoder {
        case .taming:
            h = try conv("encoder.conv_in", x)
            for level in 0..<levels {
                for block in 0..<config.numResBlocks {
                    h = try resnetBlock("encoder.down.\(level).block.\(block)", h)
                    if config.hasAttention(level: level) { h = try attnBlock("encoder.down.\(level).attn.\(block)", h) }
                }
                if level != levels - 1 { h = try downsample("encoder.down.\(level).downsample", h) }
            }
            h = try resnetBlock("encoder.mid.block_1", h)
            h = try attnBlock("encoder.mid.attn_1", h)
            h = try resnetBlock("encoder.mid.block_2", h)
            h = try conv("encoder.conv_out", silu(normalize("encoder.norm_out", h)))
        case .patch:
            h = try patchEncoder(x)
        }
        return try conv("quant_conv", h)
    }

    /// Each f×f patch embedded alone, one 3×3 convolution of context, then per-token MLP blocks
    /// x + fc2(SiLU(fc1(LayerNorm(x)))) and proj_out(SiLU(LayerNorm(x))): [B, C, H, W] → [B, z, h, w].
    private func patchEncoder(_ x: Tensor) throws -> Tensor {
        let f = config.downsamplingFactor
        var h = try conv2d(x, weight: weights["encoder.conv_in.weight"], bias: weights["encoder.conv_in.bias"], stride: f)
        h = try conv("encoder.conv_context", silu(h))
        let (batch, channels, grid) = (h.shape[0], h.shape[1], h.shape[2])
        var tokens = try permute(h, [0, 2, 3, 1]).reshaped([batch, grid * grid, channels])
        func tokenNorm(_ prefix: String, _ x: Tensor) throws -> Tensor {
            try layerNorm(x, weight: weights[prefix + ".weight"], bias: weights[prefix + ".bias"], eps: Self.layerNormEpsilon)
        }
        func dense(_ prefix: String, _ x: Tensor) throws -> Tensor {
            try linear(x, weight: weights[prefix + ".weight"], bias: weights[prefix + ".bias"])
        }
        for block in 0..<config.patchEncoderBlocks {
            let prefix = "encoder.block.\(block)"
            tokens = try add(tokens, dense(prefix + ".fc2", silu(dense(prefix + ".fc1", tokenNorm(prefix + ".norm", tokens)))))
        }
        tokens = try dense("encoder.proj_out", silu(tokenNorm("encoder.norm_out", tokens)))
        return try permute(tokens.reshaped([batch, grid, grid, config.zChannels]), [0, 3, 1, 2])
    }

    /// Token grid of each image, flattened row-major: index of the nearest codebook row to z at each
    /// position (squared Euclidean distance between the l2-normalised vectors when `l2Codes`, ties to
    /// the lowest index).
    public func tokenize(_ x: Tensor) throws -> [[Int]] {
        var z = try encode(x)
        if config.l2Codes { z = try l2Normalize(z, axis: 1, eps: Self.l2Epsilon) }
        let codes = try nearestCodes(z, codebook: codebook())
        let positions = config.grid * config.grid
        return (0..<x.shape[0]).map { Array(codes[$0 * positions ..< ($0 + 1) * positions]) }
    }

    /// Token grids (row-major, h·w ids each) → images [B, C, H, W]:
    /// z_q[:, y, x] = codebook[token], then post_quant_conv and the decoder.
    public func decode(_ tokens: [[Int]]) throws -> Tensor {
        let (grid, depth) = (config.grid, config.embedDim)
        if let bad = tokens.firstIndex(where: { $0.count != grid * grid }) {
            throw InferenceError("token grid \(bad) has \(tokens[bad].count) tokens, the VQ-VAE decodes \(grid)×\(grid)")
        }
        let rows = try embedding(tokens.flatMap { $0 }, weight: codebook())   // [B·h·w, D]
        let zq = try permute(rows.reshaped([tokens.count, grid, grid, depth]), [0, 3, 1, 2])
        var h = try conv("post_quant_conv", zq)
        h = try conv("decoder.conv_in", h)
        h = try resnetBlock("decoder.mid.block_1", h)
        h = try attnBlock("decoder.mid.attn_1", h)
        h = try resnetBlock("decoder.mid.block_2", h)
        for level in stride(from: levels - 1, through: 0, by: -1) {   // lowest resolution first
            for block in 0...config.numResBlocks {
                h = try resnetBlock("decoder.up.\(level).block.\(block)", h)
                if config.hasAttention(level: level) { h = try attnBlock("decoder.up.\(level).attn.\(block)", h) }
            }
            if level != 0 { h = try upsample("decoder.up.\(level).upsample", h) }
        }
        return try conv("decoder.conv_out", silu(normalize("decoder.norm_out", h)))
    }

    /// The codes as the look-up and the decoder read them: [K, D], l2-normalised rows when `l2Codes`.
    func codebook() throws -> Tensor {
        let codes = weights["quantize.embedding.weight"]
        return config.l2Codes ? try l2Normalize(codes, axis: 1, eps: Self.l2Epsilon) : codes
    }

    /// F.normalize's ε, and nn.LayerNorm's (the patch encoder's), in models/vqvae.py.
    static let l2Epsilon: Float = 1e-6
    static let layerNormEpsilon: Float = 1e-5

    // MARK: - Layers

    /// Conv2d `P.weight`, `P.bias`; 3×3 kernels pad by 1, 1×1 kernels not at all.
    func conv(_ prefix: String, _ x: Tensor, stride: Int = 1) throws -> Tensor {
        let weight = weights[prefix + ".weight"]
        return try conv2d(x, weight: weight, bias: weights[prefix + ".bias"], stride: stride,
                          padding: Padding(integerLiteral: weight.shape[2] / 2))
    }

    /// GroupNorm with 32 groups, ε = 1e-6.
    func normalize(_ prefix: String, _ x: Tensor) throws -> Tensor {
        try groupNorm(x, groups: VQVAEConfig.groups, weight: weights[prefix + ".weight"], bias: weights[prefix + ".bias"], eps: 1e-6)
    }

    /// h = conv1(SiLU(norm1(x))), h = conv2(SiLU(norm2(h))); x (or nin_shortcut(x)) + h.
    func resnetBlock(_ prefix: String, _ x: Tensor) throws -> Tensor {
        var h = try conv(prefix + ".conv1", silu(normalize(prefix + ".norm1", x)))
        h = try conv(prefix + ".conv2", silu(normalize(prefix + ".norm2", h)))
        let skip = weights.tensors[prefix + ".nin_shortcut.weight"] == nil ? x : try conv(prefix + ".nin_shortcut", x)
        return try add(skip, h)
    }

    /// Single-head attention over the H·W positions: x + proj_out(softmax(q·kᵀ/√C)·v), q, k, v 1×1 convs of norm(x).
    func attnBlock(_ prefix: String, _ x: Tensor) throws -> Tensor {
        let n = try normalize(prefix + ".norm", x)
        let out = try spatialAttention(q: conv(prefix + ".q", n), k: conv(prefix + ".k", n), v: conv(prefix + ".v", n))
        return try add(x, conv(prefix + ".proj_out", out))
    }

    /// Zero-pad one column right and one row below, then a 3×3 conv with stride 2 and no other padding.
    func downsample(_ prefix: String, _ x: Tensor) throws -> Tensor {
        try conv2d(x, weight: weights[prefix + ".conv.weight"], bias: weights[prefix + ".conv.bias"], stride: 2,
                   padding: Padding(top: 0, left: 0, bottom: 1, right: 1))
    }

    /// Nearest-neighbour ×2, then a 3×3 conv.
    func upsample(_ prefix: String, _ x: Tensor) throws -> Tensor {
        try conv(prefix + ".conv", upsampleNearest2x(x))
    }
}
