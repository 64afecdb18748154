// libFuzzer target for the `.nii.gz` path (DecoderFuzzing lists the invariants). An input whose first
// byte is even is a plain `.nii` that the harness compresses: reading its gzip must give exactly what
// reading it plain gives, image or error. An odd first byte passes the rest on as `.nii.gz` bytes as
// they are (damaged streams, bombs, members), which must be refused or read within the limits.
import DecoderFuzzing
import Imaging
import ZlibCodec

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    guard let first = input.first else { return 0 }
    let rest = Array(input.dropFirst())
    let limits = fuzzLimits.nifti
    let compressed: [UInt8]
    if first % 2 == 0 {
        guard let gzip = try? Zlib.compress(rest, format: .gzip, level: Int32(first / 2 % 10)) else { violated("compressing failed") }
        compressed = gzip
        // (Plain bytes that start with gzip's magic are themselves read as gzip.)
        if !rest.starts(with: [0x1F, 0x8B]) {
            check(outcome(gzip, limits) == outcome(rest, limits), "the .nii.gz reads differently from the .nii it holds")
        }
    } else {
        compressed = rest
    }
    if let image = try? NIfTI.decode(compressed, limits: limits) {
        check(image.volume.voxels.count <= limits.maximumVoxels, "an image over the voxel limit")
    }
    checkInputCost(compressed)
    return 0
}

/// The image's voxels and geometry as bit patterns, or the error's text (NaN fields compare equal this way).
func outcome(_ bytes: [UInt8], _ limits: NIfTILimits) -> String {
    do {
        let image = try NIfTI.decode(bytes, limits: limits)
        let geometry = image.geometry
        let floats = image.volume.voxels + geometry.pixdim + geometry.quaternion + geometry.qoffset + geometry.srow.flatMap { $0 }
        return "\(image.volume.shape) \(image.dimensionCount) \(image.datatypeCode) \(geometry.qformCode) \(geometry.sformCode) "
            + "\(geometry.xyztUnits) \(floats.map(\.bitPattern))"
    } catch {
        return "\(error)"
    }
}

runFuzzer(fuzzOneInput)
