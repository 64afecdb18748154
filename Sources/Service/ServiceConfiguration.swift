import HTTPServer
import Models

/// Every setting of `mimood serve`. Each one has a name (`batch_max_slices`), read from the configuration
/// file (`Config/mimood.toml` documents them all with their defaults), then from the environment
/// (`MIMOOD_BATCH_MAX_SLICES`), then from the command line (`--batch-max-slices`); later sources win.
public struct ServiceConfiguration: Sendable, Equatable {
    // Where to listen and what to serve.
    public var host = "127.0.0.1"
    public var port = 8080
    /// When not 0, a second listener in plain HTTP on this port serves only /healthz, /readyz and /metrics.
    public var healthPort = 0
    /// The checkpoint directory; empty: `Models/default`, found from the working directory or the executable.
    public var model = ""
    /// The OpenAPI document served at /openapi.yaml; empty: `openapi.yaml`, found like the model.
    public var openapiFile = ""
    /// Threads of the numeric kernels; 0: one per online core.
    public var threads = 0
    public var logLevel = "info"
    /// When set, /detect and /v1/model need `Authorization: Bearer <key>`.
    public var apiKey = ""

    // TLS (off while no certificate is set).
    /// PEM certificate chain; when set, the server speaks HTTPS only.
    public var tlsCertificateFile = ""
    public var tlsKeyFile = ""
    public var tlsClientCAFile = ""
    public var tlsClientAuth = TLSConfiguration.ClientAuthentication.none.rawValue
    public var tlsHandshakeTimeoutSeconds = 10.0
    public var tlsMaxHandshakes = 256

    // HTTP/2 (beside HTTP/1.1: ALPN over TLS, prior knowledge in cleartext).
    public var http2 = "on"
    public var http2MaxConcurrentStreams = 100
    public var http2MaxHeaderListBytes = 32 * 1024
    public var http2InitialWindowBytes = 1024 * 1024

    // HTTP limits and timeouts.
    public var maxBodyBytes = 256 * 1024 * 1024
    public var maxConnections = 1024
    public var headerTimeoutSeconds = 10.0
    public var bodyTimeoutSeconds = 60.0
    public var bodyDeadlineSeconds = 240.0
    public var bodyMinBytesPerSecond = 16 * 1024
    public var idleTimeoutSeconds = 75.0
    public var writeTimeoutSeconds = 30.0
    public var drainTimeoutSeconds = 60.0

    // Memory (docs/service.md, *Memory*).
    /// What requests may hold at once: bodies, decodes, slices and results, responses. Leaves room under the
    /// Kubernetes limit (1536 MiB) for the model, the engine's working memory and the allocator.
    public var memoryBudgetBytes = 1024 * 1024 * 1024
    public var decodeMaxConcurrent = 2
    public var decodeMaxBytes = 64 * 1024 * 1024
    public var decodeMaxDicomFiles = 2048
    public var decodeMaxDicomFrames = 2048

    // The inference queue.
    public var batchMaxSlices = 16
    /// One slice at the default model's R = 4, T = 8: a small request waits for at most one such slice (docs/service.md, *Performance*).
    public var batchMaxCost = 32
    public var queueOrder = QueueOrder.roundRobin.rawValue
    public var batchMaxWaitMilliseconds = 20.0
    public var batchParallelism = BatchParallelism.slices.rawValue
    public var queueMaxSlices = 2048
    public var requestMaxSlices = 512
    /// A whole volume of `request_max_slices` at the default model's R = 4, T = 8.
    public var requestMaxCost = 512 * 4 * 8
    public var requestTimeoutSeconds = 300.0
    public var retryAfterSeconds = 5

    // Per-request parameter bounds (422 beyond them).
    public var maxRestorations = 32
    public var maxSteps = 64

    public init() {}

