// Kernel benchmarks: this machine's peak FLOP/s, GEMM GFLOP/s per shape and per BLAS library, the choice
// between BLAS threads and our own parallel loops, and timings of the public kernels.
//
//   swift build -c release --product KernelsBenchmark
//   .build/release/KernelsBenchmark [peak] [gemm] [strategy] [kernels]     (all four when none is named)
//
// docs/kernels.md records the results and how to read them. Environment: OPENBLAS_CORETYPE picks
// OpenBLAS's kernels (for the linked library and for every OpenBLAS loaded here); BLAS_LIBRARIES, a
// colon-separated list of shared libraries, replaces the default candidates of the gemm section.
import Dispatch
import Kernels

import Glibc

// MARK: - Timing

/// Seconds of the fastest of `repeats` rounds, each round running `body` until ~`minimum` seconds pass.
func bestTime(repeats: Int = 3, minimum: Double = 0.2, _ body: () -> Void) -> Double {
    body()  // warm-up: page faults, library initialisation, thread start-up
    var best = Double.infinity
    for _ in 0..<repeats {
        let start = now()
        var runs = 0
        repeat {
            body()
            runs += 1
        } while now() - start < minimum
        best = min(best, (now() - start) / Double(runs))
    }
    return best
}

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
}

/// A line of output, flushed at once so a long run into a pipe or file shows its progress.
func emit(_ line: String) {
    print(line)
    fflush(nil)
}

func format(_ value: Double, _ decimals: Int = 1) -> String {
    var scaled = (value * pow(10, Double(decimals))).rounded() / pow(10, Double(decimals))
    if scaled == 0 { scaled = 0 }
    return "\(scaled)"
}

func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

func loadAverage() -> String {
    guard let file = fopen("/proc/loadavg", "r") else { return "?" }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 128)
    guard fgets(&line, 128, file) != nil else { return "?" }
    return String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func minorPageFaults() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_minflt
}


// MARK: - Peak FLOP/s

/// One core's FMA throughput: 12 independent chains of 16-wide FMAs (more than the FMA latency of
/// 4 cycles times 2 pipes, so the pipes never wait), compiled for this CPU (-march=native).
@inline(never)
func peak() {
    let processor = Processor.current
    let (model, megahertz, flags) = (processor.model, processor.megahertz, processor.flags)
    let cores = Processor.current.onlineCores
    let lanes = processor.floatLanes
    let hasFMA = flags.contains("fma")
    let pipes = processor.fmaPipes
    emit("== Peak FLOP/s: \(model), \(cores) cores, nominal \(format(megahertz, 0)) MHz, load average \(loadAverage())")
    emit("   vector: \(lanes) Float lanes (\(lanes == 16 ? "AVX-512" : lanes == 8 ? "AVX2" : "SSE")), FMA \(hasFMA ? "yes" : "no"), \(pipes) FMA pipes per core (assumed)")
    let nominal = processor.nominalPeakGFLOPS(cores: cores)
    emit("   theoretical at nominal clock: \(cores) cores × \(pipes) pipes × \(lanes) lanes × 2 FLOP × \(format(megahertz / 1000, 3)) GHz = \(format(nominal, 0)) GFLOP/s")
    let single = processor.measuredPeakGFLOPS(threads: 1)
    emit("   measured multiply-add loop, 1 thread: \(format(single, 0)) GFLOP/s = \(format(single / Double(pipes * lanes * 2), 2)) GHz × \(pipes) pipes × \(lanes) lanes × 2 (kernels: \(vectorInstructionSet))")
    emit("   measured multiply-add loop, \(cores) threads: \(format(processor.measuredPeakGFLOPS(threads: cores), 0)) GFLOP/s (a busy neighbour process lowers this)")
}

// MARK: - BLAS libraries loaded at run time

typealias SGEMMFunction = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
                                          UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void

/// A CBLAS library opened in a link-map namespace of its own, with its thread-count setter and its own
/// name for the kernels it runs. A plain dlopen would not do: the OpenBLAS that Kernels links is loaded
/// globally, and its exported symbols (sgemm_, gotoblas) would interpose on those of the library under test.
struct BLASLibrary: Sendable {
    let path: String
    let sgemmFunction: SGEMMFunction
    let setThreads: @Sendable (Int) -> Void
    let kernels: String

