// Token-wise layers of the Transformers, with PyTorch's weight layouts.
//
//   linear(x, weight: w, bias: b) -> Tensor      // x [..., in], w [out, in], b [out] → x·wᵀ + b  [..., out]
//   embedding(ids, weight: table) -> Tensor       // ids in 0..<V, table [V, dim] → [ids.count, dim]

/// `y = x·Wᵀ + b` over the last dimension, as torch.nn.Linear: weight [out, in], bias [out] or nil.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    precondition(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
    let (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
    precondition(x.rank >= 1 && x.shape[x.rank - 1] == inFeatures,
                "linear: input \(x.shape) does not end in the weight's \(inFeatures) input features")
    if let bias {
        precondition(bias.shape == [outFeatures], "linear: bias must be [\(outFeatures)], got \(bias.shape)")
    }
    let rows = x.count / max(inFeatures, 1)
    var outShape = x.shape
    outShape[x.rank - 1] = outFeatures
    return Tensor(shape: outShape) { y in
        // y starts as the bias in every row, and GEMM accumulates x·Wᵀ onto it (beta = 1).
        for row in 0..<rows {
            let line = UnsafeMutableBufferPointer(rebasing: y[row * outFeatures ..< (row + 1) * outFeatures])
            if let bias { _ = line.update(fromContentsOf: bias.scalars) } else { line.update(repeating: 0) }
        }
        guard rows > 0, outFeatures > 0, inFeatures > 0 else { return }
        x.scalars.withUnsafeBufferPointer { x in
            weight.scalars.withUnsafeBufferPointer { w in
                parallelGemm(transposeB: true, m: rows, n: outFeatures, k: inFeatures,
                             a: x.baseAddress!, lda: inFeatures, b: w.baseAddress!, ldb: inFeatures,
                             beta: 1, c: y.baseAddress!, ldc: outFeatures)
            }
        }
    }
}

/// Rows of `weight` [V, dim] picked by `ids`, as torch.nn.Embedding: [ids.count, dim].
public func embedding(_ ids: [Int], weight: Tensor) -> Tensor {
    precondition(weight.rank == 2, "embedding: weight must be [V, dim], got \(weight.shape)")
    let (vocabulary, dim) = (weight.shape[0], weight.shape[1])
    for id in ids { precondition((0..<vocabulary).contains(id), "embedding: id \(id) is outside the table's 0..<\(vocabulary)") }
    return Tensor(shape: [ids.count, dim]) { out in
        weight.scalars.withUnsafeBufferPointer { table in
            for (row, id) in ids.enumerated() {
                _ = UnsafeMutableBufferPointer(rebasing: out[row * dim ..< (row + 1) * dim])
                    .update(fromContentsOf: table[id * dim ..< (id + 1) * dim])
            }
        }
    }
}
