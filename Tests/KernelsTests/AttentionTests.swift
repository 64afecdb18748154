import Kernels
import XCTest

final class AttentionTests: XCTestCase {
    func testEqualScoresAverageTheValues() throws {
        // One head of width 1, q = k = 0: all scores equal, so each token gets the mean of the values
        // it may see — all of them, or (causal) itself and those before it.
        let qkv = Tensor(shape: [1, 3, 3], scalars: [0, 0, 3, 0, 0, 6, 0, 0, 12])
        XCTAssertEqual(attention(qkv, heads: 1).scalars, [7, 7, 7])
        XCTAssertEqual(attention(qkv, heads: 1, causal: true).scalars, [3, 4.5, 7])
    }

    func testHeadsReadAndWriteTheirOwnFeatures() throws {
        // Two heads of width 1 over two tokens. Head 0 scores q0·k = [0, 0] → equal weights; head 1 has
        // q1·k = [0, 100·2] for both tokens → all weight (within e^−200) on token 1.
        let qkv = Tensor(shape: [1, 2, 6], scalars: [
            0, 100, /* k */ 0, 0, /* v */ 1, 10,
            0, 100, /* k */ 0, 2, /* v */ 3, 30,
        ])
        XCTAssertEqual(attention(qkv, heads: 2).scalars, [2, 30, 2, 30])
    }

    func testAttentionMatchesPyTorch() throws {
        let qkv = try kernelFixture("attention_qkv").tensor
        try forEachInstructionSet { set in
            assertClose(attention(qkv, heads: 3), try kernelFixture("attention_output").tensor, tolerance: 1e-5, set)
            assertClose(attention(qkv, heads: 3, causal: true), try kernelFixture("attention_causal_output").tensor,
                        tolerance: 1e-5, set)
        }
    }

    func testQueryRowsEqualThoseRowsOfTheWholeResult() throws {
        // 2 sequences of 37 tokens (a partial block of 8 and of 32 keys), 2 heads of 5 features; query rows
        // that fall in different blocks than in the whole pass, the first and the last included.
        let (batch, tokens, dim) = (2, 37, 10)
        let qkv = Tensor(shape: [batch, tokens, 3 * dim],
                         scalars: (0..<batch * tokens * 3 * dim).map { Float(($0 * 7919) % 61) / 30 - 1 })
        let queries = [0, 5, 8, 9, 17, 30, 36]
        forEachInstructionSet { set in
            for causal in [false, true] {
                let whole = attention(qkv, heads: 2, causal: causal)
                let rows = attention(qkv, heads: 2, causal: causal, queries: queries)
                XCTAssertEqual(rows.shape, [batch, queries.count, dim], set)
                var expected: [Float] = []
                for item in 0..<batch {
                    for query in queries {
                        let row = item * tokens + query
                        expected += whole.scalars[row * dim ..< (row + 1) * dim]
                    }
                }
                XCTAssertEqual(rows.scalars, expected, "\(set) causal \(causal)")
            }
            XCTAssertEqual(attention(qkv, heads: 2, queries: []).shape, [batch, 0, dim], set)
        }
    }

    func testSpatialAttentionMatchesTheAttnBlockCore() throws {
        try forEachInstructionSet { set in
            let y = try spatialAttention(q: kernelFixture("spatial_q").tensor, k: kernelFixture("spatial_k").tensor,
                                         v: kernelFixture("spatial_v").tensor)
            assertClose(y, try kernelFixture("spatial_output").tensor, tolerance: 1e-5, set)
        }
    }

    func testCachedStepAveragesTheFirstLengthPositions() throws {
        // One sequence, one head of width 1, q = k = 0: equal scores over the first 2 of 3 cached
        // positions, so the mean of values 4 and 8; position 2 (100) is beyond `length`.
        let qkv = Tensor(shape: [1, 3], scalars: [0, 0, 0])
        let keys = Tensor(shape: [1, 3, 1], scalars: [0, 0, 0])
        let values = Tensor(shape: [1, 3, 1], scalars: [4, 8, 100])
        XCTAssertEqual(cachedAttention(qkv, keys: keys, values: values, length: 2, heads: 1).scalars, [6])
    }

    func testCachedStepsEqualCausalAttentionOverThePrefix() throws {
        // Fill a cache with the k and v rows of the fixture's qkv, then each step t must reproduce row t
        // of the causal attention over the whole sequence.
        let qkv = try kernelFixture("attention_qkv").tensor   // [2, 7, 36]: dim 12, 3 heads
        let (sequences, tokens, dim) = (2, 7, 12)
        let causal = attention(qkv, heads: 3, causal: true)
        var keys = Tensor(zeros: [sequences, tokens, dim]), values = Tensor(zeros: [sequences, tokens, dim])
        for s in 0..<sequences {
            for t in 0..<tokens {
                for f in 0..<dim {
                    keys.scalars[(s * tokens + t) * dim + f] = qkv.scalars[(s * tokens + t) * 3 * dim + dim + f]
                    values.scalars[(s * tokens + t) * dim + f] = qkv.scalars[(s * tokens + t) * 3 * dim + 2 * dim + f]
                }
            }
        }
        /// Row t of every sequence of a [sequences, tokens, width] tensor: [sequences, width].
        func rows(_ t: Int, of x: Tensor, width: Int) -> Tensor {
            var scalars: [Float] = []
            for s in 0..<sequences {
                let start = (s * tokens + t) * width
                scalars += x.scalars[start ..< start + width]
            }
            return Tensor(shape: [sequences, width], scalars: scalars)
        }
        for t in 0..<tokens {
            let step = rows(t, of: qkv, width: 3 * dim)
            let expected = rows(t, of: causal, width: dim)
            assertClose(cachedAttention(step, keys: keys, values: values, length: t + 1, heads: 3), expected, tolerance: 1e-5)
        }
    }
}
