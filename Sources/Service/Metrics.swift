import Threading

/// Prometheus metrics of the service, exposed at GET /metrics in the text exposition format 0.0.4.
/// Label values come from closed sets (routes, methods, status codes), never from request bytes.
public final class Metrics: Sendable {
    /// Upper bounds of the latency buckets, in seconds: 5 ms to 10 min.
    static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
    static let batchSizeBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256]

    private struct State {
        var requests: [RequestLabels: Int] = [:]
        var requestDurations: [String: Histogram] = [:]
        var queueWait = Histogram(bounds: Metrics.latencyBuckets)
        var batchInference = Histogram(bounds: Metrics.latencyBuckets)
        var batchSlices = Histogram(bounds: Metrics.batchSizeBuckets)
        var batchRequests = Histogram(bounds: Metrics.batchSizeBuckets)
        var batchFailures = 0
        var slicesProcessed = 0
        var refusals: [String: Int] = [:]
    }

    private struct RequestLabels: Hashable, Comparable {
        let route: String
        let method: String
        let status: Int

        static func < (lhs: Self, rhs: Self) -> Bool {
            (lhs.route, lhs.method, lhs.status) < (rhs.route, rhs.method, rhs.status)
        }
    }

    private let state = LockedValue(State())

    public init() {}

    /// One answered request. `route` is a registered path, or "other" for anything else.
    public func recordRequest(route: String, method: String, status: Int, duration: Duration) {
        state.withLock { state in
            state.requests[RequestLabels(route: route, method: method, status: status), default: 0] += 1
            state.requestDurations[route, default: Histogram(bounds: Self.latencyBuckets)].observe(duration.inSeconds)
        }
    }

    public func recordBatch(_ batch: BatchRecord) {
        state.withLock { state in
            state.batchInference.observe(batch.duration.inSeconds)
            state.batchSlices.observe(Double(batch.slices))
            state.batchRequests.observe(Double(batch.requests))
            if batch.failed { state.batchFailures += 1 } else { state.slicesProcessed += batch.slices }
        }
    }

    public func recordQueueWait(_ wait: Duration) {
        state.withLock { $0.queueWait.observe(wait.inSeconds) }
    }

    /// A request refused before inference; `reason` is one of a fixed few (queue_full, deadline, …).
    public func recordRefusal(_ reason: String) {
        state.withLock { $0.refusals[reason, default: 0] += 1 }
    }

    /// The exposition text, with the queue's depth and readiness read at scrape time.
    public func exposition(depth: QueueDepth, memoryReservedBytes: Int, ready: Bool) -> String {
        let state = state.withLock { $0 }
        var text = ""
        func family(_ name: String, _ type: String, _ help: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        family("mimood_http_requests_total", "counter", "HTTP requests answered, by route, method and status.")
        for labels in state.requests.keys.sorted() {
            text += "mimood_http_requests_total{route=\"\(labels.route)\",method=\"\(labels.method)\",status=\"\(labels.status)\"} \(state.requests[labels]!)\n"
        }
        family("mimood_http_request_duration_seconds", "histogram", "Time from the request head to the response, by route.")
        for route in state.requestDurations.keys.sorted() {
            text += state.requestDurations[route]!.lines("mimood_http_request_duration_seconds", labels: "route=\"\(route)\"")
        }
        family("mimood_queue_wait_seconds", "histogram", "Time a request waited in the inference queue before its first batch.")
        text += state.queueWait.lines("mimood_queue_wait_seconds")
        family("mimood_batch_inference_seconds", "histogram", "Inference time of one batch (ATD→MVTM restoration passes included).")
        text += state.batchInference.lines("mimood_batch_inference_seconds")
        family("mimood_batch_slices", "histogram", "Slices per batch.")
        text += state.batchSlices.lines("mimood_batch_slices")
        family("mimood_batch_requests", "histogram", "Requests sharing one batch.")
        text += state.batchRequests.lines("mimood_batch_requests")
        family("mimood_batch_failures_total", "counter", "Batches the engine failed on.")
        text += "mimood_batch_failures_total \(state.batchFailures)\n"
        family("mimood_slices_processed_total", "counter", "Slices run through the engine.")
        text += "mimood_slices_processed_total \(state.slicesProcessed)\n"
        family("mimood_requests_refused_total", "counter", "Detection requests refused or abandoned before their results, by reason.")
        for reason in state.refusals.keys.sorted() {
            text += "mimood_requests_refused_total{reason=\"\(reason)\"} \(state.refusals[reason]!)\n"
        }
        family("mimood_queue_requests", "gauge", "Requests with slices waiting in the inference queue.")
        text += "mimood_queue_requests \(depth.requests)\n"
        family("mimood_queue_slices", "gauge", "Slices waiting in the inference queue.")
        text += "mimood_queue_slices \(depth.slices)\n"
        family("mimood_memory_reserved_bytes", "gauge", "Bytes of the memory budget held by requests in progress.")
        text += "mimood_memory_reserved_bytes \(memoryReservedBytes)\n"
        family("mimood_ready", "gauge", "1 when the model is loaded and warm and the server is not draining.")
        text += "mimood_ready \(ready ? 1 : 0)\n"
        return text
    }
}

/// A Prometheus histogram: cumulative bucket counts, a sum and a count.
struct Histogram: Sendable {
    let bounds: [Double]
    private(set) var counts: [Int]
    private(set) var sum = 0.0
    private(set) var count = 0

    init(bounds: [Double]) {
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count)
    }

    mutating func observe(_ value: Double) {
        for (index, bound) in bounds.enumerated() where value <= bound { counts[index] += 1 }
        sum += value
        count += 1
    }

    func lines(_ name: String, labels: String = "") -> String {
        let prefix = labels.isEmpty ? "" : labels + ","
        var text = ""
        for (bound, count) in zip(bounds, counts) {
            text += "\(name)_bucket{\(prefix)le=\"\(bound)\"} \(count)\n"
        }
        text += "\(name)_bucket{\(prefix)le=\"+Inf\"} \(count)\n"
        let suffix = labels.isEmpty ? "" : "{\(labels)}"
        return text + "\(name)_sum\(suffix) \(sum)\n\(name)_count\(suffix) \(count)\n"
    }
}
