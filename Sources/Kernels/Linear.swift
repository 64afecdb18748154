// Token-wise layers of the Transformers, with PyTorch's weight layouts.
//
//   LinearWeight(w)                               // w [out, in], in the form the product reads, made once
//   linear(x, weight: w, bias: b) -> Tensor      // x [..., in], b [out] → x·wᵀ + b  [..., out]
//   linear(x, weight: w, bias: b, activation: .gelu, adding: r) -> Tensor   // GELU(x·wᵀ + b) + r
//   embedding(ids, weight: table) -> Tensor       // ids in 0..<V, table [V, dim] → [ids.count, dim]
import CKernels

/// A Linear layer's weight [out, in] (PyTorch's layout) in the one form the selected kernels read, made
/// once, when a model is loaded: with AVX-512 the panels `ck_linear_rows` reads (instead of BLAS packing
/// its operand on every product), otherwise the weight as given, which OpenBLAS reads. Not both: the
/// model's Transformer weights would be resident twice.
public struct LinearWeight: Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    /// Whether `elements` are panels (made while a copy of the kernels with `ck_linear_rows` was selected).
    let isPacked: Bool
    let elements: [Float]

    public init(_ weight: Tensor) {
        precondition(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
        let (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
        (self.outFeatures, self.inFeatures) = (outFeatures, inFeatures)
        isPacked = ck_has_packed_linear() != 0
        guard isPacked else {
            elements = weight.scalars
            return
        }
        elements = weight.scalars.withUnsafeBufferPointer { w in
            let count = ck_linear_packed_count(outFeatures, inFeatures)
            return [Float](unsafeUninitializedCapacity: count) { packed, initialized in
                if count > 0 { ck_pack_linear(w.baseAddress!, outFeatures, inFeatures, packed.baseAddress!) }
                initialized = count
            }
        }
    }
}

/// `y = activation(x·Wᵀ + b) + residual` over the last dimension, as torch.nn.Linear (then the activation,
/// or a residual connection's add; these models never need both): bias [out] or nil, residual of the
/// output's shape or nil. Each core takes a block of rows: with AVX-512, through the packed weight in
/// register tiles that add bias + residual and apply the activation before storing (`ck_linear_rows`);
/// otherwise it fills its rows with bias + residual (`ck_fill_rows`), lets OpenBLAS add x·Wᵀ onto them,
/// and applies the activation while they are still in its cache.
public func linear(_ x: Tensor, weight: LinearWeight, bias: Tensor? = nil, activation: Activation = .identity,
                   adding residual: Tensor? = nil) -> Tensor {
    let (outFeatures, inFeatures) = (weight.outFeatures, weight.inFeatures)
    precondition(x.rank >= 1 && x.shape[x.rank - 1] == inFeatures,
                "linear: input \(x.shape) does not end in the weight's \(inFeatures) input features")
    if let bias {
        precondition(bias.shape == [outFeatures], "linear: bias must be [\(outFeatures)], got \(bias.shape)")
    }
    let rows = x.count / max(inFeatures, 1)
    var outShape = x.shape
    outShape[x.rank - 1] = outFeatures
    if let residual {
        precondition(residual.shape == outShape, "linear: residual must be \(outShape) like the output, got \(residual.shape)")
        precondition(activation == .identity, "linear: an activation before a residual add is not supported")
    }
    let packed = weight.isPacked
    precondition(packed == (ck_has_packed_linear() != 0), "linear: the weight was made for another copy of the kernels")
    return Tensor(shape: outShape) { y in
        guard rows > 0, outFeatures > 0 else { return }
        x.scalars.withUnsafeBufferPointer { x in
            weight.elements.withUnsafeBufferPointer { w in
                withOptionalPointer(bias) { bias in
                    withOptionalPointer(residual) { residual in
                        let layer = ck_linear(in_features: inFeatures, out_features: outFeatures,
                                              packed: packed ? w.baseAddress : nil, bias: bias, activation: activation.kernel)
                        // Blocks of about 256 rows, as many for each thread (1600 rows in 7 blocks left one
                        // thread 4 and the other 3); below about a million multiply-adds one core does it all.
                        let threads = Threads.count
                        let blocks = rows * outFeatures * inFeatures < 1 << 20 ? 1 : ((rows + 255) / 256 + threads - 1) / threads * threads
                        parallelRanges(blocks) { range in
                            let first = rows * range.lowerBound / blocks, end = rows * range.upperBound / blocks
                            let out = y.baseAddress! + first * outFeatures
                            let added = residual.map { $0 + first * outFeatures }
                            if packed {
                                withUnsafePointer(to: layer) { ck_linear_rows($0, x.baseAddress! + first * inFeatures, end - first, added, out) }
                                return
                            }
                            ck_fill_rows(out, end - first, outFeatures, bias, added)
                            if inFeatures > 0 {
                                gemm(transposeB: true, m: end - first, n: outFeatures, k: inFeatures,
                                     a: x.baseAddress! + first * inFeatures, lda: inFeatures, b: w.baseAddress!, ldb: inFeatures,
                                     beta: 1, c: out, ldc: outFeatures)
                            }
                            if activation != .identity {
                                ck_scale_shift(out, out, (end - first) * outFeatures, 1, 0, activation.kernel)
                            }
                        }
                    }
                }
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
