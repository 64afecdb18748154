// Element-wise non-linearities and row-wise (last-dimension) softmax.
//
//   silu(x), gelu(x), sigmoid(x) -> Tensor          // same shape
//   softmax(x), logSoftmax(x) -> Tensor             // over the last dimension, numerically stable
import Glibc

/// x·σ(x), torch.nn.SiLU (the VQ-VAE's non-linearity).
public func silu(_ x: Tensor) -> Tensor {
    map(x) { $0 / (1 + exp(-$0)) }
}

/// The exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)), as torch.nn.GELU() (not its tanh approximation).
public func gelu(_ x: Tensor) -> Tensor {
    map(x) { 0.5 * $0 * (1 + erf($0 * 0.707_106_781_186_547_52)) }
}

/// The logistic function 1/(1 + e^−x).
public func sigmoid(_ x: Tensor) -> Tensor {
    map(x) { 1 / (1 + exp(-$0)) }
}

/// e^(x − max) / Σ e^(x − max) along the last dimension; subtracting the row's maximum keeps every
/// exponent ≤ 0, so nothing overflows.
public func softmax(_ x: Tensor) -> Tensor {
    mapRows(x) { row, out in softmaxRow(row.base.baseAddress! + row.startIndex, count: row.count, into: out) }
}

/// log softmax along the last dimension: (x − max) − log Σ e^(x − max), subtracting the maximum first
/// so large logits keep their precision.
public func logSoftmax(_ x: Tensor) -> Tensor {
    mapRows(x) { row, out in
        let maximum = row.max() ?? 0
        var sum: Float = 0
        for value in row { sum += expf(value - maximum) }
        let logSum = logf(sum)
        for i in row.indices { out[i - row.startIndex] = (row[i] - maximum) - logSum }
    }
}

/// Writes softmax of the count values at row into out (out may be row itself): the maximum, then
/// e^(x − max), then the scaling by 1/Σ, each pass 16 lanes at a time.
func softmaxRow(_ row: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>) {
    let width = Vector.scalarCount
    let whole = count / width * width
    var maxima = Vector(repeating: -.infinity)
    for i in stride(from: 0, to: whole, by: width) {
        let values = load(row + i)
        maxima.replace(with: values, where: values .> maxima)  // compare and blend; pointwiseMax is not vectorised
    }
    var maximum = maxima.max()
    for i in whole..<count { maximum = max(maximum, row[i]) }

    mapVectors(row, out, count: count) { exp($0 - maximum) }

    var sums = Vector()
    for i in stride(from: 0, to: whole, by: width) { sums += load(out + i) }
    var sum = sums.sum()
    for i in whole..<count { sum += out[i] }

    let scale = 1 / sum
    for i in stride(from: 0, to: whole, by: width) { store(load(out + i) * scale, at: out + i) }
    for i in whole..<count { out[i] *= scale }
}

/// f applied to every scalar, 16 at a time, in parallel blocks.
private func map(_ x: Tensor, _ f: (Vector) -> Vector) -> Tensor {
    let blockSize = 1 << 14
    let count = x.count
    return Tensor(shape: x.shape) { y in
        x.scalars.withUnsafeBufferPointer { x in
            parallelRanges((count + blockSize - 1) / blockSize) { blocks in
                let first = blocks.lowerBound * blockSize
                mapVectors(x.baseAddress! + first, y.baseAddress! + first,
                           count: min(count, blocks.upperBound * blockSize) - first, f)
            }
        }
    }
}

/// body(row, out) for every row of the last dimension, in parallel blocks of rows.
private func mapRows(_ x: Tensor, _ body: (Slice<UnsafeBufferPointer<Float>>, UnsafeMutablePointer<Float>) -> Void) -> Tensor {
    let dim = x.shape.last ?? 1
    let rows = dim == 0 ? 0 : x.count / dim
    return Tensor(shape: x.shape) { y in
        x.scalars.withUnsafeBufferPointer { x in
            parallelRanges(rows) { range in
                for row in range {
                    body(x[row * dim ..< (row + 1) * dim], y.baseAddress! + row * dim)
                }
            }
        }
    }
}
