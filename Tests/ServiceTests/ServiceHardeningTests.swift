import Foundation
import Glibc
import Imaging
import TestSupport
import Threading
import XCTest

/// The real `mimood serve` against hostile and heavy clients (issue 14): bodies that trickle, a request as
/// costly as allowed beside a small one, a memory budget taken, a request over `request_max_cost`. After
/// each the process is up and serves a normal request. Orderings and statuses are asserted, not times.
final class ServiceHardeningTests: ServiceTestCase {
    /// `count` copies of the parity input's first slice, preprocessed, as a .npy file.
    private func slices(_ count: Int) throws -> String {
        let shape = count == 1 ? [160, 160] : [count, 160, 160]
        return try write(NPY.encode(shape: shape, float32: Array([[Float]](repeating: try paritySlice(), count: count).joined())),
                         "slices-\(count).npy")
    }

    private func detectSlices(_ service: ServiceProcess, _ file: String, query: String = "") throws -> Curl.Response {
        try Curl.detect(service, file: file, contentType: "application/x-npy", query: "preprocessed=true" + (query.isEmpty ? "" : "&" + query))
    }

    private func assertServesANormalRequest(_ service: ServiceProcess, line: UInt = #line) throws {
        let response = try detectSlices(service, try slices(1))
        XCTAssertEqual(response.status, 200, response.text, line: line)
    }

    func testClientsThatTrickleTheirBodiesDoNotLockOutOthersAndAreClosed() throws {
        // Four bodies declared at the size limit would take the whole budget if reserved from the head.
        let service = try serve(["--memory-budget-bytes", "33554432", "--max-body-bytes", "16777216",
                                 "--decode-max-bytes", "1048576", "--request-max-slices", "8",
                                 "--body-timeout-seconds", "2", "--body-min-bytes-per-second", "4096"])
        let tricklers = try (0..<4).map { _ in
            let client = try RawClient(port: service.port)
            try client.send("POST /detect?preprocessed=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                            + "Content-Length: 16777216\r\n\r\n\u{93}")
            return client
        }
        try assertServesANormalRequest(service)
        XCTAssertLessThan(try service.metric("mimood_memory_reserved_bytes"), 4 * 16_777_216 / 8,
                          "the tricklers hold about what they sent, not what they declared")
        // Under the minimum rate once the first body timeout has passed: 408, and the connection closed.
        for client in tricklers {
            let answer = try client.receiveAll(timeout: 60)
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 408"), answer)
            XCTAssertTrue(answer.contains("too slowly"), answer)
        }
        try assertServesANormalRequest(service)
        XCTAssertEqual(try service.metric("mimood_memory_reserved_bytes"), 0)
        XCTAssertEqual(service.terminate(), 0)
    }

    func testAOneSliceRequestIsServedWhileTheCostliestAllowedRequestRuns() throws {
        // 8 slices × R 8 × T 8 is the most a request may cost; each batch holds one such slice.
        let service = try serve(["--request-max-cost", "512", "--batch-max-cost", "64"])
        let large = try slices(8)
        let answeredFirst = LockedValue<[String]>([])
        let largeDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let status = (try? Curl.detect(service, file: large, contentType: "application/x-npy",
                                           query: "preprocessed=true&restorations=8&steps=8"))?.status
            answeredFirst.withLock { $0.append("large \(status.map(String.init) ?? "none")") }
            largeDone.signal()
        }
        let deadline = Date(timeIntervalSinceNow: 60)
        while try service.metric("mimood_slices_processed_total") < 1, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let small = try detectSlices(service, try slices(1), query: "restorations=1&steps=1")
        answeredFirst.withLock { $0.append("small \(small.status)") }
        largeDone.wait()
        XCTAssertEqual(answeredFirst.withLock { $0 }, ["small 200", "large 200"])
        let batches = try XCTUnwrap((small.json()["timings"] as? [String: Any])?["batch_slices"] as? [Int])
        XCTAssertEqual(batches.count, 1, "the small request rode in one batch")
        try assertServesANormalRequest(service)
        XCTAssertEqual(service.terminate(), 0)
    }

