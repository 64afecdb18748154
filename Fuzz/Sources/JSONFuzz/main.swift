// libFuzzer target for the strict JSON parser (checkpoint manifests, safetensors headers): parsing never
// crashes or recurses past its depth bound, and whatever parses is written as JSON text that parses back
// to the same value.
import DecoderFuzzing
import JSON

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    if let value = try? JSONValue.parse(bytes(data, size)) {
        guard let again = try? JSONValue.parse(Array(value.jsonText.utf8)) else { violated("written JSON does not parse") }
        check(again == value, "the value changed through the writer")
    }
    return 0
}

runFuzzer(fuzzOneInput)
