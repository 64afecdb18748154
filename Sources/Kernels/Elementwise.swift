// Whole-tensor arithmetic and layout changes the models need between layers.
//
//   add(a, b) -> Tensor                 // a + b; b may repeat over a's leading dims ([1, N, dim] onto [B, N, dim])
//   permute(x, [0, 2, 3, 1]) -> Tensor  // torch.permute, copied into the new row-major order

/// Element-wise a + b. b has a's shape, or (PyTorch broadcasting over leading dimensions) the shape of
/// a's trailing dimensions, possibly preceded by 1s: a position embedding [1, N, dim] added to [B, N, dim].
public func add(_ a: Tensor, _ b: Tensor) -> Tensor {
    let trailing = Array(b.shape.drop(while: { $0 == 1 }))
    precondition(b.rank <= a.rank && a.shape.suffix(trailing.count).elementsEqual(trailing),
                "add: shape \(b.shape) does not broadcast onto \(a.shape)")
    let period = b.count
    return Tensor(shape: a.shape) { out in
        guard period > 0 else { return }
        a.scalars.withUnsafeBufferPointer { a in
            b.scalars.withUnsafeBufferPointer { b in
                for start in stride(from: 0, to: out.count, by: period) {
                    for i in 0..<period { out[start + i] = a[start + i] + b[i] }
                }
            }
        }
    }
}

/// The dimensions of x reordered: dimension d of the result is dimension order[d] of x.
public func permute(_ x: Tensor, _ order: [Int]) -> Tensor {
    precondition(order.sorted() == Array(0..<x.rank), "permute: \(order) is not an ordering of \(x.rank) dimensions")
    let shape = order.map { x.shape[$0] }
    // Where one step along each result dimension moves in x.
    var sourceStrides = [Int](repeating: 1, count: x.rank)
    for d in stride(from: x.rank - 2, through: 0, by: -1) { sourceStrides[d] = sourceStrides[d + 1] * x.shape[d + 1] }
    let strides = order.map { sourceStrides[$0] }
    return Tensor(shape: shape) { out in
        guard out.count > 0 else { return }
        x.scalars.withUnsafeBufferPointer { x in
            var index = [Int](repeating: 0, count: shape.count)
            var source = 0
            for i in 0..<out.count {
                out[i] = x[source]
                // Odometer step: advance the last dimension, carrying into earlier ones.
                var d = shape.count - 1
                while d >= 0 {
                    index[d] += 1
                    source += strides[d]
                    if index[d] < shape[d] { break }
                    source -= strides[d] * shape[d]
                    index[d] = 0
                    d -= 1
                }
            }
        }
    }
}
