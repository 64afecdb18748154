import Foundation
import Imaging

/// One input file made ready for the model: its 160×160 slices and what maps results back to it.
struct PreparedInput {
    enum Kind {
        /// A 2-D image; results go back onto its pixel grid.
        case image
        /// A volume; results go back onto its voxel grid, written with `geometry` (the input's affine).
        case volume(NIfTIGeometry)
    }

    let kind: Kind
    let preprocessed: PreprocessedVolume

    /// Reads `.npy` (2-D slice or 3-D volume) or NIfTI-1 (`.nii`, `.nii.gz`), told apart by their magic
    /// bytes, and preprocesses it as docs/preprocessing.md and docs/imaging.md say.
    static func load(path: String) throws -> PreparedInput {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CLIError("cannot read the file (missing or not readable)")
        }
        let bytes = [UInt8](data)
        if bytes.starts(with: [0x93] + Array("NUMPY".utf8)) {
            let array = try NPY.decode(bytes)
            if let image = array.image() {
                return PreparedInput(kind: .image, preprocessed: try Preprocessing.prepareImage(image))
            }
            if let volume = array.volume() {
                // A bare array has no geometry: voxel axes are taken as RAS at 1 mm (docs/imaging.md).
                let preprocessed = try Preprocessing.preprocess(volume, affine: .identity)
                return PreparedInput(kind: .volume(NIfTIGeometry(affine: .identity)), preprocessed: preprocessed)
            }
            throw CLIError("a .npy input must be a 2-D slice or a 3-D volume, got shape \(array.shape)")
        }
        let nifti = try NIfTI.decode(bytes)
        let preprocessed = try Preprocessing.preprocess(nifti.volume, affine: nifti.geometry.affine())
        return PreparedInput(kind: .volume(nifti.geometry), preprocessed: preprocessed)
    }

    /// The file name without its image extension: `sub-01_T2w.nii.gz` → `sub-01_T2w`.
    static func stem(of path: String) -> String {
        var name = URL(fileURLWithPath: path).lastPathComponent
        for suffix in [".nii.gz", ".nii", ".npy"] where name.lowercased().hasSuffix(suffix) {
            name.removeLast(suffix.count)
            break
        }
        return name
    }
}
