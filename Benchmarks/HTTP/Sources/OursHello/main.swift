// GET /hello → "Hello, world!" on our server. Usage: OursHello PORT [https|h2 CERT KEY]
// (over TLS, ALPN offers h2 and http/1.1 either way: the protocol names the benchmark's row)
import HTTPServer

let arguments = CommandLine.arguments
let port = arguments.count > 1 ? Int(arguments[1]) ?? 8081 : 8081
let hello = Array("Hello, world!".utf8)
var router = Router()
router.add(method: "GET", path: "/hello") { _ in
    HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain; charset=utf-8")]), body: hello)
}
var configuration = ServerConfiguration(host: "127.0.0.1", port: port)
switch arguments.dropFirst(2).first {
case nil: break
case "https" where arguments.count == 5, "h2" where arguments.count == 5:
    configuration.tls = TLSConfiguration(certificateChainFile: arguments[3], privateKeyFile: arguments[4])
default: fatalError("usage: OursHello PORT [https|h2 CERT KEY]")
}
try await HTTPServer(configuration: configuration, router: router).run()
