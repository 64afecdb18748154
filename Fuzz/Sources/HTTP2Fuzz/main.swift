// libFuzzer entry point for the HTTP/2 connection machine and its nghttp2 session: each input is the
// client's bytes after the connection preface, fed whole and then in two pieces split at an input-derived
// offset. Handlers answer at once. Invariants (a violation traps): nothing crashes (AddressSanitizer
// watches memory), and a stream is never handed to a handler twice.
import CFuzzerDriver
import Glibc
@testable import HTTPServer

/// Small limits, so that short inputs reach them.
let configuration: ServerConfiguration = {
    var configuration = ServerConfiguration()
    configuration.limits = HTTPLimits(maxRequestLineLength: 256, maxHeaderBytes: 512, maxHeaderCount: 8, maxBodyBytes: 1024,
                                      maxChunkLineLength: 64, maxLeadingEmptyLines: 2)
    return configuration
}()
let http2: HTTP2Configuration = {
    var http2 = HTTP2Configuration()
    (http2.maxConcurrentStreams, http2.maxHeaderListBytes, http2.initialWindowBytes) = (4, 512, 2048)
    (http2.resetBurst, http2.resetsPerSecond) = (8, 1)
    return http2
}()
/// The handlers are never called: the fuzzer answers each stream itself, at once.
let router: Router = {
    var router = Router()
    router.add(method: "GET", path: "/a") { _ in HTTPResponse(status: 200) }
    router.add(method: "POST", path: "/b") { _ in HTTPResponse(status: 200) }
    return router
}()

func run(_ pieces: [ArraySlice<UInt8>]) {
    let start = ContinuousClock.now
    guard var machine = HTTP2ConnectionMachine(configuration: configuration, http2: http2, router: router, acceptedAt: start)
    else { return }
    var handled = Set<Int32>()
    var pending: [HTTP2ConnectionMachine.Event] = [.started]
    for (index, piece) in pieces.enumerated() { pending.append(.bytesRead((index == 0 ? ClientPreface.bytes : []) + Array(piece))) }
    pending += [.timerFired, .drainBegan, .drainTimedOut]
    var now = start
    while !pending.isEmpty {
        let event = pending.removeFirst()
        now += .milliseconds(1)
        for action in machine.receive(event, at: now) {
            switch action {
            case .runHandler(let stream, _, let request):
                precondition(handled.insert(stream).inserted, "stream \(stream) handled twice")
                // Larger than the client's window: the rest waits for WINDOW_UPDATE frames from the input.
                let response = HTTPResponse(status: 200, body: request.body + Array(repeating: 0x61, count: 70_000))
                pending.insert(.handlerFinished(stream: stream, .success(response)), at: 0)
            case .write:
                pending.insert(.writeCompleted, at: 0)
            case .armTimer, .cancelHandler, .observe, .close:
                break
            }
        }
    }
}

// Under libFuzzer's name, as HTTPParserFuzz explains.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    run([input[...]])
    if input.count > 1 {
        let split = Int(input[0]) % input.count
        run([input[..<split], input[split...]])
    }
    return 0
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