    /// Settings that only make sense together; the first conflict, naming both settings.
    public var conflict: String? {
        if let tlsConflict { return tlsConflict }
        if healthPort != 0 && healthPort == port {
            return "health_port (\(healthPort)) is the port: the health listener needs a port of its own"
        }
        if requestMaxSlices > queueMaxSlices {
            return "request_max_slices (\(requestMaxSlices)) exceeds queue_max_slices (\(queueMaxSlices)): "
                + "a request that large could never be queued"
        }
        if maxBodyBytes > memoryBudgetBytes {
            return "max_body_bytes (\(maxBodyBytes)) exceeds memory_budget_bytes (\(memoryBudgetBytes)): "
                + "a body that large could never be admitted"
        }
        let decodePeak = RequestMemory.decodingPeakBound(self)
        if decodePeak > memoryBudgetBytes {
            return "decode_max_bytes (\(decodeMaxBytes)) needs up to \(decodePeak) bytes per decode, more than "
                + "memory_budget_bytes (\(memoryBudgetBytes)): an image at that limit could never be decoded"
        }
        return nil
    }

    private var tlsConflict: String? {
        if tlsCertificateFile.isEmpty != tlsKeyFile.isEmpty {
            return "tls_certificate_file and tls_key_file go together: set both for HTTPS, or neither"
        }
        if tlsCertificateFile.isEmpty && (!tlsClientCAFile.isEmpty || tlsClientAuth != TLSConfiguration.ClientAuthentication.none.rawValue) {
            return "tls_client_ca_file and tls_client_auth need TLS: set tls_certificate_file and tls_key_file"
        }
        if tlsClientAuth != TLSConfiguration.ClientAuthentication.none.rawValue && tlsClientCAFile.isEmpty {
            return "tls_client_auth '\(tlsClientAuth)' needs tls_client_ca_file, the CAs that client certificates are verified against"
        }
        if tlsClientAuth == TLSConfiguration.ClientAuthentication.none.rawValue && !tlsClientCAFile.isEmpty {
            return "tls_client_ca_file is set but tls_client_auth is 'none': client certificates would not be asked for"
        }
        return nil
    }

    /// The server's TLS settings; nil when no certificate is set (plain HTTP).
    public var tls: TLSConfiguration? {
        guard !tlsCertificateFile.isEmpty else { return nil }
        var tls = TLSConfiguration(certificateChainFile: tlsCertificateFile, privateKeyFile: tlsKeyFile)
        tls.clientAuthentication = TLSConfiguration.ClientAuthentication(rawValue: tlsClientAuth) ?? .none
        tls.clientCAFile = tlsClientCAFile.isEmpty ? nil : tlsClientCAFile
        tls.handshakeTimeout = .seconds(tlsHandshakeTimeoutSeconds)
        tls.maxHandshakesInProgress = tlsMaxHandshakes
        return tls
    }

    /// The server's HTTP/2 settings; nil when `http2` is off.
    public var http2Configuration: HTTP2Configuration? {
        guard http2 == "on" else { return nil }
        var http2 = HTTP2Configuration()
        http2.maxConcurrentStreams = http2MaxConcurrentStreams
        http2.maxHeaderListBytes = http2MaxHeaderListBytes
        http2.initialWindowBytes = http2InitialWindowBytes
        return http2
    }

    /// The setting that names the file a TLS error is about.
    public static func settingName(of source: TLSConfigurationError.Source) -> String {
        switch source {
        case .certificateChain: "tls_certificate_file"
        case .privateKey: "tls_key_file"
        case .clientCA: "tls_client_ca_file"
        case .library: "tls"
        }
    }
}

/// A setting that could not be taken, naming it and where its value came from.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One setting: its name in the file, the environment and on the command line, and how its text becomes a value.
public struct Setting: Sendable {
    enum Kind: Sendable {
        case text(WritableKeyPath<ServiceConfiguration, String> & Sendable, allowed: [String]?)
        case integer(WritableKeyPath<ServiceConfiguration, Int> & Sendable, ClosedRange<Int>)
        case number(WritableKeyPath<ServiceConfiguration, Double> & Sendable, ClosedRange<Double>)
    }

    public let name: String
    public let help: String
    let kind: Kind

    public var environmentName: String { "MIMOOD_" + name.uppercased() }
    public var flag: String { "--" + name.replacingOccurrences(of: "_", with: "-") }

