import ArgumentParser
import Foundation
import HTTPServer
import Kernels
import Logging
import Models
import Service
import Threading

/// `mimood serve`: the detection service over HTTP (docs/service.md).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve POST /detect (and /healthz, /readyz, /metrics, /v1/model, /openapi.yaml) over HTTP.",
        discussion: """
            Settings come from the built-in defaults, then the configuration file (--config, or $MIMOOD_CONFIG; \
            Config/mimood.toml documents every setting), then the environment, then these options. Every setting:

            """ + ServiceConfiguration.helpText)

    @Option(help: "Configuration file: name = value lines, a TOML subset (default: none; $MIMOOD_CONFIG).")
    var config: String?

    @Argument(parsing: .allUnrecognized, help: "Settings as --name value or --name=value, e.g. --host 0.0.0.0 --port 8080 --model DIR.")
    var settings: [String] = []

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let configuration: ServiceConfiguration
        do {
            configuration = try ServiceConfiguration.resolve(file: try configurationFile(environment), environment: environment, flags: settings)
        } catch {
            throw CLIError("configuration: \(error)")
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { JSONLogHandler(label: $0, level: level) }
        let logger = Logger(label: "mimood")
        if configuration.threads > 0 { Threads.count = configuration.threads }

        let modelDirectory = configuration.model.isEmpty
            ? try RepositoryFiles.locate("Models/default", what: "the default model (set --model DIR)") : configuration.model
        let engine: Engine
        do {
            engine = try Engine(Checkpoint(directory: modelDirectory))
        } catch {
            throw CLIError("cannot load the model: \(error)")
        }
        let openapiPath = configuration.openapiFile.isEmpty
            ? try? RepositoryFiles.locate("openapi.yaml", what: "the OpenAPI document") : configuration.openapiFile
        let openapi = try openapiPath.map(readFile)
        if openapi == nil { logger.warning("no openapi.yaml found: GET /openapi.yaml answers 404") }

        let service = DetectionService(configuration: configuration, engine: engine,
                                       openapiDocument: openapi, logger: logger)
        let server = HTTPServer(configuration: serverConfiguration(configuration), router: service.router,
                                onShutdownBegin: { service.beginDrain() }, responseObserver: { service.observe($0) },
                                tlsObserver: { service.observeTLS($0) })
        let healthServer = configuration.healthPort == 0 ? nil
            : HTTPServer(configuration: healthServerConfiguration(configuration), router: service.healthRouter,
                         responseObserver: { service.observe($0, listener: "health") })
        // Bound before the main listener, so that a port in use stops the start. It outlives the main
        // listener's drain, so that probes see readiness turn 503 rather than a refused connection.
        let healthPort: Int?
        do {
            healthPort = try healthServer?.start()
        } catch {
            throw CLIError("health listener (health_port \(configuration.healthPort)): \(error)")
        }
        // Listening before the warm-up: /healthz answers at once, /readyz once the model is warm.
        do {
            try await server.run { port in
                logger.notice("listening", metadata: [
                    "listener": "main", "host": .string(configuration.host), "port": .stringConvertible(port),
                    "scheme": .string(configuration.tls == nil ? "http" : "https"), "model": .string(engine.manifest.name),
                    "model_sha256": .string(engine.modelSHA256), "threads": .stringConvertible(Threads.count),
                ])
                if let healthPort {
                    logger.notice("listening", metadata: [
                        "listener": "health", "host": .string(configuration.host), "port": .stringConvertible(healthPort),
                        "scheme": "http",
                    ])
                }
                Thread.detachNewThread {
                    do {
                        try service.warmUp()
                    } catch {
                        // A model that cannot run one slice will not run requests: stop, so that the orchestrator sees it.
                        logger.critical("warm-up failed", metadata: ["error": .string("\(error)")])
                        Foundation.exit(1)
                    }
                }
            }
        } catch let error as TLSConfigurationError {
            throw CLIError("configuration: setting \(ServiceConfiguration.settingName(of: error.source)): \(error.reason)")
        }
        await healthServer?.shutdown()
        service.shutDown()
        logger.notice("stopped")
    }

    private func configurationFile(_ environment: [String: String]) throws -> (path: String, text: String)? {
        guard let path = config ?? environment["MIMOOD_CONFIG"] else { return nil }
        return (path, String(decoding: try readFile(path), as: UTF8.self))
    }

    private func readFile(_ path: String) throws -> [UInt8] {
        do { return try fileContents(path) } catch { throw CLIError("\(path): \(error)") }
    }

    private func serverConfiguration(_ configuration: ServiceConfiguration) -> ServerConfiguration {
        var server = ServerConfiguration(host: configuration.host, port: configuration.port)
        server.limits.maxBodyBytes = configuration.maxBodyBytes
        server.maxConnections = configuration.maxConnections
        server.headerTimeout = .seconds(configuration.headerTimeoutSeconds)
        server.bodyTimeout = .seconds(configuration.bodyTimeoutSeconds)
        server.bodyDeadline = .seconds(configuration.bodyDeadlineSeconds)
        server.bodyMinimumBytesPerSecond = configuration.bodyMinBytesPerSecond
        server.idleTimeout = .seconds(configuration.idleTimeoutSeconds)
        server.writeTimeout = .seconds(configuration.writeTimeoutSeconds)
        server.drainTimeout = .seconds(configuration.drainTimeoutSeconds)
        server.tls = configuration.tls
        server.http2 = configuration.http2Configuration
        return server
    }

    /// The main listener's limits and timeouts, in plain HTTP (the point of the health listener), for the
    /// few connections that probes and scrapes open.
    private func healthServerConfiguration(_ configuration: ServiceConfiguration) -> ServerConfiguration {
        var health = serverConfiguration(configuration)
        health.port = configuration.healthPort
        health.tls = nil
        health.maxConnections = min(configuration.maxConnections, 16)
        health.ioQueueCount = 1
        return health
    }
}