    func testARequestOverRequestMaxCostIs422NamingTheSetting() throws {
        let service = try serve(["--request-max-cost", "20"])
        // One slice over the cap: refused from the head.
        let heavy = try detectSlices(service, try slices(1), query: "restorations=8&steps=8")
        XCTAssertEqual(heavy.status, 422, heavy.text)
        XCTAssertEqual(heavy.headers["content-type"], "application/problem+json")
        XCTAssertTrue(heavy.text.contains("request_max_cost"), heavy.text)
        // Four slices at 2 × 3 = 24: refused once the slices are counted.
        let many = try detectSlices(service, try slices(4), query: "restorations=2&steps=3")
        XCTAssertEqual(many.status, 422, many.text)
        XCTAssertTrue(many.text.contains("request_max_cost"), many.text)
        try assertServesANormalRequest(service)
        XCTAssertEqual(service.terminate(), 0)
    }

    func testADICOMBodyWithMoreFilesThanAllowedIs413NamingTheSettingAndHoldsNoMemory() throws {
        let service = try serve(["--decode-max-dicom-files", "2"])
        // Three members: refused from the ZIP's directory, before one is inflated.
        let archive = try write(NPZ.encode([("a", [1]), ("b", [2]), ("c", [3])]), "three.zip")
        let refused = try Curl.detect(service, file: archive, contentType: "application/zip")
        XCTAssertEqual(refused.status, 413, refused.text)
        XCTAssertEqual(refused.headers["content-type"], "application/problem+json")
        XCTAssertTrue(refused.text.contains("decode_max_dicom_files: 2"), refused.text)
        XCTAssertEqual(try service.metric("mimood_memory_reserved_bytes"), 0)
        try assertServesANormalRequest(service)
        XCTAssertEqual(service.terminate(), 0)
    }

    func testATakenMemoryBudgetIs503WithRetryAfterAndFreedWhenItsHoldersLeave() throws {
        let megabyte = 1 << 20
        let service = try serve(["--memory-budget-bytes", String(2 * megabyte), "--max-body-bytes", String(megabyte),
                                 "--decode-max-bytes", "102400", "--request-max-slices", "1", "--retry-after-seconds", "3"])
        // decode_max_bytes: one 160×160 slice, and the largest decode it allows fits in the budget (else no start).
        // Two bodies of 1 MiB but their last byte hold the whole budget.
        let holders = try (0..<2).map { _ in
            let client = try RawClient(port: service.port)
            try client.send("POST /detect HTTP/1.1\r\nHost: x\r\nContent-Length: \(megabyte)\r\n\r\n")
            try client.send(String(repeating: "x", count: megabyte - 1))
            return client
        }
        let deadline = Date(timeIntervalSinceNow: 30)
        while try service.metric("mimood_memory_reserved_bytes") < Double(2 * megabyte), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let refused = try detectSlices(service, try slices(1))
        XCTAssertEqual(refused.status, 503, refused.text)
        XCTAssertEqual(refused.headers["retry-after"], "3")
        XCTAssertTrue(refused.text.contains("memory_budget_bytes"), refused.text)
        XCTAssertGreaterThanOrEqual(try service.metric("mimood_requests_refused_total{reason=\"memory\"}"), 1)
        for holder in holders { holder.close() }
        let freed = Date(timeIntervalSinceNow: 30)
        while try service.metric("mimood_memory_reserved_bytes") > 0, Date() < freed { Thread.sleep(forTimeInterval: 0.01) }
        try assertServesANormalRequest(service)
        XCTAssertEqual(service.terminate(), 0)
    }
}

/// A TCP client on 127.0.0.1 that sends exactly what it is given, when it is given.
final class RawClient {
    private let descriptor: Int32
    private var isClosed = false

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ServiceTestFailure("connect failed: errno \(errno)") }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw ServiceTestFailure("send failed: errno \(errno)") }
            sent += count
        }
    }

    /// Everything the server sends until it closes the connection, or until `timeout` seconds pass.
    func receiveAll(timeout: Int) throws -> String {
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received += buffer[..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        Glibc.close(descriptor)
    }

    deinit { close() }
}