    /// What the setting takes, for help texts and messages.
    public var valueDescription: String {
        switch kind {
        case .text(_, let allowed?): "one of \(allowed.joined(separator: ", "))"
        case .text: "text"
        case .integer(_, let range): "an integer in \(range.lowerBound)…\(range.upperBound)"
        case .number(_, let range): "a number in \(format(range.lowerBound))…\(format(range.upperBound))"
        }
    }

    public func value(in configuration: ServiceConfiguration) -> String {
        switch kind {
        case .text(let path, _): configuration[keyPath: path]
        case .integer(let path, _): String(configuration[keyPath: path])
        case .number(let path, _): format(configuration[keyPath: path])
        }
    }

    /// Sets the value from `text` (the file's value with its quotes removed, an environment variable, a
    /// flag's argument); `quoted` tells whether the file wrote it as a string.
    func apply(_ text: String, quoted: Bool? = nil, source: String, to configuration: inout ServiceConfiguration) throws(ConfigurationError) {
        func refuse() -> ConfigurationError {
            ConfigurationError("setting \(name) from \(source): must be \(valueDescription), got '\(text)'")
        }
        switch kind {
        case .text(let path, let allowed):
            guard quoted != false, allowed?.contains(text) ?? true else { throw refuse() }
            configuration[keyPath: path] = text
        case .integer(let path, let range):
            guard quoted != true, let value = Int(text.replacingOccurrences(of: "_", with: "")), range.contains(value) else { throw refuse() }
            configuration[keyPath: path] = value
        case .number(let path, let range):
            guard quoted != true, let value = Double(text.replacingOccurrences(of: "_", with: "")), value.isFinite,
                  range.contains(value) else { throw refuse() }
            configuration[keyPath: path] = value
        }
    }
}

private func format(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
}

