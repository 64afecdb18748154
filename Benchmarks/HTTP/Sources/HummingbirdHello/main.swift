// GET /hello → "Hello, world!" on Hummingbird 2, the reference. Usage: HummingbirdHello PORT
import Hummingbird
import Logging

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 8082 : 8082
let router = Router()
router.get("hello") { _, _ in "Hello, world!" }
var logger = Logger(label: "HummingbirdHello")
logger.logLevel = .warning
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
try await app.runService()
