/// Pixel masks brought to the token grid, for the token-level measures of the paper's Table 1.
public enum TokenGrid {
    /// [slices, size, size] pixel mask → [slices, size/f, size/f], row-major: a token is true when
    /// its f×f patch holds any true pixel. With the lesion mask this is the token ground truth (a
    /// token is anomalous if its patch holds lesion); with the brain mask, the tokens to evaluate
    /// (background tokens are trivially normal and would inflate AUROC).
    public static func anyInPatch(_ mask: [Bool], size: Int, factor f: Int) -> [Bool] {
        precondition(size % f == 0 && mask.count % (size * size) == 0, "\(mask.count) pixels are not slices of \(size)×\(size) in \(f)×\(f) patches")
        let grid = size / f
        var tokens = [Bool](repeating: false, count: mask.count / (f * f))
        for pixel in mask.indices where mask[pixel] {
            let (slice, row, column) = (pixel / (size * size), pixel / size % size, pixel % size)
            tokens[(slice * grid + row / f) * grid + column / f] = true
        }
        return tokens
    }
}

extension TokenGrid {
    /// How a token's score is taken from the pixel scores of its patch.
    public enum PatchReduction: String, Sendable {
        case mean, maximum
    }

    /// [slices, size, size] pixel scores → [slices, size/f, size/f] token scores, each the reduction of
    /// the scores of the patch's pixels inside `mask` (the brain: the background would dilute a mean);
    /// 0 for a patch with no such pixel (Table 1 does not score those tokens).
    public static func reduce(_ scores: [Float], inside mask: [Bool], size: Int, factor f: Int, _ reduction: PatchReduction) -> [Float] {
        precondition(scores.count == mask.count && size % f == 0 && mask.count % (size * size) == 0,
                     "\(scores.count) scores and \(mask.count) mask pixels are not slices of \(size)×\(size) in \(f)×\(f) patches")
        let grid = size / f
        var total = [Float](repeating: 0, count: mask.count / (f * f))
        var count = [Int](repeating: 0, count: total.count)
        var maximum = [Float](repeating: -.infinity, count: total.count)
        for pixel in mask.indices where mask[pixel] {
            let (slice, row, column) = (pixel / (size * size), pixel / size % size, pixel % size)
            let token = (slice * grid + row / f) * grid + column / f
            total[token] += scores[pixel]
            count[token] += 1
            maximum[token] = max(maximum[token], scores[pixel])
        }
        return total.indices.map { token in
            guard count[token] > 0 else { return 0 }
            return reduction == .mean ? total[token] / Float(count[token]) : maximum[token]
        }
    }

    /// [slices, size/f, size/f] token scores → [slices, size, size]: each pixel takes its patch's score.
    public static func upsample(_ tokens: [Float], size: Int, factor f: Int) -> [Float] {
        let grid = size / f
        precondition(size % f == 0 && tokens.count % (grid * grid) == 0, "\(tokens.count) token scores are not grids of \(grid)×\(grid)")
        return (0..<(tokens.count / (grid * grid) * size * size)).map { pixel in
            let (slice, row, column) = (pixel / (size * size), pixel / size % size, pixel % size)
            return tokens[(slice * grid + row / f) * grid + column / f]
        }
    }
}
