/// A 3-D scalar volume in NIfTI's voxel order: voxel `(i, j, k)` is `voxels[i + nx·(j + ny·k)]`, so `i`
/// varies fastest — the order of a `.nii` file and of nibabel's `get_fdata()[i, j, k]`.
public struct Volume: Sendable, Equatable {
    /// `[nx, ny, nz]`, each at least 1.
    public let shape: [Int]
    public var voxels: [Float]

    public init(shape: [Int], voxels: [Float]) {
        precondition(shape.count == 3 && shape.allSatisfy { $0 > 0 }, "a volume has three positive sizes, got \(shape)")
        precondition(voxels.count == shape[0] * shape[1] * shape[2], "shape \(shape) needs \(shape.reduce(1, *)) voxels, got \(voxels.count)")
        self.shape = shape
        self.voxels = voxels
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, voxels: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public subscript(i: Int, j: Int, k: Int) -> Float {
        get { voxels[i + shape[0] * (j + shape[1] * k)] }
        set { voxels[i + shape[0] * (j + shape[1] * k)] = newValue }
    }
}

/// A 2-D grayscale image, row-major with row 0 at the top: pixel `(row, column)` is
/// `pixels[row · width + column]` — the order of a PNG and of a NumPy `[H, W]` array.
public struct GrayImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [Float]

    public init(width: Int, height: Int, pixels: [Float]) {
        precondition(width > 0 && height > 0, "an image has positive sizes, got \(width)×\(height)")
        precondition(pixels.count == width * height, "\(width)×\(height) needs \(width * height) pixels, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public subscript(row: Int, column: Int) -> Float {
        get { pixels[row * width + column] }
        set { pixels[row * width + column] = newValue }
    }
}

/// Voxel indices → world coordinates (RAS+ millimetres for NIfTI): `world = A · [i, j, k, 1]`. Float64,
/// row-major 4×4 with the last row `0 0 0 1`.
public struct Affine: Sendable, Equatable {
    /// The 16 entries, row by row.
    public private(set) var entries: [Double]

    public init(rows: [[Double]]) {
        precondition(rows.count == 4 && rows.allSatisfy { $0.count == 4 }, "an affine is 4×4")
        entries = rows.flatMap { $0 }
    }

    /// The top three rows (the fourth is `0 0 0 1`).
    public init(rows3x4 rows: [[Double]]) {
        precondition(rows.count == 3 && rows.allSatisfy { $0.count == 4 }, "three rows of four expected")
        self.init(rows: rows + [[0, 0, 0, 1]])
    }

    public static let identity = Affine(rows: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])

    public static func diagonal(_ x: Double, _ y: Double, _ z: Double) -> Affine {
        Affine(rows: [[x, 0, 0, 0], [0, y, 0, 0], [0, 0, z, 0], [0, 0, 0, 1]])
    }

    public subscript(row: Int, column: Int) -> Double {
        get { entries[row * 4 + column] }
        set { entries[row * 4 + column] = newValue }
    }

    public var rows: [[Double]] { (0..<4).map { Array(entries[$0 * 4 ..< $0 * 4 + 4]) } }

    /// Length of the world step for one voxel along voxel axis `axis` (the norm of its column).
    func columnNorm(_ axis: Int) -> Double {
        (self[0, axis] * self[0, axis] + self[1, axis] * self[1, axis] + self[2, axis] * self[2, axis]).squareRoot()
    }
}