    init?(path: String) {
        guard let handle = openInNewNamespace(path), let sgemm = dlsym(handle, "cblas_sgemm") else { return nil }
        self.path = path
        sgemmFunction = unsafeBitCast(sgemm, to: SGEMMFunction.self)
        if let set = dlsym(handle, "openblas_set_num_threads"), let name = dlsym(handle, "openblas_get_corename") {
            let setter = unsafeBitCast(set, to: (@convention(c) (Int32) -> Void).self)
            setThreads = { setter(Int32($0)) }
            kernels = "OpenBLAS core " + String(cString: unsafeBitCast(name, to: (@convention(c) () -> UnsafePointer<CChar>).self)())
        } else if let set = dlsym(handle, "bli_thread_set_num_threads"), let query = dlsym(handle, "bli_arch_query_id"),
                  let name = dlsym(handle, "bli_arch_string") {
            let setter = unsafeBitCast(set, to: (@convention(c) (Int) -> Void).self)
            setThreads = { setter($0) }
            let id = unsafeBitCast(query, to: (@convention(c) () -> Int32).self)()
            kernels = "BLIS arch " + String(cString: unsafeBitCast(name, to: (@convention(c) (Int32) -> UnsafePointer<CChar>).self)(id))
        } else {
            setThreads = { _ in }
            kernels = "unknown"
        }
    }

    /// Row-major C = op(A)·op(B) (beta 0).
    func sgemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
               a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        sgemmFunction(101, transposeA ? 112 : 111, transposeB ? 112 : 111, Int32(m), Int32(n), Int32(k), 1,
                      a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }
}

/// glibc's dlmopen(LM_ID_NEWLM, path, RTLD_NOW), which Swift's Glibc module does not declare.
func openInNewNamespace(_ path: String) -> UnsafeMutableRawPointer? {
    typealias DLMOpen = @convention(c) (Int, UnsafePointer<CChar>, Int32) -> UnsafeMutableRawPointer?
    guard let symbol = dlsym(nil, "dlmopen") else { return nil }
    let newNamespace = -1  // LM_ID_NEWLM
    return unsafeBitCast(symbol, to: DLMOpen.self)(newNamespace, path, RTLD_NOW)
}

let debianLibraries = "/usr/lib/x86_64-linux-gnu/"
let defaultCandidates = ["openblas-pthread/libopenblas.so.0", "openblas-openmp/libopenblas.so.0",
                         "blis-pthread/libblis.so.4", "blis-openmp/libblis.so.4"].map { debianLibraries + $0 }

/// One GEMM of the models: C[m, n] = op(A)·op(B) with the operand layouts our kernels pass to BLAS.
struct GEMMShape {
    let name: String
    let transposeA, transposeB: Bool
    let m, n, k: Int
    var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
}

let gemmShapes: [GEMMShape] = [
    // Transformer linears, y = x·Wᵀ: M = B·400 token rows.
    GEMMShape(name: "linear 128→384, B=1", transposeA: false, transposeB: true, m: 400, n: 384, k: 128),
    GEMMShape(name: "linear 128→384, B=16", transposeA: false, transposeB: true, m: 6400, n: 384, k: 128),
    GEMMShape(name: "linear 128→384, B=128", transposeA: false, transposeB: true, m: 51200, n: 384, k: 128),
    GEMMShape(name: "linear 128→512, B=16", transposeA: false, transposeB: true, m: 6400, n: 512, k: 128),
    GEMMShape(name: "linear 512→128, B=16", transposeA: false, transposeB: true, m: 6400, n: 128, k: 512),
    GEMMShape(name: "linear 512→1536, B=16 (paper)", transposeA: false, transposeB: true, m: 6400, n: 1536, k: 512),
    GEMMShape(name: "linear 2048→512, B=16 (paper)", transposeA: false, transposeB: true, m: 6400, n: 512, k: 2048),
    // Attention per (sequence, head): scores q·kᵀ and scores·v.
    GEMMShape(name: "attention q·kᵀ 400×32·32×400", transposeA: false, transposeB: true, m: 400, n: 400, k: 32),
    GEMMShape(name: "attention p·v 400×400·400×32", transposeA: false, transposeB: false, m: 400, n: 32, k: 400),
    // Convolutions as im2col: W [Cout, Cin·9] · columns [Cin·9, pixels].
    GEMMShape(name: "conv 32→32 3×3 at 160²", transposeA: false, transposeB: false, m: 32, n: 25600, k: 288),
    GEMMShape(name: "conv 64→64 3×3 at 80²", transposeA: false, transposeB: false, m: 64, n: 6400, k: 576),
    GEMMShape(name: "conv 128→128 3×3 at 160² (paper)", transposeA: false, transposeB: false, m: 128, n: 25600, k: 1152),
    GEMMShape(name: "conv 512→512 3×3 at 20² (paper)", transposeA: false, transposeB: false, m: 512, n: 400, k: 4608),
]

