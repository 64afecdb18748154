// swift-tools-version: 6.0
// MIM-OOD Server. One module per concern; dependencies point toward the kernels:
//   mimood (CLI) → Models → Kernels;  mimood → Imaging → ZlibCodec;  HTTPServer → ZlibCodec
import PackageDescription

let package = Package(
    name: "MIMOOD",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "HTTPServer", targets: ["HTTPServer"]),
    ],
    targets: [
        // zlib from the system (Debian: zlib1g-dev) for gzip Content-Encoding.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Float32 tensors and the numeric kernels (GEMM through BLAS, convolutions, norms, attention, sampling).
        .target(name: "Kernels"),
        // HTTP/1.1 on POSIX sockets and Dispatch: a pure request parser and the socket server. Knows nothing of models.
        .target(name: "HTTPServer", dependencies: ["CZlib"]),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer"]),
    ],
    swiftLanguageModes: [.v6]
)
