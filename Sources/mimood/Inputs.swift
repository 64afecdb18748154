import Foundation
import Imaging

/// One input file made ready for the model: its 160×160 slices and what maps results back to it.
struct PreparedInput {
    enum Kind {
        /// A 2-D image; results go back onto its pixel grid.
        case image(SliceGeometry)
        /// A volume; results go back onto its voxel grid, written with the input's header geometry.
        case volume(SliceGeometry, NIfTIGeometry)
        /// Slices the user declared preprocessed (`--preprocessed`); results keep the input's shape.
        case slices(shape: [Int])
    }

    let kind: Kind
    let sliceCount: Int
    /// [sliceCount, 160, 160] in [0, 1], the model's frame (docs/preprocessing.md §7).
    let slices: [Float]
    /// Brain pixels of the slices, same layout.
    let brain: [Bool]

    /// Whether the input was 2-D, so that its token heatmap is [h, w] rather than [slices, h, w].
    var isTwoDimensional: Bool {
        switch kind {
        case .image: true
        case .volume: false
        case .slices(let shape): shape.count == 2
        }
    }

    /// Reads `.npy` (2-D slice or 3-D volume), PNG (2-D slice) or NIfTI-1 (`.nii`, `.nii.gz`), told apart
    /// by their magic bytes (gzip included), and preprocesses it as docs/preprocessing.md and
    /// docs/imaging.md say. With `preprocessed`, `.npy` and PNG inputs are taken as 160×160 slices in
    /// [0, 1] and passed to the model unchanged.
    static func load(path: String, preprocessed: Bool) throws -> PreparedInput {
        let bytes = try contents(of: path)
        if bytes.starts(with: [0x93] + Array("NUMPY".utf8)) {
            let array = try NPY.decode(bytes)
            if preprocessed { return try modelSlices(array) }
            if let image = array.image() { return try PreparedInput(image: image) }
            if let volume = array.volume() {
                // A bare array has no geometry: voxel axes are taken as RAS at 1 mm (docs/imaging.md).
                return try PreparedInput(volume: volume, geometry: NIfTIGeometry(affine: .identity))
            }
            throw CLIError("a .npy input must be a 2-D slice or a 3-D volume, got shape \(array.shape)"
                           + " (a stack of preprocessed slices needs --preprocessed)")
        }
        if bytes.starts(with: [0x89] + Array("PNG".utf8)) {
            let image = try PNG.decode(bytes).grayscale()
            if preprocessed { return try modelSlices(NPYArray(shape: [image.height, image.width], values: image.pixels)) }
            return try PreparedInput(image: image)
        }
        guard !preprocessed else {
            throw CLIError("--preprocessed takes .npy or PNG slices; a NIfTI volume is always preprocessed from its voxel grid")
        }
        do {
            let nifti = try NIfTI.decode(bytes)
            return try PreparedInput(volume: nifti.volume, geometry: nifti.geometry)
        } catch NIfTIError.badHeaderSize {
            // Neither magic matched and no NIfTI header either: say what is accepted, whatever the name claims.
            throw CLIError("not a .npy, PNG or NIfTI-1 (.nii, .nii.gz) file: its first bytes match none of them")
        }
    }

    private init(kind: Kind, sliceCount: Int, slices: [Float], brain: [Bool]) {
        (self.kind, self.sliceCount, self.slices, self.brain) = (kind, sliceCount, slices, brain)
    }

    private init(image: GrayImage) throws {
        let prepared = try Preprocessing.prepareImage(image)
        self.init(kind: .image(prepared.geometry), sliceCount: 1, slices: prepared.slices, brain: prepared.brain)
    }

    private init(volume: Volume, geometry: NIfTIGeometry) throws {
        let prepared = try Preprocessing.preprocess(volume, affine: try geometry.affine())
        self.init(kind: .volume(prepared.geometry, geometry), sliceCount: prepared.sliceCount,
                  slices: prepared.slices, brain: prepared.brain)
    }

    /// `--preprocessed`: [160, 160], [N, 160, 160] or [N, 1, 160, 160], each slice checked by the 2-D
    /// rule for a preprocessed 160×160 image (finite, in [0, 1]; brain = pixels > 0).
    private static func modelSlices(_ array: NPYArray) throws -> PreparedInput {
        let size = Preprocessing.sliceSize, area = size * size
        let accepted = [[size, size], [array.shape.first ?? 0, size, size], [array.shape.first ?? 0, 1, size, size]]
        guard accepted.contains(array.shape), array.values.count >= area else {
            throw CLIError("--preprocessed takes slices of \(size)×\(size): shape [\(size), \(size)], [N, \(size), \(size)] "
                           + "or [N, 1, \(size), \(size)], got \(array.shape)")
        }
        let count = array.values.count / area
        var slices: [Float] = [], brain: [Bool] = []
        for index in 0..<count {
            let image = GrayImage(width: size, height: size, pixels: Array(array.values[index * area ..< (index + 1) * area]))
            do {
                let prepared = try Preprocessing.prepareImage(image)
                slices += prepared.slices
                brain += prepared.brain
            } catch {
                throw CLIError("slice \(index): \(error)")
            }
        }
        return PreparedInput(kind: .slices(shape: array.shape), sliceCount: count, slices: slices, brain: brain)
    }

    /// The file's bytes, or an error saying why there are none.
    static func contents(of path: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CLIError("no such file") }
        guard !isDirectory.boolValue else { throw CLIError("a directory, not an image file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("the file cannot be read (permissions?)") }
        return [UInt8](data)
    }

    /// The file name without its image extension: `sub-01_T2w.nii.gz` → `sub-01_T2w`.
    static func stem(of path: String) -> String {
        var name = URL(fileURLWithPath: path).lastPathComponent
        for suffix in [".nii.gz", ".nii", ".npy", ".png"] where name.lowercased().hasSuffix(suffix) {
            name.removeLast(suffix.count)
            break
        }
        return name
    }
}