/// Operands for a shape, stored the way the flags say (filled with small values; GEMM speed does not
/// depend on them).
func operands(_ shape: GEMMShape) -> (a: [Float], b: [Float], c: [Float]) {
    let a = (0 ..< shape.m * shape.k).map { Float($0 % 7) * 0.1 }
    let b = (0 ..< shape.k * shape.n).map { Float($0 % 5) * 0.1 }
    return (a, b, [Float](repeating: 0, count: shape.m * shape.n))
}

func runGEMM(_ library: BLASLibrary, _ shape: GEMMShape, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
             _ c: UnsafeMutablePointer<Float>) {
    library.sgemm(transposeA: shape.transposeA, transposeB: shape.transposeB, m: shape.m, n: shape.n, k: shape.k,
                  a: a, lda: shape.transposeA ? shape.m : shape.k, b: b, ldb: shape.transposeB ? shape.k : shape.n,
                  c: c, ldc: shape.n)
}

func gemmTable() {
    let paths = getenv("BLAS_LIBRARIES").map { String(cString: $0).split(separator: ":").map(String.init) } ?? defaultCandidates
    let coreType = getenv("OPENBLAS_CORETYPE").map { String(cString: $0) } ?? "(unset)"
    emit("== GEMM GFLOP/s (best of 3 rounds of ≥0.2 s; OPENBLAS_CORETYPE=\(coreType); load average \(loadAverage()))")
    let libraries = paths.compactMap { path -> BLASLibrary? in
        guard let library = BLASLibrary(path: path) else { emit("   cannot load \(path)"); return nil }
        return library
    }
    for library in libraries { emit("   \(library.path): \(library.kernels)") }
    let threadCounts = [1, Processor.current.onlineCores]
    var header = padded("   shape", 40)
    for library in libraries {
        let short = library.path.split(separator: "/").dropLast().last.map(String.init) ?? library.path
        for threads in threadCounts { header += padded(" \(short) t\(threads)", 20) }
    }
    emit(header)
    for shape in gemmShapes {
        var (a, b, c) = operands(shape)
        var line = padded("   \(shape.name)", 40)
        for library in libraries {
            for threads in threadCounts {
                library.setThreads(threads)
                let seconds = a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        c.withUnsafeMutableBufferPointer { c in
                            bestTime { runGEMM(library, shape, a.baseAddress!, b.baseAddress!, c.baseAddress!) }
                        }
                    }
                }
                line += padded(" \(format(shape.flops / seconds / 1e9))", 20)
            }
        }
        emit(line)
        _ = (a.count, b.count)
        a = []; b = []
    }
}

// MARK: - BLAS threads or our own threads

