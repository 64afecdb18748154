import Foundation
import Glibc
import TestSupport
import XCTest

/// `health_port` on the real `mimood serve`: a second, plain-HTTP listener that answers the probes and
/// scrapes, and nothing else, and that stays up while the main listener drains.
final class HealthListenerTests: ServiceTestCase {
    func testTheHealthListenerServesTheProbesAndMetricsOnlyInPlainHTTP() throws {
        let healthPort = try freeLoopbackPort()
        let service = try serve(["--health-port", String(healthPort)])
        let health = "http://127.0.0.1:\(healthPort)"
        let listening = try service.waitForLog("\"listener\":\"health\"")
        XCTAssertTrue(listening.contains("\"message\":\"listening\"") && listening.contains("\"port\":\(healthPort)"), listening)

        XCTAssertEqual(try Curl.run(["\(health)/healthz"]).json()["status"] as? String, "alive")
        XCTAssertEqual(try Curl.run(["\(health)/readyz"]).json()["status"] as? String, "ready")
        // Everything else is unknown there, /detect above all (no client certificate gets asked for here).
        let detect = try Curl.run(["-H", "Content-Type: application/x-npy", "--data-binary", "x", "\(health)/detect"])
        XCTAssertEqual(detect.status, 404, detect.text)
        XCTAssertEqual(detect.headers["content-type"], "application/problem+json")
        for path in ["/v1/model", "/openapi.yaml"] {
            XCTAssertEqual(try Curl.run(["\(health)\(path)"]).status, 404, path)
        }
        XCTAssertEqual(try Curl.run(["\(service.baseURL)/v1/model"]).status, 200)
        let refused = try service.waitForLog("\"status\":404")
        XCTAssertTrue(refused.contains("\"listener\":\"health\""), refused)

        let metrics = try Curl.run(["\(health)/metrics"])
        XCTAssertEqual(metrics.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertTrue(metrics.text.contains("mimood_ready 1.0"), metrics.text)
        // Counted with the main listener's requests, whatever labels follow these.
        for counter in ["mimood_http_requests_total{route=\"/readyz\",method=\"GET\",status=\"200\"",
                        "mimood_http_requests_total{route=\"other\",method=\"POST\",status=\"404\""] {
            XCTAssertTrue(metrics.text.split(separator: "\n").contains { $0.hasPrefix(counter) && $0.hasSuffix(" 1") },
                          "no \(counter)…} 1 in\n\(metrics.text)")
        }

        // A few connections at once, not the main listener's thousand: the 17th is answered 503.
        let held = try (0..<16).map { _ in try RawClient(port: healthPort) }
        let overLimit = try RawClient(port: healthPort)
        let answer = try overLimit.receiveAll(timeout: 30)
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 503"), answer)
        for client in held { client.close() }
        XCTAssertEqual(service.terminate(), 0)
    }

    func testDuringTheDrainTheHealthListenerAnswersNotReadyThenStopsWithTheMainOne() throws {
        let healthPort = try freeLoopbackPort()
        let service = try serve(["--health-port", String(healthPort)])
        let health = "http://127.0.0.1:\(healthPort)"
        // A request whose body is still coming keeps the main listener draining until this client goes.
        let slowUpload = try RawClient(port: service.port)
        try slowUpload.send("POST /detect?preprocessed=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                            + "Content-Length: 102528\r\n\r\n\u{93}")
        let admitted = Date(timeIntervalSinceNow: 30)
        while try service.metric("mimood_memory_reserved_bytes") == 0, Date() < admitted { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertGreaterThan(try service.metric("mimood_memory_reserved_bytes"), 0, "the upload was not admitted")

        kill(service.process.processIdentifier, SIGTERM)
        try service.waitForLog("\"message\":\"draining\"")
        let readiness = try Curl.run(["\(health)/readyz"])
        XCTAssertEqual(readiness.status, 503, readiness.text)
        XCTAssertEqual(try Curl.run(["\(health)/healthz"]).status, 200)
        XCTAssertTrue(try Curl.run(["\(health)/metrics"]).text.contains("mimood_ready 0.0"))

        slowUpload.close()
        service.process.waitUntilExit()
        XCTAssertEqual(service.process.terminationStatus, 0)
        try service.waitForLog("\"message\":\"stopped\"")
        let afterExit = try runCurl(["\(health)/healthz"])
        XCTAssertNotEqual(afterExit, 0, "the health listener outlived the process")
    }

    /// curl's exit status (7 when the connection is refused).
    private func runCurl(_ arguments: [String]) throws -> Int32 {
        try runProcess("/usr/bin/curl", ["--silent", "--max-time", "10", "-o", "/dev/null"] + arguments).status
    }
}

/// A loopback port that was free a moment ago: the system picks it for a socket that is closed at once.
private func freeLoopbackPort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
    }
    guard bound else { throw ServiceTestFailure("no free port: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}
