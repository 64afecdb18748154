import CKernels
import Kernels
import XCTest

final class LinearAlgebraTests: XCTestCase {
    func testMatmulOfTwoByTwoMatrices() throws {
        let a = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
        let b = Tensor(shape: [2, 2], scalars: [5, 6, 7, 8])
        XCTAssertEqual(matmul(a, b).scalars, [19, 22, 43, 50])
        XCTAssertEqual(matmul(a, b, transposeA: true).scalars, [26, 30, 38, 44])
        XCTAssertEqual(matmul(a, b, transposeB: true).scalars, [17, 23, 39, 53])
    }

    func testMatmulOfNonSquareShapes() throws {
        let a = Tensor(shape: [1, 3], scalars: [1, 2, 3])
        let b = Tensor(shape: [3, 2], scalars: [1, 0, 0, 1, 1, 1])
        let product = matmul(a, b)
        XCTAssertEqual(product.shape, [1, 2])
        XCTAssertEqual(product.scalars, [4, 5])
    }

    func testMatmulSplitOverThreadsMatchesOneThread() {
        // 300×200·200×100 is above the size where the rows are split over threads.
        let a = Tensor(shape: [300, 200], scalars: (0..<60_000).map { Float($0 % 17) - 8 })
        let b = Tensor(shape: [200, 100], scalars: (0..<20_000).map { Float($0 % 13) - 6 })
        let single = Threads.withCount(1) { matmul(a, b) }
        XCTAssertEqual(Threads.withCount(3) { matmul(a, b) }, single)
        // Small integers: every product and sum is exact in Float, so compare with a plain loop.
        var expected: Float = 0
        for i in 0..<200 { expected += a.scalars[123 * 200 + i] * b.scalars[i * 100 + 45] }
        XCTAssertEqual(single.scalars[123 * 100 + 45], expected)
    }

    func testLinearAddsBiasToEveryRow() throws {
        let x = Tensor(shape: [2, 1, 2], scalars: [1, 2, 3, 4])
        let weight = Tensor(shape: [3, 2], scalars: [1, 0, 0, 1, 1, 1])
        let bias = Tensor(shape: [3], scalars: [10, 20, 30])
        forEachInstructionSet { set in
            let y = linear(x, weight: LinearWeight(weight), bias: bias)
            XCTAssertEqual(y.shape, [2, 1, 3], set)
            XCTAssertEqual(y.scalars, [11, 22, 33, 13, 24, 37], set)
            XCTAssertEqual(linear(x, weight: LinearWeight(weight)).scalars, [1, 2, 3, 3, 4, 7], set)
        }
    }

    func testLinearMatchesPyTorch() throws {
        try forEachInstructionSet { set in
            let weight = LinearWeight(try kernelFixture("linear_weight").tensor)
            let y = linear(try kernelFixture("linear_input").tensor, weight: weight, bias: try kernelFixture("linear_bias").tensor)
            assertClose(y, try kernelFixture("linear_output").tensor, tolerance: 1e-5, set)
        }
    }

    func testLinearAppliesGELUOrAddsTheResidualInItsOwnPass() throws {
        // 300 rows (more than one block of 256) of 37 outputs (a partial vector at each row's end).
        let (rows, inputs, outputs) = (300, 5, 37)
        let x = Tensor(shape: [rows, inputs], scalars: (0..<rows * inputs).map { Float(($0 * 7919) % 23) / 11 - 1 })
        let weight = Tensor(shape: [outputs, inputs], scalars: (0..<outputs * inputs).map { Float(($0 * 31) % 17) / 16 - 0.5 })
        let bias = Tensor(shape: [outputs], scalars: (0..<outputs).map { Float($0) / 37 - 0.5 })
        let residual = Tensor(shape: [rows, outputs], scalars: (0..<rows * outputs).map { Float($0 % 13) })
        forEachInstructionSet { set in
            let packed = LinearWeight(weight)
            let plain = linear(x, weight: packed, bias: bias)
            assertClose(linear(x, weight: packed, bias: bias, activation: .gelu), gelu(plain), tolerance: 1e-6, set)
            assertClose(linear(x, weight: packed, bias: bias, adding: residual), add(plain, residual), tolerance: 1e-6, set)
            assertClose(linear(x, weight: packed, adding: residual), add(matmul(x, weight, transposeB: true), residual),
                        tolerance: 1e-6, set)
        }
    }

    func testPackedLinearEqualsTheBLASProduct() throws {
        // Rows that end in a partial tile of 8, outputs that end in a partial panel of 32 (and of 16), a
        // single output (the ATD head's), the MVTM head's 257; GELU and residual adds on the same shapes.
        guard ck_select_instruction_set("avx512f") == 1 else { throw XCTSkip("the packed product needs AVX-512") }
        defer { selectWidestInstructionSet() }
        for (rows, inputs, outputs) in [(13, 7, 37), (400, 128, 384), (21, 512, 128), (9, 128, 1), (17, 128, 257), (3, 1, 16)] {
            let x = Tensor(shape: [rows, inputs], scalars: (0..<rows * inputs).map { Float(($0 * 7919) % 101) / 50 - 1 })
            let weight = Tensor(shape: [outputs, inputs], scalars: (0..<outputs * inputs).map { Float(($0 * 31) % 97) / 96 - 0.5 })
            let bias = Tensor(shape: [outputs], scalars: (0..<outputs).map { Float($0 % 11) / 10 - 0.5 })
            let residual = Tensor(shape: [rows, outputs], scalars: (0..<rows * outputs).map { Float($0 % 13) / 4 })
            // The weight made under each copy of the kernels: panels for AVX-512, [out, in] for BLAS.
            func both(_ product: (LinearWeight) -> Tensor) -> (packed: Tensor, blas: Tensor) {
                _ = ck_select_instruction_set("avx512f")
                let fromPanels = product(LinearWeight(weight))
                _ = ck_select_instruction_set("avx2")
                return (fromPanels, product(LinearWeight(weight)))
            }
            let shape = "\(rows)×\(inputs)→\(outputs)"
            for (name, results) in [("bias", both { linear(x, weight: $0, bias: bias) }),
                                    ("GELU", both { linear(x, weight: $0, bias: bias, activation: .gelu) }),
                                    ("residual", both { linear(x, weight: $0, bias: bias, adding: residual) }),
                                    ("no bias", both { linear(x, weight: $0) })] {
                // Both sum k in order from zero and add bias + residual last; BLAS may split long sums.
                assertClose(results.packed, results.blas, tolerance: 2e-5, "\(shape) \(name)")
            }
        }
    }

    func testEmbeddingPicksRows() throws {
        let table = Tensor(shape: [3, 2], scalars: [0, 1, 10, 11, 20, 21])
        let rows = embedding([2, 0, 2], weight: table)
        XCTAssertEqual(rows.shape, [3, 2])
        XCTAssertEqual(rows.scalars, [20, 21, 0, 1, 20, 21])
    }
}
