import Kernels
@testable import Models

/// The parity checkpoint's engine, loaded once for all tests of the process.
enum ParityModels {
    private static let loaded = Result { try Engine(Checkpoint(directory: Fixtures.checkpoint.path)) }

    static func engine() throws -> Engine { try loaded.get() }
}

extension NumpyArray {
    /// An integer array [B, ..., ] as B rows of the remaining elements.
    var rows: [[Int]] {
        let size = shape.dropFirst().reduce(1, *)
        return (0..<shape[0]).map { ints[$0 * size ..< ($0 + 1) * size].map { $0 } }
    }
}
