// Normalisation layers, with PyTorch's definitions (biased variance, eps inside the square root).
//
//   groupNorm(x, groups: 32, weight: w, bias: b, eps: 1e-6) -> Tensor   // x [N, C, ...], w and b [C]
//   layerNorm(x, weight: w, bias: b, eps: 1e-5) -> Tensor               // over the last dim, w and b [dim]
//   l2Normalize(x, axis: 1, eps: 1e-6) -> Tensor                        // unit vectors along one axis
//
// The statistics are summed in 16 float vector lanes over runs of at most 256 values and the lanes of
// each run added up in Double, two passes, by one C kernel (`ck_moments`, which LayerNorm's rows use too):
// a group of 100 000 values loses nothing that matters.
import CKernels

/// torch.nn.GroupNorm: the C channels fall into `groups` equal groups; each (item, group) is normalised
/// over its channels and all positions, then scaled and shifted per channel, then `activation` (the
/// VQ-VAE's SiLU after most of its norms) in the same pass.
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, eps: Float,
                      activation: Activation = .identity) -> Tensor {
    precondition(x.rank >= 2, "groupNorm: input must be [N, C, ...], got \(x.shape)")
    let (batch, channels) = (x.shape[0], x.shape[1])
    precondition(groups >= 1 && channels % groups == 0,
                "groupNorm: \(channels) channels do not split into \(groups) groups")
    precondition(weight.shape == [channels] && bias.shape == [channels],
                "groupNorm: weight and bias must be [\(channels)], got \(weight.shape) and \(bias.shape)")
    let positions = x.shape.dropFirst(2).reduce(1, *)
    let channelsPerGroup = channels / groups
    let groupSize = channelsPerGroup * positions
    return Tensor(shape: x.shape) { y in
        x.scalars.withUnsafeBufferPointer { x in
            weight.scalars.withUnsafeBufferPointer { weight in
                bias.scalars.withUnsafeBufferPointer { bias in
                    parallelRanges(batch * groups) { range in
                        for itemGroup in range {
                            let start = itemGroup * groupSize
                            var (mean, variance) = (0.0, 0.0)
                            ck_moments(x.baseAddress! + start, groupSize, &mean, &variance)
                            let inverseDeviation = Float(1 / (variance + Double(eps)).squareRoot())
                            let firstChannel = itemGroup % groups * channelsPerGroup
                            for channel in firstChannel ..< firstChannel + channelsPerGroup {
                                // y = (x − mean)·invstd·w + b, folded into one multiply-add per value.
                                let scale = inverseDeviation * weight[channel]
                                let shift = bias[channel] - Float(mean) * scale
                                let offset = start + (channel - firstChannel) * positions
                                ck_scale_shift(x.baseAddress! + offset, y.baseAddress! + offset, positions, scale, shift,
                                               activation.kernel)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// torch.nn.LayerNorm over the last dimension: each row normalised, then scaled and shifted per feature.
public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float) -> Tensor {
    precondition(x.rank >= 1, "layerNorm: input must have at least one dimension")
    let dim = x.shape[x.rank - 1]
    precondition(weight.shape == [dim] && bias.shape == [dim],
                "layerNorm: weight and bias must be [\(dim)] like the input's last dimension, got \(weight.shape) and \(bias.shape)")
    let rows = dim == 0 ? 0 : x.count / dim
    return Tensor(shape: x.shape) { y in
        x.scalars.withUnsafeBufferPointer { x in
            weight.scalars.withUnsafeBufferPointer { weight in
                bias.scalars.withUnsafeBufferPointer { bias in
                    parallelRanges(rows) { range in
                        ck_layer_norm(x.baseAddress! + range.lowerBound * dim, y.baseAddress! + range.lowerBound * dim,
                                      range.count, dim, weight.baseAddress!, bias.baseAddress!, eps)
                    }
                }
            }
        }
    }
}

/// torch.nn.functional.normalize: every vector along `axis` divided by max(‖v‖₂, eps).
public func l2Normalize(_ x: Tensor, axis: Int, eps: Float) -> Tensor {
    precondition((0..<x.rank).contains(axis), "l2Normalize: axis \(axis) is not one of \(x.shape)'s")
    let length = x.shape[axis]
    let inner = x.shape[(axis + 1)...].reduce(1, *)
    let outer = x.shape[..<axis].reduce(1, *)
    return Tensor(shape: x.shape) { y in
        x.scalars.withUnsafeBufferPointer { x in
            parallelRanges(outer * inner) { range in
                for vector in range {
                    // Element k of vector (o, i) sits at (o·length + k)·inner + i.
                    let first = vector / inner * length * inner + vector % inner
                    var squares = 0.0
                    for k in 0..<length { squares += Double(x[first + k * inner]) * Double(x[first + k * inner]) }
                    let scale = 1 / max(Float(squares.squareRoot()), eps)
                    for k in 0..<length { y[first + k * inner] = x[first + k * inner] * scale }
                }
            }
        }
    }
}
