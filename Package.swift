// swift-tools-version: 6.0
// MIM-OOD Server. One module per concern; dependencies point toward the kernels:
//   mimood (CLI) → Models → Kernels;  mimood → Imaging → ZlibCodec;  HTTPServer → ZlibCodec;
//   Models, HTTPServer → JSONText (string literals)
import PackageDescription

let package = Package(
    name: "MIMOOD",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "HTTPServer", targets: ["HTTPServer"]),
        .executable(name: "mimood", targets: ["mimood"]),
    ],
    dependencies: [
        // SHA-256 of checkpoint files (Crypto).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // zlib from the system (Debian: zlib1g-dev).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // gzip, zlib and raw DEFLATE with output limits (zip-bomb guard), and CRC-32: the one zlib wrapper.
        .target(name: "ZlibCodec", dependencies: ["CZlib"]),
        // Image formats (NPY/NPZ, NIfTI-1, PNG) and the paper's preprocessing to 160×160 slices and back.
        .target(name: "Imaging", dependencies: ["ZlibCodec"]),
        // OpenBLAS from the system (Debian: libopenblas-pthread-dev) for GEMM; see docs/kernels.md for why.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-pthread-dev"])]),
        // Float32 tensors and the numeric kernels (GEMM through BLAS, convolutions, norms, attention, sampling).
        // On Apple platforms GEMM comes from Accelerate instead of OpenBLAS.
        // Optimised in debug builds too: the parity and engine tests run whole networks through these loops.
        .target(name: "Kernels", dependencies: [.target(name: "CBLAS", condition: .when(platforms: [.linux]))],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"]),
        // GEMM GFLOP/s per shape and per BLAS library, peak FLOP/s, kernel timings: docs/kernels.md.
        // Built for this CPU (-march=native) so its FMA loop uses the widest vectors there are.
        .executableTarget(name: "KernelsBenchmark", dependencies: ["Kernels"], path: "Benchmarks/Kernels",
                          swiftSettings: [.unsafeFlags(["-Xcc", "-march=native"])]),
        // Checkpoint loader, the networks (VQ-VAE, token Transformers) and the MIM-OOD restoration pipeline.
        .target(name: "Models", dependencies: ["Kernels", "JSONText", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Kernels", .product(name: "Crypto", package: "swift-crypto")]),
        // HTTP/1.1 on POSIX sockets and Dispatch: a pure request parser and the socket server. Knows nothing of models.
        .target(name: "HTTPServer", dependencies: ["ZlibCodec", "JSONText"]),
        // JSON string literals, shared by the manifest writer and problem+json bodies.
        .target(name: "JSONText"),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer"]),
        // The command line: `mimood detect` and `mimood bench` (docs/cli.md).
        .executableTarget(name: "mimood", dependencies: [
            "Models", "Imaging", "Kernels", "Evaluation", .product(name: "ArgumentParser", package: "swift-argument-parser"),
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
