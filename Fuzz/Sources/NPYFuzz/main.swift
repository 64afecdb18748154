// libFuzzer target for the `.npy` reader (DecoderFuzzing lists the invariants): the header agrees with
// the array, the array stays within the element limit, and writing it back as float32 and reading it
// again gives the same shape and values.
import DecoderFuzzing
import Imaging

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = bytes(data, size)
    let limit = fuzzLimits.maximumElements
    if let array = try? NPY.decode(input, maximumElements: limit) {
        guard let header = try? NPY.header(input, maximumElements: limit) else { violated("decoded without a header") }
        check(array.shape == header.shape && array.values.count == header.elementCount, "the array is not the header's")
        check(array.values.count <= limit, "an array over the element limit")
        let written = NPY.encode(shape: array.shape, float32: array.values)
        guard let again = try? NPY.decode(written, maximumElements: limit) else { violated("a written array does not read back") }
        check(again.shape == array.shape && sameBits(again.values, array.values), "the array changed")
    }
    checkInputCost(input)
    return 0
}

runFuzzer(fuzzOneInput)
