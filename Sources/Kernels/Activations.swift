// Element-wise non-linearities and row-wise (last-dimension) softmax, on the C kernels (CKernels), whose
// exp and erf are 16-wide polynomials: libm's expf and erff take one value per call and cost several
// times a whole GEMM row.
//
//   silu(x), gelu(x), sigmoid(x) -> Tensor          // same shape
//   softmax(x), logSoftmax(x) -> Tensor             // over the last dimension, numerically stable
import CKernels
import Glibc

/// A non-linearity that a norm or a Linear layer applies in its own pass over its output.
public enum Activation: Sendable {
    case identity
    /// The exact GELU, as `gelu(_:)`.
    case gelu
    /// x·σ(x), as `silu(_:)`.
    case silu

    var kernel: ck_activation {
        switch self {
        case .identity: CK_IDENTITY
        case .gelu: CK_GELU
        case .silu: CK_SILU
        }
    }
}

/// x·σ(x), torch.nn.SiLU (the VQ-VAE's non-linearity).
public func silu(_ x: Tensor) -> Tensor {
    map(x) { ck_scale_shift($0, $1, $2, 1, 0, CK_SILU) }
}

/// The exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)), as torch.nn.GELU() (not its tanh approximation).
public func gelu(_ x: Tensor) -> Tensor {
    map(x) { ck_scale_shift($0, $1, $2, 1, 0, CK_GELU) }
}

/// The logistic function 1/(1 + e^−x).
public func sigmoid(_ x: Tensor) -> Tensor {
    map(x) { ck_sigmoid($0, $1, $2) }
}

/// e^(x − max) / Σ e^(x − max) along the last dimension; subtracting the row's maximum keeps every
/// exponent ≤ 0, so nothing overflows.
public func softmax(_ x: Tensor) -> Tensor {
    mapRows(x) { row, out in ck_softmax_row(row.base.baseAddress! + row.startIndex, row.count, out) }
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

/// f(input, output, count) over every scalar, in parallel blocks.
private func map(_ x: Tensor, _ f: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
    let blockSize = 1 << 14
    let count = x.count
    return Tensor(shape: x.shape) { y in
        x.scalars.withUnsafeBufferPointer { x in
            parallelRanges((count + blockSize - 1) / blockSize) { blocks in
                let first = blocks.lowerBound * blockSize
                f(x.baseAddress! + first, y.baseAddress! + first, min(count, blocks.upperBound * blockSize) - first)
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
