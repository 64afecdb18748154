// Scaled dot-product attention, softmax(q·kᵀ·scale)·v, for the two layouts the models produce.
//
//   attention(qkv, heads: h, causal: false) -> Tensor   // qkv [B, N, 3·dim] → [B, N, dim]
//   attention(qkv, heads: h, queries: rows) -> Tensor   // only those query rows → [B, rows.count, dim]
//   spatialAttention(q: q, k: k, v: v) -> Tensor        // q, k, v [B, C, H, W] → [B, C, H, W]
//   cachedAttention(qkv, keys: k, values: v, length: t, heads: h) -> Tensor
//                                                       // one decoding step: qkv [S, 3·dim], k, v [S, capacity, dim] → [S, dim]
//
// The first two run the fused kernel of CKernels (`ck_attention`) on each (item, head) pair, in
// parallel: it reads q, k and v where they lie and never stores more than a few rows of scores. The
// decoding step, one query row, is a GEMM for its scores, a softmax and a GEMM for the weighted values.
import CKernels

/// The multi-head core of a Transformer block, on the output of its qkv Linear as PyTorch lays it out:
/// features q | k | v of `dim` each, head h at features h·hd ..< (h+1)·hd (hd = dim / heads) within each.
/// Scores are scaled by 1/√hd; `causal` lets token i see tokens 0...i only. The result puts head h at
/// features h·hd ..< (h+1)·hd, ready for the output projection. With `queries` (ascending token indices),
/// only those rows are computed, against the keys and values of every token: [B, queries.count, dim],
/// equal to those rows of the whole result.
public func attention(_ qkv: Tensor, heads: Int, causal: Bool = false, queries: [Int]? = nil) -> Tensor {
    precondition(qkv.rank == 3 && qkv.shape[2] % 3 == 0, "attention: qkv must be [B, N, 3·dim], got \(qkv.shape)")
    let (batch, tokens, dim) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    precondition(heads >= 1 && dim % heads == 0, "attention: \(dim) features do not split into \(heads) heads")
    if let queries {
        precondition(zip(queries, queries.dropFirst()).allSatisfy { $0 < $1 } && queries.allSatisfy { (0..<tokens).contains($0) },
                     "attention: queries must be ascending token indices below \(tokens)")
    }
    let headDim = dim / heads
    let rows = queries?.count ?? tokens
    return Tensor(shape: [batch, rows, dim]) { out in
        guard out.count > 0 else { return }
        qkv.scalars.withUnsafeBufferPointer { qkv in
            withOptionalPointer(queries) { queryTokens in
                attendInParallel(problems: batch * heads, tokens: tokens, depth: headDim) { pair in
                    let (item, head) = (pair / heads, pair % heads)
                    let q = qkv.baseAddress! + item * tokens * 3 * dim + head * headDim
                    return ck_attention_problem(
                        tokens: tokens, depth: headDim, scale: 1 / Float(headDim).squareRoot(), causal: causal ? 1 : 0,
                        q: q, k: q + dim, v: q + 2 * dim, token_stride: 3 * dim, feature_stride: 1,
                        out: out.baseAddress! + item * rows * dim + head * headDim, out_token_stride: dim, out_feature_stride: 1,
                        queries: rows, query_tokens: queryTokens)
                }
            }
        }
    }
}

