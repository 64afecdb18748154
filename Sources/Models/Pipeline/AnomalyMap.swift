import Kernels

import Glibc

extension Engine {
    /// x [B, C, H, W] and its restorations [B, R, C, H, W] → anomaly map [B, C, H, W] in [0, 1]:
    /// residuals d_j = |x − x̃_j|, combined (`mean`, or `softmax-weighted` with
    /// w = softmax_j(temperature / max(mean_pixels d_j, 1e-8)), favouring restorations close to the
    /// input), then a min-pool (drops thin edge residuals) and an average pool (smooths), clamped.
    func anomalyMap(_ x: Tensor, _ restorations: Tensor, _ parameters: InferenceParameters) -> Tensor {
        let (images, count) = (restorations.shape[0], restorations.shape[1])
        let size = x.count / images   // C·H·W
        var combined = [Float](repeating: 0, count: x.count)
        for image in 0..<images {
            let input = x.scalars[image * size ..< (image + 1) * size]
            let residuals = (0..<count).map { j in
                let restored = restorations.scalars[(image * count + j) * size ..< (image * count + j + 1) * size]
                return zip(input, restored).map { abs($0 - $1) }
            }
            let weights: [Float]
            switch parameters.combine {
            case .mean:
                weights = [Float](repeating: 1 / Float(count), count: count)
            case .softmaxWeighted:
                let meanResiduals = residuals.map { max(Float($0.reduce(0.0) { $0 + Double($1) } / Double(size)), 1e-8) }
                weights = softmax(meanResiduals.map { parameters.temperature / $0 })
            }
            for (j, residual) in residuals.enumerated() {
                for i in 0..<size { combined[image * size + i] += weights[j] * residual[i] }
            }
        }
        let minimum = minPool(Tensor(shape: x.shape, scalars: combined), window: [parameters.minPool, parameters.minPool])
        let smoothed = averagePool(minimum, window: [parameters.avgPool, parameters.avgPool])
        return Tensor(shape: smoothed.shape, scalars: smoothed.scalars.map { min(max($0, 0), 1) })
    }
}

/// softmax of a short vector (the R restoration weights).
private func softmax(_ values: [Float]) -> [Float] {
    let maximum = values.max() ?? 0
    let exponentials = values.map { expf($0 - maximum) }
    let total = exponentials.reduce(0, +)
    return exponentials.map { $0 / total }
}
