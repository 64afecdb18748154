import COpenSSL
import Foundation
@testable import HTTPServer
import Threading
import XCTest

/// The server over TLS against an OpenSSL client on real sockets: handshake rules, ALPN, client certificates
/// and the subject handlers see, the handshake timeout, large bodies both ways, reload, and bad files.
final class TLSServerTests: XCTestCase {
    private func startTLSServer(_ tls: TLSConfiguration = TestCertificates.server(), router: Router = TestRoutes.router(),
                                events: LockedValue<[TLSEvent]>? = nil, records: LockedValue<[ResponseRecord]>? = nil,
                                http2: HTTP2Configuration? = HTTP2Configuration())
        throws -> (server: HTTPServer, port: Int) {
        var configuration = TestRoutes.configuration()
        configuration.tls = tls
        configuration.http2 = http2
        let server = HTTPServer(configuration: configuration, router: router,
                                responseObserver: { record in records?.withLock { $0.append(record) } },
                                tlsObserver: { event in events?.withLock { $0.append(event) } })
        return (server, try server.start())
    }

    private func get(_ client: RawClient, _ path: String = "/hello") throws -> RawResponse {
        try client.send("GET \(path) HTTP/1.1\r\nHost: test\r\n\r\n")
        return try client.readResponse()
    }

    /// Without HTTP/2 (HTTP2ServerTests has ALPN choosing h2).
    func testTLS12And13AreServedWithHTTP11ChosenByALPNAndOlderVersionsAreRefused() async throws {
        let events = LockedValue<[TLSEvent]>([])
        let (server, port) = try startTLSServer(events: events, http2: nil)
        for version in [TLS1_2_VERSION, TLS1_3_VERSION] {
            let client = try RawClient(port: port, tls: TLSClientOptions(alpn: ["h2", "http/1.1"], versions: (version, version)))
            XCTAssertEqual(try get(client).status, 200)
            XCTAssertEqual(try client.tls()?.protocolVersion, version == TLS1_2_VERSION ? "TLSv1.2" : "TLSv1.3")
            XCTAssertEqual(try client.tls()?.applicationProtocol, "http/1.1")
        }
        let withoutALPN = try RawClient(port: port, tls: TLSClientOptions(alpn: []))
        XCTAssertEqual(try get(withoutALPN).status, 200)
        XCTAssertNil(try withoutALPN.tls()?.applicationProtocol)

        for refused in [TLSClientOptions(versions: (TLS1_1_VERSION, TLS1_1_VERSION)), TLSClientOptions(alpn: ["h2"])] {
            XCTAssertThrowsError(try RawClient(port: port, tls: refused).tls())
        }
        try await Task.sleep(for: .milliseconds(100))
        let failures = events.withLock { $0 }.compactMap { if case .handshakeFailed(let failure) = $0 { failure } else { nil } }
        XCTAssertEqual(failures.map(\.kind), [.refused, .refused])
        XCTAssertTrue(failures[0].reason.contains("protocol"), failures[0].reason)
        XCTAssertEqual(try get(RawClient(port: port, tls: TLSClientOptions())).status, 200)
        await server.shutdown()
    }

    /// Client certificates verified against the test CA, and a route that answers the subject the handler sees.
    private func clientAuthenticating(_ mode: TLSConfiguration.ClientAuthentication) -> (TLSConfiguration, Router) {
        var tls = TestCertificates.server()
        tls.clientCAFile = TestCertificates.path("ca.pem")
        tls.clientAuthentication = mode
        var router = Router()
        router.add(method: "GET", path: "/whoami") { request in
            HTTPResponse(status: 200, body: Array((request.clientCertificateSubject ?? "nobody").utf8))
        }
        return (tls, router)
    }

    func testRequiredClientCertificatesReachTheHandlerAndTheResponseRecord() async throws {
        let (tls, router) = clientAuthenticating(.required)
        let records = LockedValue<[ResponseRecord]>([])
        let (server, port) = try startTLSServer(tls, router: router, records: records)
        let known = try RawClient(port: port, tls: TLSClientOptions(certificate: "client"))
        XCTAssertEqual(try get(known, "/whoami").bodyText, "CN=pacs-gateway,O=Radiology")
        XCTAssertEqual(records.withLock { $0.last?.clientCertificateSubject }, "CN=pacs-gateway,O=Radiology")

        // TLS 1.3 clients finish their side before the server has checked the certificate: the refusal
        // comes as an alert instead of the response.
        for refused in [TLSClientOptions(certificate: "stranger"), TLSClientOptions()] {
            let client = try RawClient(port: port, tls: refused)
            XCTAssertThrowsError(try get(client, "/whoami"))
        }
        await server.shutdown()
    }

    func testOptionalClientCertificatesServeAnonymousClients() async throws {
        let (tls, router) = clientAuthenticating(.optional)
        let (server, port) = try startTLSServer(tls, router: router)
        XCTAssertEqual(try get(RawClient(port: port, tls: TLSClientOptions()), "/whoami").bodyText, "nobody")
        XCTAssertEqual(try get(RawClient(port: port, tls: TLSClientOptions(certificate: "client")), "/whoami").bodyText,
                       "CN=pacs-gateway,O=Radiology")
        XCTAssertThrowsError(try get(RawClient(port: port, tls: TLSClientOptions(certificate: "stranger")), "/whoami"))
        await server.shutdown()
    }