/// Either BLAS splits each product over the cores, or BLAS runs single-threaded and we run independent
/// products (batch items, heads, halves of the rows) concurrently. Same work, both ways.
func strategy() {
    guard let library = BLASLibrary(path: debianLibraries + "openblas-pthread/libopenblas.so.0") else {
        emit("== strategy: OpenBLAS (pthread) not found"); return
    }
    let cores = Processor.current.onlineCores
    emit("== BLAS threads vs our threads, \(library.kernels), \(cores) cores, load average \(loadAverage())")
    emit("   work                                      BLAS \(cores) threads, items in turn    BLAS 1 thread, \(cores) items at once   (GFLOP/s)")
    struct Work { let name: String; let shape: GEMMShape; let items: Int }
    let works = [
        Work(name: "linear 128→384, B=8 as 2 row halves", shape: GEMMShape(name: "", transposeA: false, transposeB: true, m: 1600, n: 384, k: 128), items: 2),
        Work(name: "linear 128→384, B=128 as 2 row halves", shape: GEMMShape(name: "", transposeA: false, transposeB: true, m: 25600, n: 384, k: 128), items: 2),
        Work(name: "attention q·kᵀ, 8 sequences × 4 heads", shape: GEMMShape(name: "", transposeA: false, transposeB: true, m: 400, n: 400, k: 32), items: 32),
        Work(name: "attention p·v, 8 sequences × 4 heads", shape: GEMMShape(name: "", transposeA: false, transposeB: false, m: 400, n: 32, k: 400), items: 32),
        Work(name: "conv 64→64 at 80², 4 images", shape: GEMMShape(name: "", transposeA: false, transposeB: false, m: 64, n: 6400, k: 576), items: 4),
        Work(name: "conv 128→128 at 160², 1 image as 2 halves", shape: GEMMShape(name: "", transposeA: false, transposeB: false, m: 128, n: 12800, k: 1152), items: 2),
        Work(name: "conv 512→512 at 20², 2 images", shape: GEMMShape(name: "", transposeA: false, transposeB: false, m: 512, n: 400, k: 4608), items: 2),
    ]
    for work in works {
        let (a, b, _) = operands(work.shape)
        let outputs = UnsafeMutablePointer<Float>.allocate(capacity: work.items * work.shape.m * work.shape.n)
        defer { outputs.deallocate() }
        let flops = work.shape.flops * Double(work.items)
        let (blasThreads, ourThreads) = a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                let (a, b) = (a.baseAddress!, b.baseAddress!)
                let size = work.shape.m * work.shape.n
                library.setThreads(cores)
                let blasThreads = bestTime {
                    for item in 0..<work.items { runGEMM(library, work.shape, a, b, outputs + item * size) }
                }
                library.setThreads(1)
                nonisolated(unsafe) let (sharedA, sharedB, sharedOutputs) = (a, b, outputs)
                let ourThreads = bestTime {
                    DispatchQueue.concurrentPerform(iterations: cores) { worker in
                        for item in stride(from: worker, to: work.items, by: cores) {
                            runGEMM(library, work.shape, sharedA, sharedB, sharedOutputs + item * size)
                        }
                    }
                }
                return (blasThreads, ourThreads)
            }
        }
        emit("   \(padded(work.name, 42))\(padded(format(flops / blasThreads / 1e9), 35))\(format(flops / ourThreads / 1e9))")
    }
}

// MARK: - The kernels themselves

