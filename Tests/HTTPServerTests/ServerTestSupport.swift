import Foundation
import HTTPServer
import XCTest

/// The routes every server test uses.
enum TestRoutes {
    static let helloBody = Array("Hello, world!".utf8)
    /// Compressible text well above the gzip threshold.
    static let longText = Array(String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 500).utf8)

    static func router(slowHandlerStarted: (@Sendable () -> Void)? = nil) -> Router {
        var router = Router()
        router.add(method: "GET", path: "/hello") { _ in
            HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain")]), body: helloBody)
        }
        router.add(method: "GET", path: "/text") { _ in
            HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain; charset=utf-8")]), body: longText)
        }
        router.add(method: "POST", path: "/echo") { request in
            HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "application/octet-stream")]), body: request.body)
        }
        // Answers after `ms` milliseconds with `tag`: pipelined responses must still come back in order.
        router.add(method: "GET", path: "/delay") { request in
            try await Task.sleep(for: .milliseconds(Int(request.head.queryValue("ms") ?? "0") ?? 0))
            return HTTPResponse(status: 200, body: Array((request.head.queryValue("tag") ?? "").utf8))
        }
        router.add(method: "GET", path: "/fail") { _ in
            struct SecretFailure: Error {}
            throw SecretFailure()
        }
        router.add(method: "GET", path: "/slow") { _ in
            slowHandlerStarted?()
            try await Task.sleep(for: .milliseconds(400))
            return HTTPResponse(status: 200, body: Array("finally".utf8))
        }
        return router
    }

    /// Short timeouts so that the timeout tests stay fast.
    static func configuration(host: String = "127.0.0.1") -> ServerConfiguration {
        var configuration = ServerConfiguration(host: host, port: 0)
        configuration.headerTimeout = .seconds(1)
        configuration.bodyTimeout = .seconds(1)
        configuration.idleTimeout = .milliseconds(500)
        configuration.drainTimeout = .seconds(3)
        configuration.lingerTimeout = .milliseconds(500)
        return configuration
    }
}

/// Starts a server on port 0 and shuts it down at the end of the test.
func startServer(_ configuration: ServerConfiguration = TestRoutes.configuration(),
                 router: Router = TestRoutes.router(), file: StaticString = #filePath, line: UInt = #line)
    throws -> (server: HTTPServer, port: Int) {
    let server = HTTPServer(configuration: configuration, router: router)
    let port = try server.start()
    XCTAssertGreaterThan(port, 0, file: file, line: line)
    return (server, port)
}

/// A response as read off a raw socket.
struct RawResponse {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// The problem+json body, decoded.
    var problem: [String: Any]? {
        guard header("Content-Type") == "application/problem+json" else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }
}

struct ClientError: Error, CustomStringConvertible {
    var description: String
}

/// A blocking TCP client with a receive timeout, for byte-exact requests the ordinary clients won't send;
/// over TLS when given options (the handshake happens at the first send or receive).
final class RawClient {
    let descriptor: Int32
    private var received: [UInt8] = []
    private let tlsOptions: TLSClientOptions?
    private var tlsSession: TLSClientSession?

    /// Connects to 127.0.0.1 or ::1; throws with errno (e.g. ECONNREFUSED) when the connection fails.
    init(port: Int, host: String = "127.0.0.1", receiveTimeout: TimeInterval = 5, tls: TLSClientOptions? = nil) throws {
        tlsOptions = tls
        let isIPv6 = host.contains(":")
        descriptor = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: Int(receiveTimeout), tv_usec: Int((receiveTimeout.truncatingRemainder(dividingBy: 1)) * 1_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let result: Int32
        if isIPv6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET6, host, &address.sin6_addr)
            result = Self.connect(descriptor, to: &address)
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET, host, &address.sin_addr)
            result = Self.connect(descriptor, to: &address)
        }
        if result != 0 {
            let code = errno
            close(descriptor)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
    }

    private static func connect<Address>(_ descriptor: Int32, to address: inout Address) -> Int32 {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
    }

    deinit {
        tlsSession = nil
        close(descriptor)
    }

    /// The TLS session, hand-shaking first if this is the first use; nil for plain TCP.
    func tls() throws -> TLSClientSession? {
        if tlsSession == nil, let tlsOptions { tlsSession = try TLSClientSession(descriptor: descriptor, options: tlsOptions) }
        return tlsSession
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        let session = try tls()
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes {
                session?.send($0) ?? Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard count > 0 else { throw ClientError(description: "send failed: errno \(errno)") }
            sent += count
        }
    }

    /// Reads more bytes; false at end of stream. Throws on the receive timeout.
    private func receiveMore() throws -> Bool {
        let session = try tls()
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { session?.receive(into: $0) ?? recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count < 0 {
            if errno == ECONNRESET { return false }
            throw ClientError(description: "receive timed out or failed: errno \(errno)")
        }
        received.append(contentsOf: buffer[..<count])
        return count > 0
    }

    /// Reads once unless bytes are already waiting, and hands over every byte received so far; nil at the
    /// end of the stream. Throws on the receive timeout.
    func receiveBytes() throws -> [UInt8]? {
        if received.isEmpty, try !receiveMore() { return nil }
        defer { received = [] }
        return received
    }

    /// Reads one response framed by Content-Length (the server never sends chunked); `bodyless` for HEAD.
    func readResponse(bodyless: Bool = false) throws -> RawResponse {
        let separator = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            headEnd = received.firstRange(of: separator)?.lowerBound
            if headEnd == nil, try !receiveMore() { throw ClientError(description: "connection closed before a response") }
        }
        let headText = String(decoding: received[..<headEnd!], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw ClientError(description: "bad status line") }
        let headers = lines.map { line -> (String, String) in
            let colon = line.firstIndex(of: ":")!
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        received.removeSubrange(..<(headEnd! + 4))
        var response = RawResponse(status: status, headers: headers, body: [])
        let length = bodyless || status == 100 ? 0 : Int(response.header("Content-Length") ?? "0") ?? 0
        while received.count < length {
            if try !receiveMore() { throw ClientError(description: "connection closed inside a body") }
        }
        response.body = Array(received[..<length])
        received.removeSubrange(..<length)
        return response
    }

    /// Whether the server closes the connection (end of stream or reset) before the receive timeout.
    func isClosedByPeer() -> Bool {
        do {
            while try receiveMore() {}
            return true
        } catch {
            return false
        }
    }
}

/// Runs a command line tool to its end; its output goes through files, so a chatty tool cannot block on a full pipe.
func runTool(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: Data, errors: String) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("server-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let outputFile = directory.appendingPathComponent("stdout")
    let errorFile = directory.appendingPathComponent("stderr")
    try Data().write(to: outputFile)
    try Data().write(to: errorFile)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [executable] + arguments
    process.standardOutput = try FileHandle(forWritingTo: outputFile)
    process.standardError = try FileHandle(forWritingTo: errorFile)
    try process.run()
    process.waitUntilExit()
    return (process.terminationStatus, try Data(contentsOf: outputFile),
            String(decoding: try Data(contentsOf: errorFile), as: UTF8.self))
}

/// A temporary file with the given bytes, removed by the caller.
func temporaryFile(_ bytes: [UInt8]) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("server-tests-\(UUID().uuidString)")
    try Data(bytes).write(to: url)
    return url
}

/// Deterministic, incompressible-looking bytes.
func pseudoRandomBytes(count: Int) -> [UInt8] {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
}
