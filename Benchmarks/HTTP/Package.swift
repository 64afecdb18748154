// swift-tools-version: 6.0
// Our HTTP server against Hummingbird 2 on the same tiny handler, over HTTP, HTTPS and (Hummingbird only,
// until ours speaks it) HTTP/2 over TLS; scripts/bench-http builds and runs them.
// A package of its own so that the root build never compiles SwiftNIO and Hummingbird.
import PackageDescription

let package = Package(
    name: "HTTPBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        // Named, so that the product reference does not depend on the name of the checkout's folder.
        .package(name: "MIMOOD", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        .executableTarget(name: "OursHello", dependencies: [.product(name: "HTTPServer", package: "MIMOOD")]),
        .executableTarget(name: "HummingbirdHello", dependencies: [
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "HummingbirdHTTP2", package: "hummingbird"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
