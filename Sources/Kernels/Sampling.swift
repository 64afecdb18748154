// Seeded, reproducible sampling for the token resampling steps.
//
//   var rng = Xoshiro256StarStar(seed: 42)
//   sampleCategorical(logits: row, using: &rng) throws -> Int   // one draw from softmax(row)
import Glibc

/// xoshiro256** (Blackman and Vigna, 2018): a fast 64-bit generator with 256 bits of state and a period
/// of 2²⁵⁶ − 1. The state is filled from the seed by SplitMix64, which never yields the all-zero state
/// the generator must avoid. The same seed gives the same sequence on every platform.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var splitMix = seed
        func nextSplitMix() -> UInt64 {
            splitMix &+= 0x9E37_79B9_7F4A_7C15
            var z = splitMix
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (nextSplitMix(), nextSplitMix(), nextSplitMix(), nextSplitMix())
    }

    public mutating func next() -> UInt64 {
        let result = rotateLeft(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotateLeft(state.3, 45)
        return result
    }

    private func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }
}

/// One index drawn with probability softmax(logits) (temperature 1): a uniform u in [0, 1) from the top
/// 53 bits of one `next()`, then the first index whose cumulative probability exceeds u. Logits of −∞
/// are never drawn. Throws for an empty row, a NaN, or a row without a finite maximum.
/// Inlinable so that callers in other modules get it specialised for their collection and generator:
/// as an unspecialised generic it took a fifth of a restoration's time (perf, `mimood bench`).
@inlinable
public func sampleCategorical<Logits: Collection<Float>>(logits: Logits,
                                                         using generator: inout some RandomNumberGenerator) throws -> Int {
    guard !logits.contains(where: \.isNaN), let maximum = logits.max(), maximum.isFinite else {
        throw KernelError("sampleCategorical: logits must be non-empty, free of NaN, with a finite maximum")
    }
    // Cumulative sums in Double: with thousands of classes Float would drift from the total. Each weight
    // is computed once, on the stack: the exps were most of a draw's time.
    return withUnsafeTemporaryAllocation(of: Double.self, capacity: logits.count) { weights in
        var total = 0.0
        for (index, logit) in logits.enumerated() {
            weights[index] = exp(Double(logit - maximum))
            total += weights[index]
        }
        let target = Double(generator.next() >> 11) * 0x1p-53 * total
        var cumulative = 0.0
        var lastDrawable = 0
        for (index, weight) in weights.enumerated() where weight > 0 {
            cumulative += weight
            lastDrawable = index
            if target < cumulative { return index }
        }
        // Only rounding can leave u·total at or above the final sum: the last class that can be drawn.
        return lastDrawable
    }
}
