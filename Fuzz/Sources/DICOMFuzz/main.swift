// libFuzzer target for DICOM input: one Part 10 file (single- or multi-frame), a ZIP of files, or — when
// the input starts with "--" — a multipart/related body whose boundary is the rest of its first line.
// Invariants (DecoderFuzzing): DCMTK behind CDicom, the ZIP and multipart readers and the series assembly
// never crash or allocate past the limits; InputCost, from the headers, agrees with what was decoded.
import DecoderFuzzing
import Detection

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    var request = DICOMRequest()
    if input.starts(with: Array("--".utf8)), let lineEnd = input.firstIndex(of: 13) {
        request.multipartBoundary = String(decoding: input[2..<lineEnd], as: UTF8.self)
    }
    checkInputCost(input, dicom: request)
    return 0
}

runFuzzer(fuzzOneInput)
