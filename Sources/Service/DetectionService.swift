import Crypto
import Detection
import Dispatch
import HTTPServer
import JSON
import Logging
import Models
import Threading

/// The detection service: its routes, the shared inference queue, metrics, readiness and logs
/// (docs/service.md). `mimood serve` builds one, hands `router` to an `HTTPServer`, and calls `warmUp()`.
public final class DetectionService: Sendable {
    public let configuration: ServiceConfiguration
    public let metrics = Metrics()
    let engine: Engine
    let queue: InferenceQueue
    /// `memory_budget_bytes`: every request's body, decode, queued work and response reserve from it.
    let memory: ResourcePool
    /// `decode_max_concurrent` slots: decodes wait for one.
    let decodeSlots: ResourcePool
    let logger: Logger
    private let openapiDocument: [UInt8]?
    private let apiKeyDigest: [UInt8]?
    private let lifecycle = LockedValue((isWarm: false, isDraining: false))

    /// `openapiDocument`: what GET /openapi.yaml serves.
    public init(configuration: ServiceConfiguration, engine: Engine, openapiDocument: [UInt8]?, logger: Logger) {
        self.configuration = configuration
        self.engine = engine
        self.logger = logger
        self.openapiDocument = openapiDocument
        apiKeyDigest = configuration.apiKey.isEmpty ? nil : Array(SHA256.hash(data: Array(configuration.apiKey.utf8)))
        let metrics = metrics
        memory = ResourcePool(capacity: configuration.memoryBudgetBytes)
        decodeSlots = ResourcePool(capacity: configuration.decodeMaxConcurrent)
        queue = InferenceQueue(limits: QueueLimits(
            batchMaxSlices: configuration.batchMaxSlices, batchMaxCost: configuration.batchMaxCost,
            batchMaxWait: .nanoseconds(Int64(configuration.batchMaxWaitMilliseconds * 1e6)),
            maxQueuedSlices: configuration.queueMaxSlices, order: QueueOrder(rawValue: configuration.queueOrder) ?? .roundRobin),
            onBatch: { metrics.recordBatch($0) },
            run: { [parallelism = BatchParallelism(rawValue: configuration.batchParallelism) ?? .slices] jobs in
                try engine.run(jobs, parallelism: parallelism)
            })
    }

    /// Model loaded, warmed up, and not draining.
    public var isReady: Bool { lifecycle.withLock { $0.isWarm && !$0.isDraining } }

    /// Runs one slice through every stage once (first-touch page faults, lazy allocations), then turns ready.
    public func warmUp() throws {
        let started = ContinuousClock.now
        try engine.warmUp()
        lifecycle.withLock { $0.isWarm = true }
        logger.info("warm", metadata: ["duration_ms": .stringConvertible(milliseconds(ContinuousClock.now - started))])
    }

    /// Graceful shutdown began: readiness turns 503 so that load balancers stop sending; work in progress goes on.
    public func beginDrain() {
        lifecycle.withLock { $0.isDraining = true }
        logger.notice("draining")
    }

    /// The server has stopped: the inference queue's worker ends (its running batch stops at the next step),
    /// so that the process exits with no batch running.
    public func shutDown() {
        queue.shutDown()
    }

