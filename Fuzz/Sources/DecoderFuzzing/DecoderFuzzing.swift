// What the decoder fuzz targets share. Every target checks, for each input:
//   1. Decoding never crashes (AddressSanitizer watches memory) and nothing user-supplied reaches a trap.
//   2. Nothing is allocated past the limits: the limits here are small, and scripts/fuzz-decoders runs
//      libFuzzer with -malloc_limit_mb, so one allocation larger than the limits allow is a crash too;
//      decoded sizes are asserted within the limits.
//   3. What the header promised holds: InputCost (from the header alone) agrees with what DetectionInput
//      decoded and preprocessed — the same slices, no larger grid, no more decoded bytes; for DICOM, the
//      bound reserved before the files are parsed (InputHeader.locateDICOM) covers the cost found after.
//   4. Where an encoder exists, decode → encode → decode gives the same image, bit for bit.
// A violation traps, and libFuzzer keeps the input as a crash artifact.
import CFuzzerDriver
import Detection
import Glibc
import Imaging

/// Small limits, so that short inputs reach every one of them and an allocation past them stands out.
public let fuzzLimits: DetectionInput.Limits = {
    var limits = DetectionInput.Limits()
    limits.maximumElements = 1 << 16
    limits.png = PNGLimits(maximumWidth: 1024, maximumHeight: 1024, maximumPixels: 1 << 16)
    limits.nifti = NIfTILimits(maximumVoxels: 1 << 16, maximumBytes: 1 << 20)
    limits.maximumResampledVoxels = 1 << 18
    limits.dicom = DICOMLimits(maximumFiles: 16, maximumFrames: 64, maximumFramePixels: 1 << 14, maximumBytes: 1 << 20)
    limits.maximumSlices = 16
    return limits
}()

/// Checks invariant 3 for `bytes`, as plain and as preprocessed input (`dicom`: how a DICOM body was sent).
public func checkInputCost(_ bytes: [UInt8], dicom: DICOMRequest = DICOMRequest()) {
    for preprocessed in [false, true] {
        guard let cost = try? InputCost(bytes: bytes, preprocessed: preprocessed, limits: fuzzLimits, dicom: dicom) else { continue }
        if cost.format == .dicom {
            let bound = try? InputHeader.locateDICOM(bytes: bytes, preprocessed: preprocessed, limits: fuzzLimits, dicom: dicom)?.peakBound
            check(cost.peakBytes <= bound ?? 0, "InputCost's peak \(cost.peakBytes) is over the bound reserved before parsing, \(bound ?? 0)")
        }
        check(cost.outputSlices <= fuzzLimits.maximumSlices && cost.resampledVoxels <= fuzzLimits.maximumResampledVoxels,
              "InputCost passed a cost over the limits")
        guard let input = try? DetectionInput(bytes: bytes, preprocessed: preprocessed, limits: fuzzLimits, dicom: dicom) else { continue }
        check(input.sliceCount == cost.outputSlices, "InputCost said \(cost.outputSlices) slices, preprocessing made \(input.sliceCount)")
        check(input.slices.count == input.sliceCount * 160 * 160 && input.brain.count == input.slices.count, "slices of the wrong size")
        check(input.format == cost.format, "InputCost and DetectionInput disagree on the format")
        switch input.kind {
        case .volume(let geometry, _):
            check(geometry.inputShape == cost.volumeShape, "the volume's grid is not the one InputCost named")
            check(geometry.resampledShape.reduce(1, *) <= cost.resampledVoxels, "the 1 mm grid is larger than InputCost said")
            check(geometry.inputShape.reduce(1, *) * 4 <= cost.decodedBytes, "more decoded bytes than InputCost said")
        case .image(let geometry):
            check(cost.volumeShape == nil, "InputCost named a volume grid for a 2-D input")
            check(geometry.resampledShape.reduce(1, *) <= cost.resampledVoxels, "the image's grid is larger than InputCost said")
        case .slices:
            check(cost.volumeShape == nil, "InputCost named a volume grid for preprocessed slices")
        }
        check(cost.peakBytes >= cost.decodedBytes, "the peak estimate is below the decoded bytes")
    }
}

/// Traps with `message` unless `condition` holds (a precondition that also runs in optimised builds).
public func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { violated(message()) }
}

/// Reports a broken invariant and traps, so libFuzzer keeps the input.
public func violated(_ message: String) -> Never {
    // Standard error by its descriptor: Glibc's `stderr` is a global Swift 6 will not share.
    let line = Array("invariant violated: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    abort()
}

/// Float arrays compared bit for bit, so that NaN equals the same NaN.
public func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// Hands control to libFuzzer's driver with `testOneInput` (which the target also exports as
/// LLVMFuzzerTestOneInput, the name -sanitize=fuzzer's own main refers to); SwiftPM links executables
/// with their own entry point, so libFuzzer's main cannot be used.
public func runFuzzer(_ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
}

/// The input as bytes.
public func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    Array(UnsafeBufferPointer(start: data, count: size))
}
