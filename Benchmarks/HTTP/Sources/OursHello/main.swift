// GET /hello → "Hello, world!" on our server. Usage: OursHello PORT
import HTTPServer

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 8081 : 8081
let hello = Array("Hello, world!".utf8)
var router = Router()
router.add(method: "GET", path: "/hello") { _ in
    HTTPResponse(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain; charset=utf-8")]), body: hello)
}
try await HTTPServer(configuration: ServerConfiguration(host: "127.0.0.1", port: port), router: router).run()
