// The VQ-VAE quantiser's look-up: the nearest codebook entry for every position of an encoding.
//
//   nearestCodes(z, codebook: e) -> [Int]   // z [N, D, H, W], e [K, D] → N·H·W indices, in (n, h, w) order

/// For every position of z, the index of the codebook row closest in squared distance. Since ‖z‖² is
/// the same for all rows, the row minimising ‖e‖² − 2 z·e wins; z·e for all positions and rows is
/// one GEMM per image. Ties go to the lowest index, as torch.argmin's.
public func nearestCodes(_ z: Tensor, codebook: Tensor) -> [Int] {
    precondition(z.rank == 4, "nearestCodes: encoding must be [N, D, H, W], got \(z.shape)")
    precondition(codebook.rank == 2 && codebook.shape[1] == z.shape[1] && codebook.shape[0] >= 1,
                "nearestCodes: codebook must be [K, \(z.shape[1])] with K ≥ 1, got \(codebook.shape)")
    let (batch, depth, positions) = (z.shape[0], z.shape[1], z.shape[2] * z.shape[3])
    let codes = codebook.shape[0]
    let squaredNorms = (0..<codes).map { code in
        codebook.scalars[code * depth ..< (code + 1) * depth].reduce(Float(0)) { $0 + $1 * $1 }
    }
    return [Int](unsafeUninitializedCapacity: batch * positions) { indices, initialized in
        z.scalars.withUnsafeBufferPointer { z in
            codebook.scalars.withUnsafeBufferPointer { e in
                parallelRanges(batch) { items in
                    let products = UnsafeMutablePointer<Float>.allocate(capacity: positions * codes)
                    defer { products.deallocate() }
                    for item in items {
                        // products[p, c] = z[:, p]·e[c, :]; z is stored [D, positions], so transposed.
                        if depth > 0 {
                            gemm(transposeA: true, transposeB: true, m: positions, n: codes, k: depth,
                                 a: z.baseAddress! + item * depth * positions, lda: positions,
                                 b: e.baseAddress!, ldb: depth, c: products, ldc: codes)
                        } else {
                            products.update(repeating: 0, count: positions * codes)
                        }
                        for position in 0..<positions {
                            let row = products + position * codes
                            var best = 0
                            var bestDistance = squaredNorms[0] - 2 * row[0]
                            for code in 1..<codes where squaredNorms[code] - 2 * row[code] < bestDistance {
                                best = code
                                bestDistance = squaredNorms[code] - 2 * row[code]
                            }
                            (indices.baseAddress! + item * positions + position).initialize(to: best)
                        }
                    }
                }
            }
        }
        initialized = batch * positions
    }
}
