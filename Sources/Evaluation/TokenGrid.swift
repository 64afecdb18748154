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
