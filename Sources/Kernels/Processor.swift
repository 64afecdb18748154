import CKernels
import Glibc

/// What /proc/cpuinfo says of this machine's processor, and the nominal peak Float32 FLOP/s that follows
/// from it: cores × FMA pipes × vector lanes × 2 FLOP per FMA × clock. `mimood bench` and the kernel
/// benchmark quote their GFLOP/s as a fraction of it (docs/kernels.md measures the real clock).
public struct Processor: Sendable {
    public let model: String
    public let megahertz: Double
    public let flags: Set<String>

    /// FMA pipes per core on AMD Zen 2–5 and Intel Haswell and later (vendor optimisation guides).
    public let fmaPipes = 2

    public static let current = Processor()

    private init() {
        var model = "unknown", megahertz = 0.0, flags = Set<String>()
        if let file = fopen("/proc/cpuinfo", "r") {
            defer { fclose(file) }
            var buffer = [CChar](repeating: 0, count: 8192)
            while fgets(&buffer, Int32(buffer.count), file) != nil {
                let line = String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: " \t") }
                guard parts.count == 2 else { continue }
                switch parts[0] {
                case "model name": model = parts[1]
                case "cpu MHz": megahertz = Double(parts[1]) ?? 0
                case "flags": flags = Set(parts[1].split(separator: " ").map(String.init))
                default: break
                }
            }
        }
        (self.model, self.megahertz, self.flags) = (model, megahertz, flags)
    }

    /// Float32 lanes of the widest vector unit: 16 with AVX-512, 8 with AVX2, else 4.
    public var floatLanes: Int { flags.contains("avx512f") ? 16 : flags.contains("avx2") ? 8 : 4 }

    public var onlineCores: Int { sysconf(Int32(_SC_NPROCESSORS_ONLN)) }

    /// cores × pipes × lanes × 2 × nominal GHz, in GFLOP/s.
    public func nominalPeakGFLOPS(cores: Int) -> Double {
        Double(cores * fmaPipes * floatLanes * 2) * megahertz / 1000
    }

    /// The multiply-add rate the kernels' vector code reaches with `threads` threads at once, in GFLOP/s:
    /// each runs register-only chains (`ck_multiply_add_loop`, the copy this CPU runs); best of 3 rounds of
    /// about 50 ms. The nominal peak assumes 2 full-width FMA pipes; this is what the machine gives now
    /// (a Zen 4 core, for one, runs one 16-wide FMA per cycle, where a Zen 5 core runs two).
    public func measuredPeakGFLOPS(threads: Int) -> Double {
        let iterations = 1 << 24
        var best = Duration.seconds(Int64.max)
        for _ in 0..<3 {
            let elapsed = ContinuousClock().measure {
                Threads.withCount(threads) {
                    parallelRanges(threads) { _ in
                        // Never 42 in practice: the comparison keeps the loop from being optimised away.
                        if ck_multiply_add_loop(iterations, 1) == 42 { print("42") }
                    }
                }
            }
            best = min(best, elapsed)
        }
        let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) * 1e-18
        return ck_multiply_add_flops(iterations) * Double(threads) / seconds / 1e9
    }
}

private extension Substring {
    func trimmingCharacters(in characters: String) -> String {
        String(drop { characters.contains($0) }.reversed().drop { characters.contains($0) }.reversed())
    }
}

/// The copy of the C kernels (CKernels) this process runs, "avx512f", "avx2" or "sse2", for logs.
public var vectorInstructionSet: String { String(cString: ck_instruction_set()) }
