// libFuzzer target for the NIfTI-1 reader on plain `.nii` bytes (DecoderFuzzing lists the invariants):
// the header agrees with the image, the image stays within the limits, and writing it back as float32
// and reading it again gives the same voxels and geometry.
import DecoderFuzzing
import Imaging

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    checkNIfTI(input, limits: fuzzLimits.nifti)
    checkInputCost(input)
    return 0
}

/// Decodes `input`, checks it against its header and the limits, and round-trips it.
func checkNIfTI(_ input: [UInt8], limits: NIfTILimits) {
    guard let image = try? NIfTI.decode(input, limits: limits) else { return }
    guard let header = try? NIfTI.header(input, limits: limits) else { violated("decoded without a header") }
    check(image.volume.shape == header.shape && image.dimensionCount == header.dimensionCount, "the image is not the header's")
    check(image.volume.voxels.count <= limits.maximumVoxels && header.byteCount <= limits.maximumBytes, "an image over the limits")
    guard let written = try? NIfTI.encode(image.volume, geometry: image.geometry, dimensionCount: image.dimensionCount,
                                          compressed: false) else {
        violated("a decoded image cannot be written")
    }
    guard let again = try? NIfTI.decode(written, limits: NIfTILimits()) else { violated("a written image does not read back") }
    check(sameBits(again.volume.voxels, image.volume.voxels) && again.volume.shape == image.volume.shape, "the voxels changed")
    let (geometry, back) = (image.geometry, again.geometry)
    check(sameBits(geometry.pixdim, back.pixdim) && sameBits(geometry.quaternion, back.quaternion)
          && sameBits(geometry.qoffset, back.qoffset) && sameBits(geometry.srow.flatMap { $0 }, back.srow.flatMap { $0 })
          && (geometry.qformCode, geometry.sformCode, geometry.xyztUnits) == (back.qformCode, back.sformCode, back.xyztUnits),
          "the geometry changed")
}

runFuzzer(fuzzOneInput)