extension ServiceConfiguration {
    /// Every setting, in the order of `Config/mimood.toml`.
    public static var settings: [Setting] {
        let day = 86_400.0
        return [
            Setting(name: "host", help: "Numeric IPv4 or IPv6 address to listen on (0.0.0.0 or :: for every interface).",
                    kind: .text(\.host, allowed: nil)),
            Setting(name: "port", help: "TCP port to listen on (0: the system picks one).", kind: .integer(\.port, 0...65535)),
            Setting(name: "health_port", help: "When not 0, a second listener on this port, in plain HTTP even when the server "
                    + "speaks TLS, that serves only /healthz, /readyz and /metrics (404 for anything else): for probes and "
                    + "scrapes that cannot present a client certificate or speak TLS.", kind: .integer(\.healthPort, 0...65535)),
            Setting(name: "model", help: "Checkpoint directory; empty: Models/default near the working directory or the executable.",
                    kind: .text(\.model, allowed: nil)),
            Setting(name: "openapi_file", help: "The OpenAPI document served at /openapi.yaml; empty: openapi.yaml, found like the model.",
                    kind: .text(\.openapiFile, allowed: nil)),
            Setting(name: "threads", help: "Threads of the numeric kernels; 0: one per online core.", kind: .integer(\.threads, 0...1024)),
            Setting(name: "log_level", help: "Least severe log level written (JSON lines on standard output).",
                    kind: .text(\.logLevel, allowed: ["trace", "debug", "info", "notice", "warning", "error", "critical"])),
            Setting(name: "api_key", help: "When not empty, /detect and /v1/model need 'Authorization: Bearer <api_key>'.",
                    kind: .text(\.apiKey, allowed: nil)),
            Setting(name: "tls_certificate_file", help: "PEM certificate chain (the server's certificate first); when set, "
                    + "the server speaks HTTPS only (TLS 1.2 and 1.3). Reread with the key on SIGHUP.",
                    kind: .text(\.tlsCertificateFile, allowed: nil)),
            Setting(name: "tls_key_file", help: "PEM private key of the certificate (unencrypted).", kind: .text(\.tlsKeyFile, allowed: nil)),
            Setting(name: "tls_client_ca_file", help: "PEM CA bundle that client certificates are verified against (mutual TLS).",
                    kind: .text(\.tlsClientCAFile, allowed: nil)),
            Setting(name: "tls_client_auth", help: "Client certificates: 'none' (not asked for), 'optional' (verified when "
                    + "presented), 'required' (no handshake without a verified one).",
                    kind: .text(\.tlsClientAuth, allowed: TLSConfiguration.ClientAuthentication.allCases.map(\.rawValue))),
            Setting(name: "tls_handshake_timeout_seconds", help: "A TLS handshake not finished this long after the connection "
                    + "was accepted is abandoned (the connection closed).", kind: .number(\.tlsHandshakeTimeoutSeconds, 0.001...day)),
            Setting(name: "tls_max_handshakes", help: "TLS handshakes under way at once; connections beyond are closed at "
                    + "their accept, so that peers stalling handshakes cannot take every connection.",
                    kind: .integer(\.tlsMaxHandshakes, 1...1_000_000)),
            Setting(name: "http2", help: "HTTP/2 beside HTTP/1.1: 'on' (over TLS when the client's ALPN offers h2, in cleartext "
                    + "when it opens with the HTTP/2 preface) or 'off'.", kind: .text(\.http2, allowed: ["on", "off"])),
            Setting(name: "http2_max_concurrent_streams", help: "Requests one HTTP/2 connection may have open at once "
                    + "(SETTINGS_MAX_CONCURRENT_STREAMS); more are refused with RST_STREAM and retried by the client.",
                    kind: .integer(\.http2MaxConcurrentStreams, 1...65_536)),
            Setting(name: "http2_max_header_list_bytes", help: "Largest HTTP/2 header section once decoded, 32 bytes counted "
                    + "per field (SETTINGS_MAX_HEADER_LIST_SIZE; 431 beyond).", kind: .integer(\.http2MaxHeaderListBytes, 1024...(16 << 20))),
            Setting(name: "http2_initial_window_bytes", help: "Body bytes an HTTP/2 client may send on a stream ahead of the "
                    + "server's acknowledgement (SETTINGS_INITIAL_WINDOW_SIZE).",
                    kind: .integer(\.http2InitialWindowBytes, 65_535...2_147_483_647)),
            Setting(name: "max_body_bytes", help: "Largest request body (413 beyond).", kind: .integer(\.maxBodyBytes, 1...(1 << 40))),
            Setting(name: "max_connections", help: "Open connections; more are answered 503 and closed.",
                    kind: .integer(\.maxConnections, 1...1_000_000)),
            Setting(name: "header_timeout_seconds", help: "Time for a whole request head (408 beyond).",
                    kind: .number(\.headerTimeoutSeconds, 0.001...day)),
            Setting(name: "body_timeout_seconds", help: "Longest wait for the next piece of a body (408 beyond).",
                    kind: .number(\.bodyTimeoutSeconds, 0.001...day)),
            Setting(name: "body_deadline_seconds", help: "Time for a whole body, from its head (408 beyond).",
                    kind: .number(\.bodyDeadlineSeconds, 0.001...day)),
            Setting(name: "body_min_bytes_per_second", help: "Slowest average a body may arrive at after its first "
                    + "body_timeout_seconds (408 below; 0: no minimum).", kind: .integer(\.bodyMinBytesPerSecond, 0...(1 << 40))),
            Setting(name: "idle_timeout_seconds", help: "An idle keep-alive connection is closed after this.",
                    kind: .number(\.idleTimeoutSeconds, 0.001...day)),
            Setting(name: "write_timeout_seconds", help: "A response that makes no progress for this long is abandoned.",
                    kind: .number(\.writeTimeoutSeconds, 0.001...day)),
            Setting(name: "drain_timeout_seconds", help: "On SIGTERM, how long requests in progress may still take.",
                    kind: .number(\.drainTimeoutSeconds, 0...day)),
            Setting(name: "memory_budget_bytes", help: "Memory that requests may hold at once: bodies as they arrive, decodes, "
                    + "slices and results in the queue, responses (503 beyond; 413 for a request that could never fit).",
                    kind: .integer(\.memoryBudgetBytes, (1 << 20)...(1 << 44))),
            Setting(name: "decode_max_concurrent", help: "Images decoded and preprocessed at once; more wait their turn.",
                    kind: .integer(\.decodeMaxConcurrent, 1...1024)),
            Setting(name: "decode_max_bytes", help: "Most bytes an image may decode to; its pixels, voxels and preprocessing grids at most this / 4 (their Float32 size). Checked from its header (413 beyond).",
                    kind: .integer(\.decodeMaxBytes, (1 << 16)...(1 << 40))),
            Setting(name: "decode_max_dicom_files", help: "Most files in one DICOM body: a ZIP's members or multipart parts. "
                    + "Checked from the ZIP's directory or the delimiters, before a file is read (413 beyond).",
                    kind: .integer(\.decodeMaxDicomFiles, 1...1_000_000)),
            Setting(name: "decode_max_dicom_frames", help: "Most frames (slices) in one DICOM body, all its files together. "
                    + "Checked from each file's header, before its frames are read (413 beyond).",
                    kind: .integer(\.decodeMaxDicomFrames, 1...1_000_000)),
            Setting(name: "batch_max_slices", help: "Most slices in one batch of the inference queue (1: no batching).",
                    kind: .integer(\.batchMaxSlices, 1...4096)),
            Setting(name: "batch_max_cost", help: "Most cost (slices × restorations × steps) in one batch: the work a waiting "
                    + "request may wait for (a single slice always runs).", kind: .integer(\.batchMaxCost, 1...1_000_000)),
            Setting(name: "batch_max_wait_ms", help: "How long the oldest queued slice waits for others to share its batch.",
                    kind: .number(\.batchMaxWaitMilliseconds, 0...60_000)),
            Setting(name: "batch_parallelism", help: "How a batch uses the cores: 'slices' runs its slices one per core, each core taking the next "
                    + "when it is free; 'kernels' runs it as one call, each of its passes split over all cores.",
                    kind: .text(\.batchParallelism, allowed: BatchParallelism.allCases.map(\.rawValue))),
            Setting(name: "queue_order", help: "How waiting requests share batches: 'round-robin' takes a slice from each in turn; "
                    + "'shortest-first' serves the request with the least work left first.",
                    kind: .text(\.queueOrder, allowed: QueueOrder.allCases.map(\.rawValue))),
            Setting(name: "queue_max_slices", help: "Slices waiting in the queue; requests beyond are answered 503.",
                    kind: .integer(\.queueMaxSlices, 1...10_000_000)),
            Setting(name: "request_max_slices", help: "Most slices one request may bring (413 beyond).",
                    kind: .integer(\.requestMaxSlices, 1...10_000_000)),
            Setting(name: "request_max_cost", help: "Most cost (slices × restorations × steps) one request may ask for (422 beyond).",
                    kind: .integer(\.requestMaxCost, 1...(1 << 40))),
            Setting(name: "request_timeout_seconds", help: "A request not answered this long after its head arrived is answered 504.",
                    kind: .number(\.requestTimeoutSeconds, 0.001...day)),
            Setting(name: "retry_after_seconds", help: "Retry-After of 503 answers.", kind: .integer(\.retryAfterSeconds, 0...86_400)),
            Setting(name: "max_restorations", help: "Largest 'restorations' a request may ask for (422 beyond).",
                    kind: .integer(\.maxRestorations, 1...1024)),
            Setting(name: "max_steps", help: "Largest 'steps' a request may ask for (422 beyond).", kind: .integer(\.maxSteps, 1...1024)),
        ]
    }

