// libFuzzer target for the PNG decoder (DecoderFuzzing lists the invariants): IHDR read alone agrees with
// the image, the image stays within the pixel limits, and encoding the decoded image and decoding it again
// gives the same samples.
import DecoderFuzzing
import Imaging

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    let limits = fuzzLimits.png
    if let image = try? PNG.decode(input, limits: limits) {
        guard let header = try? PNG.header(input, limits: limits) else { violated("decoded without a header") }
        check(image.width == header.width && image.height == header.height, "the image is not IHDR's")
        check(image.width * image.height <= limits.maximumPixels, "an image over the pixel limit")
        guard let encoded = try? PNG.encode(image) else { violated("a decoded image cannot be encoded") }
        guard let again = try? PNG.decode(encoded, limits: limits) else { violated("an encoded image does not decode") }
        check(again == image, "the image changed")
        _ = try? image.grayscale()
    }
    checkInputCost(input)
    return 0
}

runFuzzer(fuzzOneInput)
