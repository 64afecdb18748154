// GET /hello → "Hello, world!" on Hummingbird 2, the reference. Usage: HummingbirdHello PORT [https|h2 CERT KEY]
// https: HTTP/1.1 over TLS (HummingbirdTLS); h2: HTTP/2 over TLS, chosen by ALPN (HummingbirdHTTP2).
// TLS by swift-nio-ssl (BoringSSL), TLS 1.2 and 1.3 like ours.
import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import HummingbirdTLS
import Logging

let arguments = CommandLine.arguments
let port = arguments.count > 1 ? Int(arguments[1]) ?? 8082 : 8082
let router = Router()
router.get("hello") { _, _ in "Hello, world!" }
var logger = Logger(label: "HummingbirdHello")
logger.logLevel = .warning

func tls(certificate: String, key: String) throws -> TLSConfiguration {
    var configuration = TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
        privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
    configuration.minimumTLSVersion = .tlsv12
    return configuration
}

let server: HTTPServerBuilder
switch arguments.dropFirst(2).first {
case nil: server = .http1()
case "https" where arguments.count == 5: server = try .tls(.http1(), tlsConfiguration: tls(certificate: arguments[3], key: arguments[4]))
case "h2" where arguments.count == 5: server = try .http2Upgrade(tlsConfiguration: tls(certificate: arguments[3], key: arguments[4]))
default: fatalError("usage: HummingbirdHello PORT [https|h2 CERT KEY]")
}
let app = Application(router: router, server: server, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
try await app.runService()
