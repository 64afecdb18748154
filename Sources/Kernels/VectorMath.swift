// exp and erf on 16 floats at a time, for the kernels whose time goes into them (softmax, SiLU, GELU,
// sigmoid): libm's expf and erff take one value per call and cost several times a whole GEMM row.
// Written with Swift's SIMD types, which the compiler lowers to whatever vector width the target has.

typealias Vector = SIMD16<Float>

/// e^x to within about 2 ulp: e^x = 2^n · e^r with n = round(x·log₂e) and r = x − n·ln 2 in [−ln2/2, ln2/2]
/// (ln 2 split in a high part exact in Float and a low part, so r keeps its precision), e^r by its Taylor
/// series to r⁷ (remainder below 6·10⁻⁹ on that interval), 2^n built in the exponent bits. Inputs below
/// −87.3 (where e^x leaves the normal Float range), −∞ included, give 0; inputs above 88.3 give e^88.3.
/// Only adds, multiplies, compares and bit operations, so it vectorises even for baseline x86-64 (SSE2),
/// where rounding functions would be one libm call per lane.
@inline(__always)
func exp(_ x: Vector) -> Vector {
    let (lowest, highest): (Float, Float) = (-87.3, 88.3)
    let (log2e, ln2High, ln2Low): (Float, Float, Float) = (1.442_695_04, 0.693_359_375, -2.121_944_4e-4)
    let clamped = x.replacing(with: lowest, where: x .< lowest).replacing(with: highest, where: x .> highest)
    // Adding 1.5·2²³ rounds to an integer (ties to even) and leaves it in the low bits of the sum's pattern.
    let shifter: Float = 12_582_912
    let shifted = clamped * log2e + shifter
    let n = shifted - shifter
    let r = (clamped - n * ln2High) - n * ln2Low
    // Horner form of 1 + r + r²/2! + … + r⁷/7!
    var p = r * Float(1.0 / 5040) + Float(1.0 / 720)
    p = p * r + Float(1.0 / 120)
    p = p * r + Float(1.0 / 24)
    p = p * r + Float(1.0 / 6)
    p = p * r + Float(0.5)
    p = p * r + Float(1)
    p = p * r + Float(1)
    let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000  // n, as the bits of 1.5·2²³ + n
    let scale = unsafeBitCast((integer &+ 127) &<< 23, to: Vector.self)
    return (p * scale).replacing(with: 0, where: x .< lowest)
}

/// erf(x) by Abramowitz and Stegun 7.1.26: 1 − t·(a1 + t·(a2 + t·(a3 + t·(a4 + t·a5))))·e^(−x²) with
/// t = 1/(1 + p·|x|), odd in x. The formula is within 1.5·10⁻⁷ of erf; evaluated in Float, within 5·10⁻⁷
/// (the subtraction from 1 loses a few bits near 0, where GELU multiplies the error by x/2 anyway).
@inline(__always)
func erf(_ x: Vector) -> Vector {
    let a = x.replacing(with: -x, where: x .< 0)
    let t = 1 / (1 + Float(0.327_591_1) * a)
    var p = t * Float(1.061_405_429) + Float(-1.453_152_027)
    p = p * t + Float(1.421_413_741)
    p = p * t + Float(-0.284_496_736)
    p = p * t + Float(0.254_829_592)
    let magnitude = 1 - p * t * exp(-a * a)
    return magnitude.replacing(with: -magnitude, where: x .< 0)
}

/// output[i] = f(input[i]) for i in 0..<count, 16 at a time; the last partial vector is padded with zeros,
/// so every element goes through the same vector code.
@inline(__always)
func mapVectors(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int,
                _ f: (Vector) -> Vector) {
    var i = 0
    while i + Vector.scalarCount <= count {
        let y = f(UnsafeRawPointer(input + i).loadUnaligned(as: Vector.self))
        UnsafeMutableRawPointer(output + i).storeBytes(of: y, as: Vector.self)
        i += Vector.scalarCount
    }
    guard i < count else { return }
    var tail = Vector()
    for j in i..<count { tail[j - i] = input[j] }
    let y = f(tail)
    for j in i..<count { output[j] = y[j - i] }
}