    /// The routes: POST /detect; GET /healthz, /readyz, /metrics, /v1/model, /openapi.yaml.
    public var router: Router {
        var router = healthRouter
        router.add(method: "POST", path: "/detect", admission: { [self] head, length in admitDetection(head, declaredBodyLength: length) },
                   handler: { [self] request, ticket in await detect(request, ticket) })
        router.add(method: "GET", path: "/v1/model", handler: { [self] request in
            if let refusal = authorize(request.head) { return refusal.response }
            return Self.json(200, modelFacts)
        })
        if let openapiDocument {
            router.add(method: "GET", path: "/openapi.yaml", handler: { _ in
                HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "application/yaml")]), body: openapiDocument)
            })
        }
        return router
    }

    /// GET /healthz, /readyz and /metrics, and nothing else: the health listener's routes (`health_port`),
    /// which answer without TLS, so that no client can reach /detect or /v1/model through them.
    public var healthRouter: Router {
        var router = Router()
        router.add(method: "GET", path: "/healthz", handler: { _ in Self.json(200, JSONObject(["status": .string("alive")])) })
        router.add(method: "GET", path: "/readyz", handler: { [self] _ in
            let (isWarm, isDraining) = lifecycle.withLock { ($0.isWarm, $0.isDraining) }
            if isDraining { return ServiceProblem(503, "the server is draining", headers: retryAfter).response }
            if !isWarm { return ServiceProblem(503, "the model is warming up", headers: retryAfter).response }
            return Self.json(200, JSONObject(["status": .string("ready")]))
        })
        router.add(method: "GET", path: "/metrics", handler: { [self] _ in
            HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain; version=0.0.4; charset=utf-8")]),
                         body: Array(metrics.exposition(depth: queue.depth, memoryReservedBytes: memory.held, ready: isReady).utf8))
        })
        return router
    }

    /// Every answered request, from the HTTP layer: counted in the metrics and logged (metadata only) with
    /// the listener that answered it ("main", or "health" for the health listener).
    public func observe(_ record: ResponseRecord, listener: String = "main") {
        // Label values from a closed set: a client may send any token as its method.
        let method = record.method.map { Self.knownMethods.contains($0) ? $0 : "other" } ?? "-"
        let route = record.route ?? "other"
        let applicationProtocol = record.applicationProtocol.rawValue
        metrics.recordRequest(route: route, method: method, status: record.status, protocol: applicationProtocol, duration: record.duration)
        var metadata: Logger.Metadata = [
            "status": .stringConvertible(record.status), "route": .string(route), "method": .string(method),
            "protocol": .string(applicationProtocol),
            "duration_ms": .stringConvertible(milliseconds(record.duration)),
            "request_bytes": .stringConvertible(record.requestBodyBytes), "response_bytes": .stringConvertible(record.responseBodyBytes),
        ]
        metadata["listener"] = .string(listener)
        // Handlers may set any id: only a sane one is logged (the HTTP layer's own answers carry sane ones).
        if let requestID = record.requestID, RequestID.isSane(requestID) { metadata["request_id"] = .string(requestID) }
        // A TLS client certificate names an operator or a system, not a patient.
        if let subject = record.clientCertificateSubject { metadata["client_subject"] = .string(subject) }
        // Probes and scrapes come every few seconds: they are logged at debug unless they fail.
        let level: Logger.Level = record.status >= 500 ? .warning : Self.quietRoutes.contains(route) && record.status < 400 ? .debug : .info
        logger.log(level: level, "request", metadata: metadata)
    }

    private static let knownMethods: Set = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"]
    private static let quietRoutes: Set = ["/healthz", "/readyz", "/metrics"]

    private var retryAfter: HTTPHeaders { HTTPHeaders([("Retry-After", String(configuration.retryAfterSeconds))]) }

    // MARK: POST /detect

    /// Decided from the head alone, before any body byte is read: readiness, the API key, the body's
    /// Content-Type, the response format, the query, one slice's cost, and room in the memory budget for
    /// the body's first bytes (the rest is reserved as it arrives, see `BodyReservation`).
    private func admitDetection(_ head: RequestHead, declaredBodyLength: Int?) -> Admission<DetectTicket> {
        let requestID = RequestID.answering(head) ?? RequestID.fresh()
        func refuse(_ problem: ServiceProblem, reason: String) -> Admission<DetectTicket> {
            metrics.recordRefusal(reason)
            var response = problem.response
            response.headers.set(RequestID.header, requestID)
            return .refuse(response)
        }
        guard isReady else { return refuse(ServiceProblem(503, "the server is not ready (warming up or draining)", headers: retryAfter), reason: "not_ready") }
        if let refusal = authorize(head) { return refuse(refusal, reason: "unauthorized") }
        let request: DetectRequest
        switch DetectRequest.read(head, defaults: engine.defaults, configuration: configuration, engine: engine) {
        case .success(let read): request = read
        case .failure(let problem): return refuse(problem, reason: "invalid_request")
        }
        guard queue.depth.slices < configuration.queueMaxSlices else {
            return refuse(ServiceProblem(503, "the inference queue is full (\(queue.depth.slices) slices waiting); retry later",
                                         headers: retryAfter), reason: "queue_full")
        }
        let firstBytes = nextBodyAllowance(needed: 0, granted: 0, declaredLength: declaredBodyLength,
                                           maxBodyBytes: configuration.maxBodyBytes)
        guard let reservation = memory.reserve(firstBytes) else { return refuse(overBudget(), reason: "memory") }
        let body = BodyReservation(reservation, refusal: { [self] in
            metrics.recordRefusal("memory")
            var response = overBudget().response
            response.headers.set(RequestID.header, requestID)
            return response
        })
        return .admit(ticket: DetectTicket(request: request, body: body, requestID: requestID, admitted: ContinuousClock.now),
                      bodyAllowance: body)
    }

    private func overBudget() -> ServiceProblem {
        ServiceProblem(503, "the server's memory budget is taken by requests in progress (\(memory.held) of "
                       + "\(configuration.memoryBudgetBytes) bytes, memory_budget_bytes); retry later", headers: retryAfter)
    }

    /// Holds `bytes` of the memory budget from now until the request is answered, waiting for them at most
    /// until `deadline`; 413 for what could never fit.
    private func reserveMemory(_ bytes: Int, for stage: String, deadline: ContinuousClock.Instant) async throws -> PoolReservation {
        guard bytes <= configuration.memoryBudgetBytes else {
            throw ServiceProblem(413, "\(stage) would take about \(bytes) bytes of memory, more than memory_budget_bytes "
                                 + "(\(configuration.memoryBudgetBytes)) allows; send a smaller image or fewer restorations")
        }
        do {
            return try await memory.reserve(bytes, waitingUntil: deadline)
        } catch let error as QueueError {
            throw refusal(error)
        }
    }

    private func detect(_ httpRequest: HTTPRequest, _ ticket: DetectTicket) async -> HTTPResponse {
        var response: HTTPResponse
        do {
            response = try await detect(httpRequest.body, ticket)
        } catch let problem as ServiceProblem {
            response = problem.response
        } catch {
            logger.error("detect failed", metadata: ["request_id": .string(ticket.requestID), "error": .string("\(error)")])
            response = ServiceProblem(500, "the request could not be processed").response
        }
        response.headers.set(RequestID.header, ticket.requestID)
        return response
    }

    private func detect(_ body: [UInt8], _ ticket: DetectTicket) async throws -> HTTPResponse {
        let request = ticket.request
        let deadline = ticket.admitted + .seconds(configuration.requestTimeoutSeconds)
        let decodeStarted = ContinuousClock.now
        let input = try await decode(body, request, deadline: deadline)
        let decodeTime = ContinuousClock.now - decodeStarted
        ticket.hold(try await reserveMemory(RequestMemory.inFlight(input, request.parameters, tokensPerSlice: engine.vqvae.config.grid * engine.vqvae.config.grid,
                                                                   answer: request.responseFormat),
                                            for: "answering this request", deadline: deadline))
        let report: QueueReport
        do {
            report = try await queue.submit(input.jobs(request.parameters, slices: 0..<input.sliceCount), deadline: deadline)
        } catch let error as QueueError {
            throw refusal(error)
        }
        metrics.recordQueueWait(report.queueWait)
        let encodeStarted = ContinuousClock.now
        let result = DetectionResult(input: input, parameters: request.parameters, results: report.results, grid: engine.vqvae.config.grid)
        let timings = JSONObject([
            "decode_ms": .number(milliseconds(decodeTime)), "queue_wait_ms": .number(milliseconds(report.queueWait)),
            "inference_ms": .number(milliseconds(report.inference)),
            "batch_slices": .array(report.batchSlices.map { .integer($0) }),
            "batch_requests": .array(report.batchRequests.map { .integer($0) }),
        ])
        var response = try await offload { [self] in try encode(result, as: request, timings: timings, requestID: ticket.requestID) }
        let serverTiming = [("decode", decodeTime), ("queue", report.queueWait), ("inference", report.inference),
                            ("encode", ContinuousClock.now - encodeStarted), ("total", ContinuousClock.now - ticket.admitted)]
        response.headers.set("Server-Timing", serverTiming.map { "\($0.0);dur=\(milliseconds($0.1))" }.joined(separator: ", "))
        return response
    }

    /// The body as model slices. Everything its header refuses is found first; then it waits for a decode
    /// slot and for the memory its header says the decode will take, and is decoded from that header. A
    /// DICOM header is read by parsing the files: that runs in the slot, within the most the body's
    /// framing and the limits allow (`InputHeader.locateDICOM`, reserved before anything is inflated or
    /// parsed; the files are located once), and the reservation shrinks to the header's estimate once it is read.
    private func decode(_ body: [UInt8], _ request: DetectRequest, deadline: ContinuousClock.Instant) async throws -> DetectionInput {
        guard !body.isEmpty else { throw ServiceProblem(400, "the body is empty; send a .npy, PNG, NIfTI-1 or DICOM image") }
        let limits = configuration.inputLimits
        let dicom: InputHeader.DICOMLocation?
        do {
            dicom = try InputHeader.locateDICOM(bytes: body, preprocessed: request.preprocessed, limits: limits, dicom: request.dicom)
        } catch {
            throw Self.problem(error, declaredFormat: request.declaredFormat, configuration)
        }
        let header: InputHeader, slot: PoolReservation, decodeMemory: PoolReservation
        if let dicom {
            try Self.checkDeclaredFormat(request, agreesWith: .dicom)
            slot = try await decodeSlot(waitingUntil: deadline)
            decodeMemory = try await reserveMemory(dicom.peakBound, for: "reading this DICOM series", deadline: deadline)
            header = try await offload { [configuration] in try Self.header(body, request, located: dicom, limits: limits, configuration) }
            decodeMemory.shrink(to: RequestMemory.decoding(header.cost))
        } else {
            header = try Self.header(body, request, limits: limits, configuration)
            slot = try await decodeSlot(waitingUntil: deadline)
            decodeMemory = try await reserveMemory(RequestMemory.decoding(header.cost), for: "decoding this image", deadline: deadline)
        }
        defer { withExtendedLifetime((slot, decodeMemory)) {} }
        return try await offload { [configuration] in
            do {
                return try DetectionInput(bytes: body, header: header)
            } catch let error as InputError {
                throw Self.problem(error, declaredFormat: request.declaredFormat, configuration)
            }
        }
    }

    /// One of the `decode_max_concurrent` slots, waiting for it at most until `deadline`.
    private func decodeSlot(waitingUntil deadline: ContinuousClock.Instant) async throws -> PoolReservation {
        do {
            return try await decodeSlots.reserve(1, waitingUntil: deadline)
        } catch let error as QueueError {
            throw refusal(error)
        }
    }

    /// The header of `body`, read once, or the problem that refuses it: a limit, a format other than the
    /// declared one, an answer that cannot be produced, or more work than `request_max_cost`.
    private static func header(_ body: [UInt8], _ request: DetectRequest, located: InputHeader.DICOMLocation? = nil,
                               limits: DetectionInput.Limits, _ configuration: ServiceConfiguration) throws -> InputHeader {
        let header: InputHeader
        do {
            header = try InputHeader(bytes: body, preprocessed: request.preprocessed, limits: limits, dicom: request.dicom, located: located)
        } catch {
            throw problem(error, declaredFormat: request.declaredFormat, configuration)
        }
        let cost = header.cost
        try checkDeclaredFormat(request, agreesWith: cost.format)
        if request.responseFormat == .nifti, let reason = cost.niftiOutputRefusal {
            throw ServiceProblem(406, "application/x-nifti cannot be produced: \(reason); ask for application/json or application/x-npz")
        }
        if request.responseFormat.isDICOM, cost.format != .dicom {
            throw ServiceProblem(406, "\(request.responseFormat.rawValue) is produced for DICOM input only; ask for application/json, "
                                 + "application/x-npz or application/x-nifti")
        }
        let work = cost.outputSlices * request.parameters.sliceCost
        guard work <= configuration.requestMaxCost else {
            throw ServiceProblem(422, "the request would cost \(work) (\(cost.outputSlices) slices × \(request.parameters.sliceCost) per slice: "
                                 + "restorations × steps); a request may cost at most \(configuration.requestMaxCost) (request_max_cost): "
                                 + "send fewer slices, restorations or steps")
        }
        return header
    }

    private static func checkDeclaredFormat(_ request: DetectRequest, agreesWith format: InputFormat) throws {
        if let declared = request.declaredFormat, declared != format {
            throw ServiceProblem(400, "Content-Type names a \(declared.rawValue) image, but the body is a \(format.rawValue) image")
        }
    }

    /// An input's refusal as its status, naming the limit's setting where one sets it.
    private static func problem(_ error: InputError, declaredFormat: InputFormat?, _ configuration: ServiceConfiguration) -> ServiceProblem {
        switch error.kind {
        // The sender named a format, so the body is a broken one of it rather than an unknown type.
        case .unsupportedFormat: return ServiceProblem(declaredFormat == nil ? 415 : 400, error.description)
        case .unsupportedEncoding: return ServiceProblem(415, error.description)
        case .malformed: return ServiceProblem(400, error.description)
        case .unprocessable: return ServiceProblem(422, error.description)
        case .tooLarge:
            let setting = switch error.limit {
            case .slices: "request_max_slices: \(configuration.requestMaxSlices)"
            case .dicomFiles: "decode_max_dicom_files: \(configuration.decodeMaxDicomFiles)"
            case .dicomFrames: "decode_max_dicom_frames: \(configuration.decodeMaxDicomFrames)"
            case .resampledVoxels, .decoder, nil:
                "decode_max_bytes: \(configuration.decodeMaxBytes) bytes decoded, \(configuration.decodeMaxBytes / 4) pixels or voxels"
            }
            return ServiceProblem(413, "\(error.description) (\(setting))")
        }
    }

    private func refusal(_ error: QueueError) -> ServiceProblem {
        switch error {
        case .full(let detail):
            metrics.recordRefusal("queue_full")
            return ServiceProblem(503, "the inference queue is full: \(detail); retry later", headers: retryAfter)
        case .deadlineExceeded:
            metrics.recordRefusal("deadline")
            return ServiceProblem(504, "the request was not answered within \(configuration.requestTimeoutSeconds) s (request_timeout_seconds)")
        case .cancelled:
            // The client is gone: nobody reads this answer.
            metrics.recordRefusal("client_gone")
            return ServiceProblem(499, "the client closed the connection")
        case .stopped:
            metrics.recordRefusal("not_ready")
            return ServiceProblem(503, "the server is shutting down", headers: retryAfter)
        case .engineFailed(let reason):
            logger.error("inference failed", metadata: ["error": .string(reason)])
            return ServiceProblem(500, "inference failed on this request's batch")
        }
    }

    // MARK: Responses

    private func encode(_ result: DetectionResult, as request: DetectRequest, timings: JSONObject, requestID: String) throws -> HTTPResponse {
        switch request.responseFormat {
        case .json:
            var body = JSONObject(["request_id": .string(requestID)])
            let detection = try result.json(modelName: engine.manifest.name, modelSHA256: engine.modelSHA256, preprocessed: request.preprocessed)
            for key in detection.keys { body[key] = detection[key] }
            body["timings"] = .object(timings)
            return Self.json(200, body)
        case .npz:
            return HTTPResponse(status: 200, headers: download(request.responseFormat, "anomaly.npz"), body: try result.npz())
        case .nifti:
            guard let nifti = try result.niftiAnomalyMap() else { throw ServiceProblem(406, "application/x-nifti is produced for volume inputs only") }
            return HTTPResponse(status: 200, headers: download(request.responseFormat, "anomaly.nii.gz"), body: nifti)
        case .png:
            return HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "image/png")]), body: try result.overlayPNG())
        case .dicom, .zip:
            let answer: (contentType: String, body: [UInt8])?
            do {
                answer = try result.dicomAnswer(request.responseFormat == .zip ? .zip : .multipart, mapThreshold: engine.manifest.mapThreshold,
                                                softwareVersion: String(engine.manifest.name.prefix(64)))
            } catch let error as InputError {
                throw ServiceProblem(422, error.description)
            }
            guard let answer else { throw ServiceProblem(406, "\(request.responseFormat.rawValue) is produced for DICOM input only") }
            var headers = HTTPHeaders([("Content-Type", answer.contentType)])
            if request.responseFormat == .zip { headers.set("Content-Disposition", "attachment; filename=\"anomaly-dicom.zip\"") }
            return HTTPResponse(status: 200, headers: headers, body: answer.body)
        }
    }

    private func download(_ format: ResponseFormat, _ fileName: String) -> HTTPHeaders {
        HTTPHeaders([("Content-Type", format.rawValue), ("Content-Disposition", "attachment; filename=\"\(fileName)\"")])
    }

    // MARK: GET /v1/model

    private var modelFacts: JSONObject {
        let manifest = engine.manifest
        var components = JSONObject()
        for key in manifest.json["components"]?.objectValue?.keys ?? [] {
            guard let entry = manifest.json["components"]?.objectValue?[key]?.objectValue else { continue }
            components[key] = .object(JSONObject([
                "sha256": entry["sha256"] ?? .null, "num_parameters": entry["num_parameters"] ?? .null,
                "architecture": entry["architecture"] ?? .null,
            ]))
        }
        let available = InferenceMethod.allCases.filter(engine.supports)
        return JSONObject([
            "name": .string(manifest.name), "created": .string(manifest.created), "sha256": .string(engine.modelSHA256),
            "components": .object(components),
            "preprocessing": manifest.json["preprocessing"] ?? .null,
            "inference_defaults": manifest.json["inference"] ?? .null,
            "methods": .array(available.map { .string($0.rawValue) }),
            "limits": .object(JSONObject([
                "max_restorations": .integer(configuration.maxRestorations), "max_steps": .integer(configuration.maxSteps),
                "request_max_slices": .integer(configuration.requestMaxSlices), "max_body_bytes": .integer(configuration.maxBodyBytes),
                "request_timeout_seconds": .number(configuration.requestTimeoutSeconds),
            ])),
        ])
    }

    // MARK: Helpers

    /// nil when the request may pass: no key is configured, or `Authorization: Bearer <key>` matches it.
    /// Digests are compared in constant time, so neither the key's bytes nor its length leak through timing.
    private func authorize(_ head: RequestHead) -> ServiceProblem? {
        guard let apiKeyDigest else { return nil }
        let challenge = HTTPHeaders([("WWW-Authenticate", "Bearer realm=\"mimood\"")])
        guard let field = head.headers["Authorization"], field.count > 7, field.prefix(7).lowercased() == "bearer " else {
            return ServiceProblem(401, "this server needs an API key: send 'Authorization: Bearer <key>'", headers: challenge)
        }
        let presented = Array(SHA256.hash(data: Array(field.dropFirst(7).utf8)))
        let difference = zip(presented, apiKeyDigest).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) }
        return difference == 0 ? nil : ServiceProblem(401, "the API key is not valid", headers: challenge)
    }

    static func json(_ status: Int, _ object: JSONObject) -> HTTPResponse {
        HTTPResponse(status: status, headers: HTTPHeaders([("Content-Type", "application/json")]),
                     body: Array(JSONValue.object(object).jsonText.utf8))
    }
}

