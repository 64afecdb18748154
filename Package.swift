// swift-tools-version: 6.0
// MIM-OOD Server, for Linux only (Glibc sockets and files, OpenBLAS). One module per concern; dependencies
// point toward the kernels (every `import`, as scripts/check-module-graph verifies):
//   mimood (CLI) → Service, Detection, Evaluation, HTTPServer, JSON, Models, Imaging, Kernels, Threading
//   Service   → HTTPServer, Detection, Models, JSON, Threading   (+ swift-log, swift-prometheus; swift-crypto for the API key)
//   HTTPServer → JSON, Threading, ZlibCodec, COpenSSL, CNGHTTP2
//   Detection → Models, Imaging, Kernels, JSON, ZlibCodec
//   Models    → Kernels, JSON, Threading                          (+ swift-crypto for weight digests)
//   Imaging → ZlibCodec → CZlib;  Imaging → CDicom (C++, DCMTK);  Kernels → CBLAS, CKernels;  JSON, Threading, Evaluation: no dependency
import PackageDescription

let package = Package(
    name: "MIMOOD",
    products: [
        .library(name: "HTTPServer", targets: ["HTTPServer"]),
        // For the decoder fuzzers (Fuzz/).
        .library(name: "Detection", targets: ["Detection"]),
        .library(name: "JSON", targets: ["JSON"]),
        .library(name: "Imaging", targets: ["Imaging"]),
        .library(name: "ZlibCodec", targets: ["ZlibCodec"]),
        .executable(name: "mimood", targets: ["mimood"]),
    ],
    dependencies: [
        // SHA-256 of checkpoint files (Crypto).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The service's /metrics (Prometheus text exposition).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // zlib from the system (Debian: zlib1g-dev).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // gzip, zlib and raw DEFLATE with output limits (zip-bomb guard), and CRC-32: the one zlib wrapper.
        .target(name: "ZlibCodec", dependencies: ["CZlib"]),
        // DCMTK (Debian: libdcmtk-dev) behind a narrow C API: DICOM parsed from memory, RLE and JPEG lossless
        // decoded; Parametric Maps and Segmentations written (dcmpmap, dcmseg). Linked by name: Debian's
        // dcmtk.pc requires packages (sndfile, …) the library does not need.
        .target(name: "CDicom",
                linkerSettings: ["dcmseg", "dcmpmap", "dcmfg", "dcmiod", "dcmjpeg", "dcmimgle", "dcmdata", "oflog", "ofstd"]
                    .map { .linkedLibrary($0) }),
        // Image formats (NPY/NPZ, NIfTI-1, PNG, DICOM series in and derived objects out, ZIP) and the paper's preprocessing to 160×160 slices and back.
        .target(name: "Imaging", dependencies: ["ZlibCodec", "CDicom"]),
        // OpenBLAS from the system (Debian: libopenblas-pthread-dev) for GEMM; see docs/kernels.md for why.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-pthread-dev"])]),
        // The inner loops GEMM does not cover (fused attention, softmax, GELU, SiLU, LayerNorm), in C compiled
        // for AVX-512, AVX2 and SSE2 and picked at run time by the CPU. Optimised in debug builds too.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"])]),
        // Float32 tensors and the numeric kernels (GEMM through BLAS, convolutions, norms, attention, sampling).
        // Optimised in debug builds too: the parity and engine tests run whole networks through these loops.
        .target(name: "Kernels", dependencies: ["CBLAS", "CKernels"],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "CKernels"]),
        // GEMM GFLOP/s per shape and per BLAS library, peak FLOP/s, kernel timings: docs/kernels.md.
        .executableTarget(name: "KernelsBenchmark", dependencies: ["Kernels"], path: "Benchmarks/Kernels"),
        // Checkpoint loader, the networks (VQ-VAE, token Transformers) and the MIM-OOD restoration pipeline.
        // Slice-parallel batches and the warm-up are the engine's, so that the CLI and the service share them.
        .target(name: "Models", dependencies: ["Kernels", "JSON", "Threading", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Kernels", "JSON", "Threading", .product(name: "Crypto", package: "swift-crypto")]),
        // OpenSSL's libssl from the system (Debian: libssl-dev) for TLS.
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // nghttp2 from the system (Debian: libnghttp2-dev): HTTP/2 framing, HPACK and flow control.
        .systemLibrary(name: "CNGHTTP2", path: "Sources/CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        // HTTP/1.1 and HTTP/2 on POSIX sockets and Dispatch, plain or over TLS: a pure request parser, the
        // HTTP/2 session layer, and the socket server. Knows nothing of models.
        .target(name: "HTTPServer", dependencies: ["ZlibCodec", "JSON", "Threading", "COpenSSL", "CNGHTTP2"]),
        // JSON (RFC 8259): the strict parser of manifests and safetensors headers, and the one writer of every
        // JSON text (problem+json, responses, log lines), which never writes a non-finite number.
        .target(name: "JSON"),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        // A lock Thread Sanitizer sees, and Duration conversions: shared by the server and the service.
        .target(name: "Threading"),
        // From image bytes to detection results on the input's grid: formats sniffed, preprocessing, one
        // restoration job per slice, maps put back, outputs encoded. Shared by `mimood detect` and the service.
        .target(name: "Detection", dependencies: ["Models", "Imaging", "Kernels", "JSON", "ZlibCodec"]),
        .testTarget(name: "DetectionTests", dependencies: ["Detection", "Imaging", "Models", "ZlibCodec"]),
        // The detection service: POST /detect on a shared, dynamically batching inference queue; health,
        // metrics, model facts; configuration; JSON logs (docs/service.md).
        // Crypto: the API key is compared as a digest, in constant time.
        .target(name: "Service", dependencies: [
            "HTTPServer", "Detection", "Models", "JSON", "Threading",
            .product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .testTarget(name: "ServiceTests", dependencies: ["Service", "Detection", "HTTPServer", "Models", "Kernels", "Imaging", "ZlibCodec", "Threading", "TestSupport"]),
        // COpenSSL: a TLS client for the raw-socket tests over TLS; CNGHTTP2: an HTTP/2 client for those over HTTP/2.
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer", "Threading", "COpenSSL", "CNGHTTP2"]),
        // The command line: `mimood detect`, `mimood bench` (docs/cli.md) and `mimood serve` (docs/service.md).
        .executableTarget(name: "mimood", dependencies: [
            "Service", "Detection", "Evaluation", "HTTPServer", "JSON", "Models", "Imaging", "Kernels", "Threading",
            .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "CLITests", dependencies: ["Imaging", "TestSupport"]),
        // Helpers shared by test targets (running a child process).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ZlibCodecTests", dependencies: ["ZlibCodec"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "ZlibCodec", "TestSupport"]),
        // The paper's measures: precision–recall curve, AP, AUROC, best DICE, token ground truth (docs/results.md).
        .target(name: "Evaluation"),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation"]),
    ],
    swiftLanguageModes: [.v6]
)