    func testAStalledHandshakeIsClosedAfterTheTimeoutWhileOthersAreServed() async throws {
        var tls = TestCertificates.server()
        tls.handshakeTimeout = .milliseconds(300)
        let events = LockedValue<[TLSEvent]>([])
        let (server, port) = try startTLSServer(tls, events: events)
        let silent = try RawClient(port: port, receiveTimeout: 3)
        let started = ContinuousClock.now
        XCTAssertEqual(try get(RawClient(port: port, tls: TLSClientOptions())).status, 200)
        XCTAssertTrue(silent.isClosedByPeer())
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
        let timedOut = events.withLock { $0 }.contains { if case .handshakeFailed(let failure) = $0 { failure.kind == .timedOut } else { false } }
        XCTAssertTrue(timedOut)
        await server.shutdown()
    }

    func testHandshakesInProgressAreCappedWhileEstablishedConnectionsGoOn() async throws {
        var tls = TestCertificates.server()
        tls.maxHandshakesInProgress = 2
        let (server, port) = try startTLSServer(tls)
        let established = try RawClient(port: port, tls: TLSClientOptions())
        XCTAssertEqual(try get(established).status, 200)
        // Two peers that open connections and never send a ClientHello take every handshake place.
        var silent = try (0..<2).map { _ in try RawClient(port: port, receiveTimeout: 3) }
        XCTAssertTrue(try RawClient(port: port, receiveTimeout: 3).isClosedByPeer())
        XCTAssertThrowsError(try get(RawClient(port: port, receiveTimeout: 3, tls: TLSClientOptions())))
        XCTAssertEqual(try get(established).status, 200)
        // Their places come back when they leave (or when their handshakes time out).
        silent = []
        var served = false
        for _ in 0..<50 where !served {
            try await Task.sleep(for: .milliseconds(50))
            served = (try? get(RawClient(port: port, receiveTimeout: 3, tls: TLSClientOptions())).status) == 200
        }
        XCTAssertTrue(served)
        XCTAssertTrue(silent.isEmpty)
        await server.shutdown()
    }

    /// Megabytes each way: many records, partial writes and a full socket buffer on both sides.
    func testLargeBodiesAreEchoedOverOneConnection() async throws {
        var configuration = TestRoutes.configuration()
        configuration.tls = TestCertificates.server()
        configuration.gzipMinimumBytes = .max
        let server = HTTPServer(configuration: configuration, router: TestRoutes.router())
        let port = try server.start()
        let client = try RawClient(port: port, tls: TLSClientOptions())
        for size in [3_000_000, 100, 1_000_000] {
            let body = pseudoRandomBytes(count: size)
            try client.send(Array("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: \(size)\r\n\r\n".utf8) + body)
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 200)
            XCTAssertTrue(response.body == body, "size \(size)")
        }
        await server.shutdown()
    }

    func testReloadServesTheNewCertificateToNewConnectionsAndKeepsOpenOnes() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("server-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (certificate, key) = ("\(directory)/cert.pem", "\(directory)/key.pem")
        func install(_ name: String) throws {
            for (source, target) in [("\(name).pem", certificate), ("\(name).key", key)] {
                try? FileManager.default.removeItem(atPath: target)
                try FileManager.default.copyItem(atPath: TestCertificates.path(source), toPath: target)
            }
        }
        try install("server")
        let (server, port) = try startTLSServer(TLSConfiguration(certificateChainFile: certificate, privateKeyFile: key))
        let open = try RawClient(port: port, tls: TLSClientOptions())
        XCTAssertEqual(try get(open).status, 200)
        XCTAssertEqual(try open.tls()?.serverCommonName, "first")

        try install("server2")
        try server.reloadTLS()
        let fresh = try RawClient(port: port, tls: TLSClientOptions())
        XCTAssertEqual(try get(fresh).status, 200)
        XCTAssertEqual(try fresh.tls()?.serverCommonName, "reloaded")
        XCTAssertEqual(try get(open).status, 200)

        try Data("garbage".utf8).write(to: URL(fileURLWithPath: key))
        XCTAssertThrowsError(try server.reloadTLS()) { XCTAssertEqual(($0 as? TLSConfigurationError)?.source, .privateKey) }
        XCTAssertEqual(try RawClient(port: port, tls: TLSClientOptions()).tls()?.serverCommonName, "reloaded")
        await server.shutdown()
    }

    func testUnusableFilesAreRefusedAtStartNamingTheFile() throws {
        let cases: [(TLSConfiguration, TLSConfigurationError.Source)] = [
            (TLSConfiguration(certificateChainFile: "/nonexistent.pem", privateKeyFile: TestCertificates.path("server.key")), .certificateChain),
            (TLSConfiguration(certificateChainFile: TestCertificates.path("server.key"), privateKeyFile: TestCertificates.path("server.key")), .certificateChain),
            (TLSConfiguration(certificateChainFile: TestCertificates.path("server.pem"), privateKeyFile: TestCertificates.path("client.key")), .privateKey),
            ({ var tls = TestCertificates.server(); tls.clientAuthentication = .required; return tls }(), .clientCA),
            ({ var tls = TestCertificates.server(); tls.clientAuthentication = .optional; tls.clientCAFile = TestCertificates.path("server.key")
               return tls }(), .clientCA),
        ]
        for (tls, source) in cases {
            var configuration = TestRoutes.configuration()
            configuration.tls = tls
            XCTAssertThrowsError(try HTTPServer(configuration: configuration, router: Router()).start()) { error in
                XCTAssertEqual((error as? TLSConfigurationError)?.source, source, "\(error)")
            }
        }
    }
}