/// What admission hands the handler: the parsed request, its body's memory, its id, and the memory it
/// holds until answered. Released with the request, whatever becomes of it.
private final class DetectTicket: Sendable {
    let request: DetectRequest
    let body: BodyReservation
    let requestID: String
    let admitted: ContinuousClock.Instant
    private let held = LockedValue<[PoolReservation]>([])

    init(request: DetectRequest, body: BodyReservation, requestID: String, admitted: ContinuousClock.Instant) {
        (self.request, self.body, self.requestID, self.admitted) = (request, body, requestID, admitted)
    }

    /// Keeps `reservation` until the request is answered.
    func hold(_ reservation: PoolReservation) { held.withLock { $0.append(reservation) } }
}

/// A body's share of the memory budget, grown by the HTTP layer as its bytes arrive.
private final class BodyReservation: BodyAllowance {
    private let reservation: PoolReservation
    private let refusal: @Sendable () -> HTTPResponse

    init(_ reservation: PoolReservation, refusal: @escaping @Sendable () -> HTTPResponse) {
        (self.reservation, self.refusal) = (reservation, refusal)
    }

    func extend(to bytes: Int) -> HTTPResponse? { reservation.grow(to: bytes) ? nil : refusal() }
}

/// Runs CPU-heavy work (decoding, preprocessing, encoding) on a Dispatch thread, keeping it off the
/// Swift concurrency pool that the HTTP handlers share.
func offload<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
    }
}

func milliseconds(_ duration: Duration) -> Double { (duration.inSeconds * 1e6).rounded() / 1e3 }

