import HTTPServer
import XCTest

/// One request as the events described it.
struct ParsedRequest: Equatable {
    var head: RequestHead
    var body: [UInt8] = []
    var isComplete = false
}

/// Everything a parser produced for an input: the requests (body pieces joined, since piece sizes
/// follow the split), the error if one was thrown, and any event that came out of order.
struct ParseOutcome: Equatable {
    var requests: [ParsedRequest] = []
    var error: HTTPParseError?
    var orderViolations: [String] = []
}

/// Feeds the pieces one after another, draining every event after each, as a server would.
func parse(_ pieces: [ArraySlice<UInt8>], limits: HTTPLimits = HTTPLimits()) -> ParseOutcome {
    var parser = RequestParser(limits: limits)
    var outcome = ParseOutcome()
    for piece in pieces {
        parser.feed(piece)
        while true {
            let event: ParseEvent?
            do {
                event = try parser.next()
            } catch {
                outcome.error = error
                return outcome
            }
            guard let event else { break }
            let inRequest = outcome.requests.last.map { !$0.isComplete } ?? false
            switch event {
            case .head(let head):
                if inRequest { outcome.orderViolations.append(".head before .end of the previous request") }
                outcome.requests.append(ParsedRequest(head: head))
            case .body(let bytes):
                guard inRequest else { outcome.orderViolations.append(".body outside a request"); continue }
                if bytes.isEmpty { outcome.orderViolations.append("empty .body") }
                outcome.requests[outcome.requests.count - 1].body += bytes
            case .end:
                guard inRequest else { outcome.orderViolations.append(".end outside a request"); continue }
                outcome.requests[outcome.requests.count - 1].isComplete = true
            }
        }
    }
    return outcome
}

/// The ways every corpus input is cut: whole, byte by byte, in two at every offset, and at random
/// offsets from a fixed seed.
func splits(of bytes: [UInt8], randomCount: Int = 16) -> [(name: String, pieces: [ArraySlice<UInt8>])] {
    var result: [(String, [ArraySlice<UInt8>])] = [("whole", [bytes[...]])]
    result.append(("byte by byte", bytes.indices.map { bytes[$0...$0] }))
    for offset in bytes.indices.dropFirst() {
        result.append(("split at \(offset)", [bytes[..<offset], bytes[offset...]]))
    }
    var generator = SplitMix64(seed: UInt64(bytes.count))
    for round in 0..<randomCount where bytes.count > 2 {
        let cuts = (0..<Int.random(in: 1...8, using: &generator)).map { _ in
            Int.random(in: 1..<bytes.count, using: &generator)
        }
        let bounds = [0] + Set(cuts).sorted() + [bytes.count]
        result.append(("random split \(round)", zip(bounds, bounds.dropFirst()).map { bytes[$0..<$1] }))
    }
    return result
}

/// A small deterministic generator, so that random splits are the same on every run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// The head a request is expected to produce; `Host: h` unless stated.
func expectedHead(_ method: String = "GET", _ target: String = "/", path: String? = nil,
                  query: [(name: String, value: String)] = [], version: HTTPVersion = .http1_1,
                  headers: [(String, String)] = [("Host", "h")]) -> RequestHead {
    RequestHead(method: method, target: target, path: path ?? target, query: query, version: version,
                headers: HTTPHeaders(headers))
}

extension [UInt8] {
    /// Request bytes from a string literal, written with explicit "\r\n".
    init(request: String) { self = Array(request.utf8) }
}
