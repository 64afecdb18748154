import Kernels
import XCTest

final class AttentionTests: XCTestCase {
    func testEqualScoresAverageTheValues() throws {
        // One head of width 1, q = k = 0: all scores equal, so each token gets the mean of the values
        // it may see — all of them, or (causal) itself and those before it.
        let qkv = Tensor(shape: [1, 3, 3], scalars: [0, 0, 3, 0, 0, 6, 0, 0, 12])
        XCTAssertEqual(try attention(qkv, heads: 1).scalars, [7, 7, 7])
        XCTAssertEqual(try attention(qkv, heads: 1, causal: true).scalars, [3, 4.5, 7])
    }

    func testHeadsReadAndWriteTheirOwnFeatures() throws {
        // Two heads of width 1 over two tokens. Head 0 scores q0·k = [0, 0] → equal weights; head 1 has
        // q1·k = [0, 100·2] for both tokens → all weight (within e^−200) on token 1.
        let qkv = Tensor(shape: [1, 2, 6], scalars: [
            0, 100, /* k */ 0, 0, /* v */ 1, 10,
            0, 100, /* k */ 0, 2, /* v */ 3, 30,
        ])
        XCTAssertEqual(try attention(qkv, heads: 2).scalars, [2, 30, 2, 30])
    }

    func testAttentionMatchesPyTorch() throws {
        let qkv = try kernelFixture("attention_qkv").tensor
        assertClose(try attention(qkv, heads: 3), try kernelFixture("attention_output").tensor, tolerance: 1e-5)
        assertClose(try attention(qkv, heads: 3, causal: true), try kernelFixture("attention_causal_output").tensor,
                    tolerance: 1e-5)
    }

    func testSpatialAttentionMatchesTheAttnBlockCore() throws {
        let y = try spatialAttention(q: kernelFixture("spatial_q").tensor, k: kernelFixture("spatial_k").tensor,
                                     v: kernelFixture("spatial_v").tensor)
        assertClose(y, try kernelFixture("spatial_output").tensor, tolerance: 1e-5)
    }

    func testAttentionRejectsBadShapes() {
        XCTAssertThrowsError(try attention(Tensor(zeros: [1, 4, 12]), heads: 3)) { error in
            XCTAssert("\(error)".contains("4 features do not split into 3 heads"), "\(error)")
        }
        XCTAssertThrowsError(try attention(Tensor(zeros: [4, 12]), heads: 2))
        XCTAssertThrowsError(try spatialAttention(q: Tensor(zeros: [1, 2, 3, 3]), k: Tensor(zeros: [1, 2, 3, 3]),
                                                  v: Tensor(zeros: [1, 2, 3, 2])))
    }
}