    public static func setting(named name: String) -> Setting? { settings.first { $0.name == name } }

    /// The defaults, overridden by the configuration file's text (when given), then the environment, then
    /// command-line flags (`--name value` or `--name=value`); validated as a whole.
    public static func resolve(file: (path: String, text: String)?, environment: [String: String],
                               flags: [String]) throws(ConfigurationError) -> ServiceConfiguration {
        var configuration = ServiceConfiguration()
        if let file {
            for entry in try ConfigurationFile.entries(file.text, path: file.path) {
                guard let setting = setting(named: entry.key) else {
                    throw ConfigurationError("\(file.path):\(entry.line): unknown setting '\(entry.key)' (known: "
                                             + settings.map(\.name).joined(separator: ", ") + ")")
                }
                try setting.apply(entry.value, quoted: entry.quoted, source: "\(file.path):\(entry.line)", to: &configuration)
            }
        }
        for setting in settings {
            if let value = environment[setting.environmentName] {
                try setting.apply(value, source: "the environment variable \(setting.environmentName)", to: &configuration)
            }
        }
        var remaining = flags[...]
        while let argument = remaining.popFirst() {
            let (flag, inline) = argument.firstIndex(of: "=").map { (String(argument[..<$0]), String(argument[argument.index(after: $0)...])) }
                ?? (argument, nil)
            guard let setting = settings.first(where: { $0.flag == flag }) else {
                throw ConfigurationError("unknown option '\(flag)' (see mimood serve --help)")
            }
            guard let value = inline ?? remaining.popFirst() else { throw ConfigurationError("\(flag) needs a value") }
            try setting.apply(value, source: "the option \(flag)", to: &configuration)
        }
        if let conflict = configuration.conflict { throw ConfigurationError(conflict) }
        return configuration
    }

