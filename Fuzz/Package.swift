// swift-tools-version: 6.0
// The libFuzzer targets: the HTTP/1.1 request parser and the HTTP/2 connection machine, and the image decoders every request body goes through
// (NIfTI plain and gzip, NPY, NPZ, PNG, DICOM), and the strict JSON parser of checkpoint manifests. A package of its
// own because a fuzzer only links with -sanitize=fuzzer (it calls libFuzzer's driver), which would break a
// plain `swift build` of the root package. Build and run them with scripts/fuzz-parser and scripts/fuzz-decoders.
import PackageDescription

let decoders = ["NIfTIFuzz", "NIfTIGzipFuzz", "NPYFuzz", "NPZFuzz", "PNGFuzz", "DICOMFuzz"]

let package = Package(
    name: "MIMOODFuzz",
    dependencies: [.package(name: "MIMOOD", path: "..")],
    targets: [
        .target(name: "CFuzzerDriver"),
        .executableTarget(name: "HTTPParserFuzz",
                          dependencies: ["CFuzzerDriver", .product(name: "HTTPServer", package: "MIMOOD")]),
        // The HTTP/2 connection machine with its nghttp2 session (internal types: a debug build is testable).
        .executableTarget(name: "HTTP2Fuzz",
                          dependencies: ["CFuzzerDriver", .product(name: "HTTPServer", package: "MIMOOD")]),
        // What the decoder targets share: small limits, the driver, the checks against InputCost.
        .target(name: "DecoderFuzzing", dependencies: [
            "CFuzzerDriver", .product(name: "Detection", package: "MIMOOD"), .product(name: "Imaging", package: "MIMOOD"),
            .product(name: "ZlibCodec", package: "MIMOOD"),
        ]),
        .executableTarget(name: "JSONFuzz", dependencies: ["DecoderFuzzing", .product(name: "JSON", package: "MIMOOD")]),
    ] + decoders.map { name in
        .executableTarget(name: name, dependencies: [
            "DecoderFuzzing", .product(name: "Detection", package: "MIMOOD"), .product(name: "Imaging", package: "MIMOOD"),
            .product(name: "ZlibCodec", package: "MIMOOD"),
        ])
    },
    swiftLanguageModes: [.v6]
)
