import Prometheus

/// Prometheus metrics of the service, exposed at GET /metrics in the text exposition format 0.0.4
/// (swift-prometheus). Label values come from closed sets (routes, methods, status codes, refusal
/// reasons), never from request bytes.
public final class Metrics: Sendable {
    /// Upper bounds of the latency buckets: 5 ms to 10 min.
    static let latencyBuckets: [Duration] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
        .map { Duration.nanoseconds(Int64($0 * 1e9)) }
    static let batchSizeBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]

    private let registry = PrometheusCollectorRegistry()
    private let queueWait: DurationHistogram
    private let batchInference: DurationHistogram
    private let batchSlices: ValueHistogram
    private let batchRequests: ValueHistogram
    private let batchFailures: Counter
    private let slicesProcessed: Counter
    private let queueRequests: Gauge
    private let queueSlices: Gauge
    private let memoryReserved: Gauge
    private let ready: Gauge

    public init() {
        queueWait = registry.makeDurationHistogram(descriptor: Self.name("queue_wait", "seconds",
            "Time a request waited in the inference queue before its first batch."), buckets: Self.latencyBuckets)
        batchInference = registry.makeDurationHistogram(descriptor: Self.name("batch_inference", "seconds",
            "Inference time of one batch (ATD→MVTM restoration passes included)."), buckets: Self.latencyBuckets)
        batchSlices = registry.makeValueHistogram(descriptor: Self.name("batch_slices", "", "Slices per batch."),
                                                  buckets: Self.batchSizeBuckets)
        batchRequests = registry.makeValueHistogram(descriptor: Self.name("batch_requests", "", "Requests sharing one batch."),
                                                    buckets: Self.batchSizeBuckets)
        batchFailures = registry.makeCounter(descriptor: Self.name("batch_failures", "total", "Batches the engine failed on."))
        slicesProcessed = registry.makeCounter(descriptor: Self.name("slices_processed", "total", "Slices run through the engine."))
        queueRequests = registry.makeGauge(descriptor: Self.name("queue_requests", "", "Requests with slices waiting in the inference queue."))
        queueSlices = registry.makeGauge(descriptor: Self.name("queue_slices", "", "Slices waiting in the inference queue."))
        memoryReserved = registry.makeGauge(descriptor: Self.name("memory_reserved", "bytes",
            "Bytes of the memory budget held by requests in progress."))
        ready = registry.makeGauge(descriptor: Self.name("ready", "",
            "1 when the model is loaded and warm and the server is not draining."))
    }

    /// One answered request. `route` is a registered path, or "other" for anything else; `protocol` is
    /// "http/1.1" (also for 1.0) or "h2".
    public func recordRequest(route: String, method: String, status: Int, protocol: String, duration: Duration) {
        registry.makeCounter(descriptor: Self.requests,
                             labels: [("route", route), ("method", method), ("status", String(status)), ("protocol", `protocol`)])
            .increment()
        registry.makeDurationHistogram(descriptor: Self.requestDuration, labels: [("route", route)], buckets: Self.latencyBuckets)
            .record(duration)
    }

    public func recordBatch(_ batch: BatchRecord) {
        batchInference.record(batch.duration)
        batchSlices.record(Double(batch.slices))
        batchRequests.record(Double(batch.requests))
        if batch.failed { batchFailures.increment() } else { slicesProcessed.increment(by: Int64(batch.slices)) }
    }

    public func recordQueueWait(_ wait: Duration) {
        queueWait.record(wait)
    }

    /// A request refused before inference; `reason` is one of a fixed few (queue_full, deadline, …).
    public func recordRefusal(_ reason: String) {
        registry.makeCounter(descriptor: Self.refusals, labels: [("reason", reason)]).increment()
    }

    /// One TLS handshake: `result` is completed, closed, refused or timed_out.
    public func recordTLSHandshake(result: String) {
        registry.makeCounter(descriptor: Self.tlsHandshakes, labels: [("result", result)]).increment()
    }

    /// The exposition text, with the queue's depth, the memory held and readiness read at scrape time.
    public func exposition(depth: QueueDepth, memoryReservedBytes: Int, ready isReady: Bool) -> String {
        queueRequests.set(Int64(depth.requests))
        queueSlices.set(Int64(depth.slices))
        memoryReserved.set(Int64(memoryReservedBytes))
        ready.set(to: isReady ? 1 : 0)
        return registry.emitToString()
    }

    // Computed: MetricNameDescriptor is not Sendable, so it cannot be a stored static.
    private static var requests: MetricNameDescriptor { name("http_requests", "total", "HTTP requests answered, by route, method and status.") }
    private static var requestDuration: MetricNameDescriptor {
        name("http_request_duration", "seconds", "Time from the request head to the response, by route.")
    }
    private static var tlsHandshakes: MetricNameDescriptor {
        name("tls_handshakes", "total", "TLS handshakes, by result: completed, closed (by the client), refused, timed_out.")
    }
    private static var refusals: MetricNameDescriptor {
        name("requests_refused", "total", "Detection requests refused or abandoned before their results, by reason.")
    }

    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "mimood", metricName: metric, unitName: unit, helpText: help)
    }
}