    /// Every setting with its flag, environment variable, what it takes and its default: `mimood serve --help`.
    public static var helpText: String {
        let defaults = ServiceConfiguration()
        return settings.map { setting in
            "\(setting.flag) (\(setting.environmentName), default '\(setting.value(in: defaults))'): \(setting.help) Takes \(setting.valueDescription)."
        }.joined(separator: "\n\n")
    }
}

/// The configuration file: a subset of TOML. `name = value` lines, where a value is a "string" (with \" and
/// \\ escapes), an integer (`_` separators allowed) or a decimal number; `#` starts a comment; no tables.
enum ConfigurationFile {
    struct Entry: Equatable {
        let key: String
        let value: String
        let quoted: Bool
        let line: Int
    }

    static func entries(_ text: String, path: String) throws(ConfigurationError) -> [Entry] {
        var entries: [Entry] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            func refuse(_ why: String) -> ConfigurationError { ConfigurationError("\(path):\(line): \(why)") }
            let content = rawLine.trimmed(of: " \t\r")
            if content.isEmpty || content.hasPrefix("#") { continue }
            guard let equals = content.firstIndex(of: "=") else { throw refuse("expected 'name = value'") }
            let key = content[..<equals].trimmed(of: " \t")
            guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                throw refuse("'\(key)' is not a setting name (letters, digits and '_')")
            }
            guard entries.allSatisfy({ $0.key != key }) else { throw refuse("\(key) is set twice") }
            var rest = Substring(content[content.index(after: equals)...].trimmed(of: " \t"))
            let value: String, quoted: Bool
            if rest.hasPrefix("\"") {
                rest.removeFirst()
                var unescaped = "", closed = false
                while let character = rest.popFirst() {
                    if character == "\"" { closed = true; break }
                    if character == "\\" {
                        guard let escaped = rest.popFirst(), escaped == "\"" || escaped == "\\" else {
                            throw refuse("only \\\" and \\\\ escapes are supported in strings")
                        }
                        unescaped.append(escaped)
                    } else {
                        unescaped.append(character)
                    }
                }
                guard closed else { throw refuse("the string is not closed") }
                (value, quoted) = (unescaped, true)
            } else {
                let end = rest.firstIndex { $0 == "#" || $0 == " " || $0 == "\t" } ?? rest.endIndex
                (value, quoted) = (String(rest[..<end]), false)
                rest = rest[end...]
            }
            let trailing = rest.trimmed(of: " \t")
            guard trailing.isEmpty || trailing.hasPrefix("#") else { throw refuse("unexpected text after the value") }
            guard quoted || !value.isEmpty else { throw refuse("\(key) has no value") }
            entries.append(Entry(key: key, value: value, quoted: quoted, line: line))
        }
        return entries
    }
}

extension StringProtocol {
    /// Without the given characters at either end (Foundation-free).
    func trimmed(of characters: String) -> String {
        let set = Set(characters)
        guard let first = firstIndex(where: { !set.contains($0) }) else { return "" }
        let last = lastIndex { !set.contains($0) }!
        return String(self[first...last])
    }
}
