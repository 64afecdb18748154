import Glibc
import JSON
import Logging
import Threading

/// A swift-log handler writing one JSON object per line: `time` (UTC, milliseconds), `level`, `logger`,
/// `message`, then the metadata's keys (request ids, statuses, durations). The service logs metadata
/// only: never pixel data, file contents or header values other than the request id.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let sink: JSONLogSink

    public init(label: String, level: Logger.Level, sink: JSONLogSink = .standardOutput) {
        self.label = label
        self.logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = JSONObject(["time": .string(Self.timestamp()), "level": .string(event.level.rawValue),
                               "logger": .string(label), "message": .string(event.message.description)])
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() where line[key] == nil {
            line[key] = Self.json(merged[key]!)
        }
        sink.write(JSONValue.object(line).jsonText + "\n")
    }

    private static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let text): .string(text)
        case .stringConvertible(let convertible):
            // Numbers and booleans stay JSON numbers and booleans; anything else becomes a string.
            switch convertible {
            case let number as Int: .integer(number)
            case let number as Double: .number(number)
            case let flag as Bool: .bool(flag)
            default: .string(convertible.description)
            }
        case .array(let values): .array(values.map(json))
        case .dictionary(let entries):
            .object(entries.keys.sorted().reduce(into: JSONObject()) { object, key in object[key] = json(entries[key]!) })
        }
    }

    /// Now, as `2026-11-27T03:12:45.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func padded(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(padded(parts.tm_year + 1900, 4))-\(padded(parts.tm_mon + 1, 2))-\(padded(parts.tm_mday, 2))T"
            + "\(padded(parts.tm_hour, 2)):\(padded(parts.tm_min, 2)):\(padded(parts.tm_sec, 2))."
            + "\(padded(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}

/// Where log lines go: whole lines, one write each, never interleaved.
public struct JSONLogSink: Sendable {
    private let write: @Sendable (String) -> Void

    public init(_ write: @escaping @Sendable (String) -> Void) {
        self.write = write
    }

    func write(_ line: String) { write(line) }

    public static let standardOutput: JSONLogSink = {
        let lock = LockedValue(())
        return JSONLogSink { line in
            lock.withLock { _ in
                var bytes = Array(line.utf8)
                var offset = 0
                while offset < bytes.count {
                    let written = bytes.withUnsafeMutableBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress! + offset, $0.count - offset) }
                    if written <= 0 { break }  // nowhere to write: drop the line rather than stall the service
                    offset += written
                }
            }
        }
    }()
}