func kernels() {
    emit("== Kernels (ms per call with Threads.count = 1 and \(Processor.current.onlineCores); page faults of one call), \(blasDescription), load average \(loadAverage())")
    func random(_ shape: [Int]) -> Tensor {
        var state: UInt32 = 12345
        return Tensor(shape: shape, scalars: (0 ..< shape.reduce(1, *)).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(state >> 8) / Float(1 << 24) - 0.5
        })
    }
    let image128 = random([1, 128, 160, 160])
    let weight128 = random([128, 128, 3, 3]), bias128 = random([128])
    let image512 = random([2, 512, 20, 20]), weight512 = random([512, 512, 3, 3]), bias512 = random([512])
    let image32 = random([1, 32, 160, 160]), weight32 = random([32, 32, 3, 3]), bias32 = random([32])
    let image64 = random([4, 64, 40, 40]), weight64 = random([64, 64, 3, 3]), bias64 = random([64])
    let tokens = random([16, 400, 128])
    let qkvWeight = LinearWeight(random([384, 128])), qkvBias = random([384])
    let qkv = random([16, 400, 384]), hidden = random([16, 400, 512])
    let norm = random([128]), codebook = random([512, 256]), z = random([16, 256, 20, 20])
    let map = random([32, 160, 160])
    let cases: [(String, Double, () -> Tensor)] = [
        ("conv2d 128→128 3×3 pad 1, 1×160² (paper)", 2 * 128 * 1152 * 25600, { conv2d(image128, weight: weight128, bias: bias128, padding: 1) }),
        ("conv2d 32→32 3×3 pad 1, 1×160² (shipped decoder)", 2 * 32 * 288 * 25600, { conv2d(image32, weight: weight32, bias: bias32, padding: 1) }),
        ("conv2d 64→64 3×3 pad 1, 4×40² (shipped decoder)", 4 * 2 * 64 * 576 * 1600, { conv2d(image64, weight: weight64, bias: bias64, padding: 1) }),
        ("conv2d 128→128 3×3 stride 2 asym pad, 1×160²", 2 * 128 * 1152 * 6400, {
            conv2d(image128, weight: weight128, bias: bias128, stride: 2, padding: Padding(top: 0, left: 0, bottom: 1, right: 1)) }),
        ("conv2d 512→512 3×3 pad 1, 2×20² (paper)", 2 * 2 * 512 * 4608 * 400, { conv2d(image512, weight: weight512, bias: bias512, padding: 1) }),
        ("groupNorm 32 groups, 1×128×160²", 0, { groupNorm(image128, groups: 32, weight: norm, bias: norm, eps: 1e-6) }),
        ("silu, 1×128×160²", 0, { silu(image128) }),
        ("upsampleNearest2x, 1×128×160²", 0, { upsampleNearest2x(image128) }),
        ("linear 128→384, 16×400 tokens", 2 * 6400 * 384 * 128, { linear(tokens, weight: qkvWeight, bias: qkvBias) }),
        ("layerNorm 128, 16×400 tokens", 0, { layerNorm(tokens, weight: norm, bias: norm, eps: 1e-5) }),
        ("gelu, 16×400×512", 0, { gelu(hidden) }),
        ("attention 4 heads of 32, 16×400 tokens", 16 * 4 * 2 * (2 * 400 * 400 * 32), { attention(qkv, heads: 4) }),
        ("attention causal, 16×400 tokens", 16 * 4 * 2 * (2 * 400 * 400 * 32), { attention(qkv, heads: 4, causal: true) }),
        ("softmax rows of 512, 16×400", 0, { softmax(hidden) }),
        ("nearestCodes K=512 D=256, 16×20²", 2 * 16 * 400 * 512 * 256, { Tensor(shape: [1], scalars: [Float(nearestCodes(z, codebook: codebook)[0])]) }),
        ("minPool 3×3×3 + averagePool 3×7×7, 32×160²", 0, { averagePool(minPool(map, window: [3, 3, 3]), window: [3, 7, 7]) }),
    ]
    let saved = Threads.count
    for (name, flops, body) in cases {
        var line = padded("   \(name)", 52)
        var sink = 0
        for threads in [1, Processor.current.onlineCores] {
            Threads.count = threads
            let seconds = bestTime(repeats: 3, minimum: 0.3) { sink &+= body().count }
            line += padded(" \(format(seconds * 1000, 2)) ms" + (flops > 0 ? " (\(format(flops / seconds / 1e9, 0)) GFLOP/s)" : ""), 28)
        }
        // Page faults of one call: fresh output memory that the kernel touches for the first time.
        let faultsBefore = minorPageFaults()
        sink &+= body().count
        emit(line + " \(minorPageFaults() - faultsBefore) page faults")
        if sink == -1 { emit("\(sink)") }
    }
    Threads.count = saved
}

// MARK: - Main

let requested = Set(CommandLine.arguments.dropFirst())
let sections: [(String, () -> Void)] = [("peak", peak), ("gemm", gemmTable), ("strategy", strategy), ("kernels", kernels)]
for (name, run) in sections where requested.isEmpty || requested.contains(name) { run() }
