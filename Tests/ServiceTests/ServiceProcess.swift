import Foundation
import TestSupport
import Threading
import XCTest

/// `mimood serve` as operators run it: the built executable in a child process on a loopback port the
/// system picks, its JSON log lines collected, stopped with SIGTERM.
final class ServiceProcess: @unchecked Sendable {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let parityCheckpoint = repository.appendingPathComponent("Tests/Fixtures/parity/checkpoint").path

    let process = Process()
    private(set) var port = 0
    private let lines = LockedValue<[String]>([])
    private let output = Pipe()

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var logLines: [String] { lines.withLock { $0 } }

    /// Starts `mimood serve ARGUMENTS` (with `--port 0` unless the environment names a port) and waits
    /// until it listens and its model is warm.
    init(_ arguments: [String], environment: [String: String] = [:], directory: URL = repository) throws {
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let executable = products.appendingPathComponent("mimood")
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            // A failure, not a skip: a suite that skips looks green while it tested nothing.
            throw MissingExecutable(folder: products.path)
        }
        process.executableURL = executable
        process.arguments = ["serve"] + (environment["MIMOOD_PORT"] == nil ? ["--port", "0"] : []) + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.currentDirectoryURL = directory
        process.standardOutput = output
        try process.run()
        let lines = lines
        let reader = output.fileHandleForReading
        Thread.detachNewThread {
            var pending = Data()
            while case let data = reader.availableData, !data.isEmpty {
                pending.append(data)
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    lines.withLock { $0.append(line) }
                }
            }
        }
        let listening = try waitForLog("\"message\":\"listening\"")
        let portField = try XCTUnwrap(listening.range(of: "\"port\":"))
        port = Int(listening[portField.upperBound...].prefix { $0.isNumber })!
        _ = try waitForLog("\"message\":\"warm\"")
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// The first log line containing `fragment`, waiting up to `timeout` seconds for it.
    @discardableResult
    func waitForLog(_ fragment: String, timeout: Double = 60) throws -> String {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while Date() < deadline {
            if let line = logLines.first(where: { $0.contains(fragment) }) { return line }
            guard process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw ServiceTestFailure("no log line with \(fragment) within \(timeout) s; the log:\n" + logLines.joined(separator: "\n"))
    }

    /// SIGTERM, then the exit status once the process has drained and ended.
    func terminate() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// The value of a metric line that starts with `prefix` (name and labels), or 0 when there is none.
    func metric(_ prefix: String) throws -> Double {
        let text = String(decoding: try Curl.run(["\(baseURL)/metrics"]).body, as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(prefix + " ") }) else { return 0 }
        return Double(line.split(separator: " ").last!)!
    }
}

struct ServiceTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// curl, as users call the service: each call writes the body and the head to files and reports the status.
enum Curl {
    struct Response {
        let status: Int
        /// Lower-cased field names.
        let headers: [String: String]
        let body: Data

        var text: String { String(decoding: body, as: UTF8.self) }

        func json() throws -> [String: Any] {
            guard let object = try JSONSerialization.jsonObject(with: body) as? [String: Any] else {
                throw ServiceTestFailure("not a JSON object: \(text.prefix(300))")
            }
            return object
        }
    }

    static func run(_ arguments: [String]) throws -> Response {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let (bodyFile, headFile) = (folder.appendingPathComponent("body").path, folder.appendingPathComponent("head").path)
        let finished = try runProcess("/usr/bin/curl", ["--silent", "--show-error", "--max-time", "120", "-o", bodyFile,
                                                         "-D", headFile, "-w", "%{http_code}"] + arguments)
        guard finished.status == 0, let status = Int(finished.output) else {
            throw ServiceTestFailure("curl \(arguments) failed (\(finished.status)): \(finished.errors)")
        }
        var headers: [String: String] = [:]
        // With 100 Continue first, the last head is the response's.
        let head = try String(contentsOfFile: headFile, encoding: .utf8).components(separatedBy: "\r\n\r\n").filter { !$0.isEmpty }.last ?? ""
        for line in head.split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Response(status: status, headers: headers, body: try Data(contentsOf: URL(fileURLWithPath: bodyFile)))
    }

    /// POST /detect with `file` as the body.
    static func detect(_ service: ServiceProcess, file: String, contentType: String?, query: String = "",
                       accept: String? = nil, extra: [String] = []) throws -> Response {
        var arguments = ["--data-binary", "@\(file)"]
        // Without a type of ours, curl would send its own (x-www-form-urlencoded): "Content-Type:" removes it.
        arguments += ["-H", "Content-Type:" + (contentType.map { " " + $0 } ?? "")]
        if let accept { arguments += ["-H", "Accept: \(accept)"] }
        return try run(arguments + extra + ["\(service.baseURL)/detect\(query.isEmpty ? "" : "?" + query)"])
    }
}
