// Sliding-window pooling with stride 1 and "same" output size, over the trailing dimensions — the
// smoothing of anomaly maps (a 3×3 or 3×3×3 min-pool, then a 7×7 or 3×7×7 average pool).
//
//   minPool(x, window: [3, 3]) -> Tensor       // padding counts as +∞: borders take the min of what exists
//   averagePool(x, window: [7, 7]) -> Tensor   // count_include_pad = False: borders average what exists
//
// A window is a box, so both pool one dimension at a time: min over a box is the min of per-axis
// mins, and a box average with border-clipped counts is the product of per-axis clipped averages.

/// torch's max_pool of −x negated (F.max_pool{2,3}d(−x, window, stride 1, padding window/2)):
/// each value becomes the minimum over the window around it, positions outside not counted.
/// `window` gives an odd size for each of the last window.count dimensions.
public func minPool(_ x: Tensor, window: [Int]) -> Tensor {
    pool(x, window: window, name: "minPool") { line, stride, length, radius, out in
        for i in 0..<length {
            var smallest = Float.infinity
            for j in max(0, i - radius) ... min(length - 1, i + radius) { smallest = min(smallest, line[j * stride]) }
            out[i * stride] = smallest
        }
    }
}

/// F.avg_pool{2,3}d(x, window, stride 1, padding window/2, count_include_pad=False): each value becomes
/// the mean over the part of the window that lies inside the input.
public func averagePool(_ x: Tensor, window: [Int]) -> Tensor {
    pool(x, window: window, name: "averagePool") { line, stride, length, radius, out in
        for i in 0..<length {
            let (first, last) = (max(0, i - radius), min(length - 1, i + radius))
            var sum: Float = 0
            for j in first...last { sum += line[j * stride] }
            out[i * stride] = sum / Float(last - first + 1)
        }
    }
}

/// Runs `poolLine(line, stride, length, radius, out)` along each pooled dimension in turn, from the
/// last one to the first, over every line of the tensor along that dimension.
private func pool(_ x: Tensor, window: [Int], name: String,
                  poolLine: (UnsafePointer<Float>, Int, Int, Int, UnsafeMutablePointer<Float>) -> Void) -> Tensor {
    precondition(window.count <= x.rank, "\(name): a \(window.count)-D window on a \(x.rank)-D input \(x.shape)")
    precondition(window.allSatisfy { $0 >= 1 && $0 % 2 == 1 }, "\(name): window sizes must be odd and positive, got \(window)")
    var result = x
    var scratch = x.scalars
    for (offset, size) in window.enumerated().reversed() where size > 1 {
        let axis = x.rank - window.count + offset
        let (length, inner) = (x.shape[axis], x.shape[(axis + 1)...].reduce(1, *))
        let outer = x.shape[..<axis].reduce(1, *)
        result.scalars.withUnsafeBufferPointer { source in
            scratch.withUnsafeMutableBufferPointer { target in
                parallelRanges(outer) { range in
                    for o in range {
                        for i in 0..<inner {
                            let start = o * length * inner + i
                            poolLine(source.baseAddress! + start, inner, length, size / 2, target.baseAddress! + start)
                        }
                    }
                }
            }
        }
        swap(&result.scalars, &scratch)
    }
    return result
}
