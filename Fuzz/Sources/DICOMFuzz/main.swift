// libFuzzer target for DICOM input: one Part 10 file (single- or multi-frame), a ZIP of files, or — when
// the input starts with "--" — a multipart/related body whose boundary is the rest of its first line.
// Invariants (DecoderFuzzing): DCMTK behind CDicom, the ZIP and multipart readers and the series assembly
// never crash or allocate past the limits; InputCost, from the headers, agrees with what was decoded. Then
// the DICOM answer is written from what the headers gave (UIDs, positions, sizes): a Part 10 file or an
// error, never a crash.
import DecoderFuzzing
import Detection
import Imaging

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    var request = DICOMRequest()
    if input.starts(with: Array("--".utf8)), let lineEnd = input.firstIndex(of: 13) {
        request.multipartBoundary = String(decoding: input[2..<lineEnd], as: UTF8.self)
    }
    checkInputCost(input, dicom: request)
    if let source = (try? DetectionInput(bytes: input, preprocessed: false, limits: fuzzLimits, dicom: request))?.dicomSource {
        let voxels = source.rows * source.columns * source.frameCount
        let written = [try? source.parametricMap((0..<voxels).map { Float($0 % 7) / 7 }, softwareVersion: "fuzz"),
                       try? source.segmentation((0..<voxels).map { $0 % 3 == 0 }, softwareVersion: "fuzz")]
        for file in written.compactMap({ $0 }) {
            check(file.count > 132 && file[128..<132].elementsEqual("DICM".utf8), "a DICOM answer is not a Part 10 file")
        }
    }
    return 0
}

runFuzzer(fuzzOneInput)
