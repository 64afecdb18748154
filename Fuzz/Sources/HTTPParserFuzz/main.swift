// libFuzzer entry point for RequestParser. Each input is checked against three invariants; a violation
// traps, and libFuzzer keeps the input as a crash artifact.
//   1. Parsing never crashes (AddressSanitizer watches memory).
//   2. The outcome is the same whole, byte by byte, and split at two input-derived offsets.
//   3. Every complete request, serialized back to bytes, parses to the same head and body.
import CFuzzerDriver
import Glibc
import HTTPServer

/// Small limits, so that short inputs reach every limit.
let limits = HTTPLimits(maxRequestLineLength: 256, maxHeaderBytes: 512, maxHeaderCount: 8, maxBodyBytes: 1024,
                        maxChunkLineLength: 64, maxLeadingEmptyLines: 2)

/// Requests (head, joined body, completeness) and the error, if any.
struct Outcome: Equatable {
    var requests: [(head: RequestHead, body: [UInt8], isComplete: Bool)] = []
    var error: HTTPParseError?

    static func == (lhs: Outcome, rhs: Outcome) -> Bool {
        lhs.error == rhs.error && lhs.requests.elementsEqual(rhs.requests) {
            $0.head == $1.head && $0.body == $1.body && $0.isComplete == $1.isComplete
        }
    }
}

func parse(_ pieces: [ArraySlice<UInt8>]) -> Outcome {
    var parser = RequestParser(limits: limits)
    var outcome = Outcome()
    for piece in pieces {
        parser.feed(piece)
        do {
            while let event = try parser.next() {
                switch event {
                case .head(let head):
                    precondition(outcome.requests.last?.isComplete ?? true, ".head inside a request")
                    outcome.requests.append((head, [], false))
                case .body(let bytes):
                    precondition(!bytes.isEmpty && outcome.requests.last?.isComplete == false, "stray .body")
                    outcome.requests[outcome.requests.count - 1].body += bytes
                case .end:
                    precondition(outcome.requests.last?.isComplete == false, "stray .end")
                    outcome.requests[outcome.requests.count - 1].isComplete = true
                }
            }
        } catch {
            outcome.error = error
            return outcome
        }
    }
    return outcome
}

/// The request as a client could send it again: same line and fields, the body re-framed the same way.
func serialize(_ head: RequestHead, body: [UInt8]) -> [UInt8] {
    var text = "\(head.method) \(head.target) \(head.version == .http1_1 ? "HTTP/1.1" : "HTTP/1.0")\r\n"
    for field in head.headers { text += "\(field.name): \(field.value)\r\n" }
    text += "\r\n"
    guard head.headers["Transfer-Encoding"] != nil else { return Array(text.utf8) + body }
    let chunk = body.isEmpty ? "" : String(body.count, radix: 16) + "\r\n"
    return Array(text.utf8) + Array(chunk.utf8) + body + Array((body.isEmpty ? "0\r\n\r\n" : "\r\n0\r\n\r\n").utf8)
}

// Exported under libFuzzer's name because -sanitize=fuzzer also links libFuzzer's own main, which refers to
// it; SwiftPM makes the top-level code below the program's entry point, and that passes this function on.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let whole = parse([input[...]])
    precondition(parse(input.indices.map { input[$0...$0] }) == whole, "byte-by-byte outcome differs")
    let first = size / 3, second = size - size / 4
    precondition(parse([input[..<first], input[first..<second], input[second...]]) == whole, "split outcome differs")
    for request in whole.requests where request.isComplete {
        let again = parse([serialize(request.head, body: request.body)[...]])
        precondition(again.error == nil && again.requests.count == 1, "a serialized request does not parse again")
        precondition(again.requests[0].head == request.head && again.requests[0].body == request.body
                     && again.requests[0].isComplete, "a serialized request parses differently")
    }
    return 0
}

// SwiftPM links executables with their own entry point, so this hands control to libFuzzer's driver.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
