// Matrix products through BLAS: the GEMM wrapper the other kernels call, and `matmul` on tensors.
//
//   matmul(a, b, transposeA: false, transposeB: false) -> Tensor   // [M, K]·[K, N] → [M, N]
//   blasDescription -> String                                      // which BLAS and which kernels run
//
// OpenBLAS (Debian's pthread build); docs/kernels.md says why OpenBLAS and how it was measured. BLAS
// is kept single-threaded: the kernels parallelise around it.
import CBLAS

/// A description of the BLAS in use, for logs: OpenBLAS's name for the kernels it picked for this CPU
/// (its `OPENBLAS_CORETYPE` environment variable overrides that choice at start-up).
public var blasDescription: String {
    guard let name = openblas_get_corename() else { return "OpenBLAS" }
    return "OpenBLAS (\(String(cString: name)) kernels)"
}

/// Set once, before the first product: BLAS must not start threads of its own inside our parallel loops.
private let blasSingleThreaded: Void = {
    openblas_set_num_threads(1)
}()

/// Row-major C = alpha · op(A) · op(B) + beta · C, op(X) being X or Xᵀ; op(A) is m×k, op(B) k×n, C m×n,
/// and lda, ldb, ldc are the distances between consecutive stored rows of A, B and C.
func gemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
          beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    _ = blasSingleThreaded
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The same product with the m rows of C split over `Threads.count` threads, for products large
/// enough that one core would be the bottleneck.
func parallelGemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    // Below about a million multiply-adds the threads cost more than they save.
    let blocks = m * n * k < 1 << 20 ? 1 : (m + 63) / 64
    let rowsPerBlock = (m + blocks - 1) / blocks
    parallelRanges(blocks) { range in
        let first = range.lowerBound * rowsPerBlock
        let end = min(m, range.upperBound * rowsPerBlock)
        guard first < end else { return }
        gemm(transposeA: transposeA, transposeB: transposeB, m: end - first, n: n, k: k, alpha: alpha,
             a: transposeA ? a + first : a + first * lda, lda: lda, b: b, ldb: ldb,
             beta: beta, c: c + first * ldc, ldc: ldc)
    }
}

/// The matrix product op(a)·op(b) of two rank-2 tensors, op transposing when asked.
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    precondition(a.rank == 2 && b.rank == 2, "matmul: needs two matrices, got shapes \(a.shape) and \(b.shape)")
    let (m, k) = transposeA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
    let (kb, n) = transposeB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
    precondition(k == kb, "matmul: inner dimensions differ (\(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : ""))")
    let aShape = a.shape, bShape = b.shape
    return Tensor(shape: [m, n]) { c in
        guard m > 0, n > 0 else { return }
        guard k > 0 else { c.update(repeating: 0); return }
        a.scalars.withUnsafeBufferPointer { a in
            b.scalars.withUnsafeBufferPointer { b in
                parallelGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                             a: a.baseAddress!, lda: aShape[1],
                             b: b.baseAddress!, ldb: bShape[1],
                             c: c.baseAddress!, ldc: n)
            }
        }
    }
}