/// The VQ-VAE's single-head AttnBlock core: every pixel attends to every pixel of its image, with
/// q, k, v the outputs of its 1×1 convolutions (C features per pixel) and scores scaled by 1/√C.
public func spatialAttention(q: Tensor, k: Tensor, v: Tensor) -> Tensor {
    precondition(q.rank == 4 && k.shape == q.shape && v.shape == q.shape,
                "spatialAttention: q, k, v must be [B, C, H, W] of one shape, got \(q.shape), \(k.shape), \(v.shape)")
    let (batch, channels, pixels) = (q.shape[0], q.shape[1], q.shape[2] * q.shape[3])
    return Tensor(shape: q.shape) { out in
        guard out.count > 0 else { return }
        q.scalars.withUnsafeBufferPointer { q in
            k.scalars.withUnsafeBufferPointer { k in
                v.scalars.withUnsafeBufferPointer { v in
                    // Feature f of pixel t at f·pixels + t.
                    attendInParallel(problems: batch, tokens: pixels, depth: channels) { item in
                        let offset = item * channels * pixels
                        return ck_attention_problem(
                            tokens: pixels, depth: channels, scale: 1 / Float(channels).squareRoot(), causal: 0,
                            q: q.baseAddress! + offset, k: k.baseAddress! + offset, v: v.baseAddress! + offset,
                            token_stride: 1, feature_stride: pixels,
                            out: out.baseAddress! + offset, out_token_stride: 1, out_feature_stride: pixels,
                            queries: pixels, query_tokens: nil)
                    }
                }
            }
        }
    }
}

/// One step of causal decoding with a key/value cache: the new token of each of S sequences attends to
/// positions 0..<length of its cached keys and values (its own included, once the caller has stored
/// them). qkv [S, 3·dim] holds the new tokens' qkv Linear outputs (only the q part is read);
/// keys and values [S, capacity, dim] hold position t of sequence s at features (s·capacity + t)·dim.
/// Same heads and scale as `attention`; the result [S, dim] equals row `length − 1` of
/// `attention(…, causal: true)` over the whole prefix.
public func cachedAttention(_ qkv: Tensor, keys: Tensor, values: Tensor, length: Int, heads: Int) -> Tensor {
    precondition(keys.rank == 3 && values.shape == keys.shape,
                "cachedAttention: keys and values must be [S, capacity, dim] of one shape, got \(keys.shape) and \(values.shape)")
    let (sequences, capacity, dim) = (keys.shape[0], keys.shape[1], keys.shape[2])
    precondition(qkv.shape == [sequences, 3 * dim], "cachedAttention: qkv must be [\(sequences), \(3 * dim)], got \(qkv.shape)")
    precondition(length >= 1 && length <= capacity, "cachedAttention: length \(length) outside 1...\(capacity)")
    precondition(heads >= 1 && dim % heads == 0, "cachedAttention: \(dim) features do not split into \(heads) heads")
    let headDim = dim / heads
    let scale = 1 / Float(headDim).squareRoot()
    return Tensor(shape: [sequences, dim]) { out in
        guard out.count > 0 else { return }
        qkv.scalars.withUnsafeBufferPointer { qkv in
            keys.scalars.withUnsafeBufferPointer { keys in
                values.scalars.withUnsafeBufferPointer { values in
                    parallelRanges(sequences * heads) { pairs in
                        let scores = UnsafeMutablePointer<Float>.allocate(capacity: length)
                        defer { scores.deallocate() }
                        for pair in pairs {
                            let (sequence, head) = (pair / heads, pair % heads)
                            let cached = sequence * capacity * dim + head * headDim
                            // scores [1, length] = q·kᵀ·scale, then softmax, then out [1, headDim] = scores·v.
                            gemm(transposeB: true, m: 1, n: length, k: headDim, alpha: scale,
                                 a: qkv.baseAddress! + sequence * 3 * dim + head * headDim, lda: headDim,
                                 b: keys.baseAddress! + cached, ldb: dim, c: scores, ldc: length)
                            ck_softmax_row(scores, length, scores)
                            gemm(m: 1, n: headDim, k: length, a: scores, lda: length, b: values.baseAddress! + cached,
                                 ldb: dim, c: out.baseAddress! + sequence * dim + head * headDim, ldc: headDim)
                        }
                    }
                }
            }
        }
    }
}

/// Runs `ck_attention` on problems 0..<problems in parallel, each core with its own scratch memory.
private func attendInParallel(problems: Int, tokens: Int, depth: Int, _ problem: (Int) -> ck_attention_problem) {
    parallelRanges(problems) { range in
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: ck_attention_scratch_count(tokens, depth))
        defer { scratch.deallocate() }
        for index in range {
            var problem = problem(index)
            ck_attention(&problem, scratch)
        }
    }
}
