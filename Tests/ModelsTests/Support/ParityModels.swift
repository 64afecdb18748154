import Kernels
@testable import Models

/// The parity checkpoint's engine, loaded once for all tests of the process.
enum ParityModels {
    static let checkpoint: Checkpoint = {
        do { return try Checkpoint(directory: Fixtures.checkpoint.path) } catch { fatalError("parity checkpoint: \(error)") }
    }()

    static let engine: Engine = {
        do { return try Engine(checkpoint) } catch { fatalError("parity engine: \(error)") }
    }()
}

extension NumpyArray {
    /// An integer array [B, ..., ] as B rows of the remaining elements.
    var rows: [[Int]] {
        let size = shape.dropFirst().reduce(1, *)
        return (0..<shape[0]).map { ints[$0 * size ..< ($0 + 1) * size].map { $0 } }
    }
}
