// swift-tools-version: 6.0
// The libFuzzer target for the HTTP request parser. A package of its own because the fuzzer only links
// with -sanitize=fuzzer (it calls libFuzzer's driver), which would break a plain `swift build` of the root
// package. Build and run it with scripts/fuzz-parser.
import PackageDescription

let package = Package(
    name: "HTTPParserFuzz",
    dependencies: [.package(name: "MIMOOD", path: "..")],
    targets: [
        .target(name: "CFuzzerDriver"),
        .executableTarget(name: "HTTPParserFuzz",
                          dependencies: ["CFuzzerDriver", .product(name: "HTTPServer", package: "MIMOOD")]),
    ],
    swiftLanguageModes: [.v6]
)
