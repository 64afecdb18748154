/// How anomaly scores are drawn over a slice.
public struct OverlayStyle: Sendable, Equatable {
    /// Scores at or below this leave the slice untouched.
    public var lowerScore: Float
    /// Scores at or above this get the brightest colour at full opacity.
    public var upperScore: Float
    /// Opacity of the colour at `upperScore`: below 1 the anatomy stays visible under the strongest scores.
    public var maximumOpacity: Float

    /// nil unless `lowerScore < upperScore` (both finite) and `maximumOpacity` is in [0, 1], so that
    /// values from a request can be checked by constructing the style.
    public init?(lowerScore: Float, upperScore: Float, maximumOpacity: Float) {
        guard lowerScore.isFinite, upperScore.isFinite, lowerScore < upperScore, (0...1).contains(maximumOpacity) else { return nil }
        (self.lowerScore, self.upperScore, self.maximumOpacity) = (lowerScore, upperScore, maximumOpacity)
    }

    /// Scores from 0.1 (invisible) to 0.5 (full colour) at 80 % opacity: the anomaly map is a residual in
    /// [0, 1], and healthy tissue's residual stays mostly below 0.1.
    public static let standard = OverlayStyle(lowerScore: 0.1, upperScore: 0.5, maximumOpacity: 0.8)!
}

/// An anomaly map as colour over its grayscale slice, for people to look at.
///
/// A score `s` becomes `t = clamp((s − lower) / (upper − lower), 0, 1)`; the pixel is
/// `(1 − α)·gray + α·colour(t)` with `α = maximumOpacity · t`, so weak scores fade into the anatomy and
/// strong ones stand out. `colour` runs through the upper three quarters of matplotlib's magma map
/// (purple → red → orange → pale yellow): perceptually uniform and monotonically brighter, so a brighter
/// colour always means a higher score, also in grayscale print; magma's darkest quarter is left out
/// because it would vanish on dark tissue.
public enum AnomalyOverlay {
    /// magma at 0.25, 0.375, …, 1.0 (sRGB in [0, 1]); `colour(t)` interpolates linearly between them.
    static let anchors: [(red: Float, green: Float, blue: Float)] = [
        (0.317, 0.072, 0.485), (0.513, 0.148, 0.508), (0.716, 0.215, 0.475), (0.904, 0.320, 0.388),
        (0.987, 0.536, 0.382), (0.997, 0.770, 0.535), (0.987, 0.991, 0.750),
    ]

    /// An 8-bit RGB image of `image` (intensities in [0, 1]) with `scores` drawn over it; both the same size.
    public static func render(image: GrayImage, scores: GrayImage, style: OverlayStyle = .standard) -> PNGImage {
        precondition(image.width == scores.width && image.height == scores.height, "the scores must cover the image")
        var samples = [UInt16](repeating: 0, count: image.pixels.count * 3)
        for index in image.pixels.indices {
            let gray = clamped(image.pixels[index])
            let score = scores.pixels[index].isNaN ? style.lowerScore : scores.pixels[index]
            let t = clamped((score - style.lowerScore) / (style.upperScore - style.lowerScore))
            let alpha = style.maximumOpacity * t
            let tint = colour(t)
            for (channel, value) in [tint.red, tint.green, tint.blue].enumerated() {
                samples[3 * index + channel] = UInt16(((1 - alpha) * gray + alpha * value) * 255 + 0.5)
            }
        }
        return PNGImage(width: image.width, height: image.height, color: .rgb, bitDepth: 8, samples: samples)
    }

    /// The colour for `t` in [0, 1].
    static func colour(_ t: Float) -> (red: Float, green: Float, blue: Float) {
        let position = clamped(t) * Float(anchors.count - 1)
        let lower = min(Int(position), anchors.count - 2)
        let f = position - Float(lower)
        let (a, b) = (anchors[lower], anchors[lower + 1])
        return (a.red + (b.red - a.red) * f, a.green + (b.green - a.green) * f, a.blue + (b.blue - a.blue) * f)
    }

    private static func clamped(_ value: Float) -> Float {
        value.isNaN ? 0 : min(max(value, 0), 1)
    }
}
