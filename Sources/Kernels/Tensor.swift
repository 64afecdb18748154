import Glibc

/// A dense, row-major (C order) Float32 tensor: the one value type every kernel reads and writes.
/// `shape` follows PyTorch's order (e.g. [N, C, H, W] for images, [B, N, dim] for token sequences),
/// so a tensor loaded from a checkpoint keeps the layout its state_dict entry has.
public struct Tensor: Sendable, Equatable {
    public private(set) var shape: [Int]
    public var scalars: [Float]

    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(shape.reduce(1, *) == scalars.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, scalars: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public var count: Int { scalars.count }
    public var rank: Int { shape.count }

    /// The same scalars under another shape with the same number of elements.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }
}

extension Tensor {
    /// A tensor whose scalars `initialize` writes, every one of them, without zero-filling first.
    init(shape: [Int], initializingWith initialize: (UnsafeMutableBufferPointer<Float>) -> Void) {
        let count = shape.reduce(1, *)
        let scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            adviseHugePages(UnsafeMutableRawBufferPointer(buffer))
            initialize(buffer)
            initialized = count
        }
        self.init(shape: shape, scalars: scalars)
    }
}

/// body with a pointer to the tensor's scalars, or nil for no tensor (an optional bias or residual).
func withOptionalPointer<Result>(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) -> Result) -> Result {
    withOptionalPointer(tensor?.scalars, body)
}

/// body with a pointer to the array's elements, or nil for no array (optional arguments of the C kernels).
func withOptionalPointer<Element, Result>(_ elements: [Element]?, _ body: (UnsafePointer<Element>?) -> Result) -> Result {
    guard let elements else { return body(nil) }
    return elements.withUnsafeBufferPointer { body($0.baseAddress) }
}

/// Asks Linux to back a large, not yet touched buffer with 2 MB pages. glibc serves allocations above
/// 32 MB with fresh mmap'd memory every time, and transparent huge pages are opt-in (madvise) on this
/// kind of machine: without the advice, writing a 52 MB output took 12 800 page faults and 43 ms, with
/// it 26 faults and 6 ms (docs/kernels.md). Only the 2 MB-aligned interior is advised; smaller buffers
/// are left alone.
private func adviseHugePages(_ buffer: UnsafeMutableRawBufferPointer) {
    let hugePage = 2 << 20
    guard buffer.count >= 2 * hugePage, let base = buffer.baseAddress else { return }
    let start = (Int(bitPattern: base) + hugePage - 1) / hugePage * hugePage
    let end = (Int(bitPattern: base) + buffer.count) / hugePage * hugePage
    _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_HUGEPAGE)
}
