import Foundation
import XCTest
@testable import Service

final class ConfigurationTests: XCTestCase {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func resolve(file: String? = nil, environment: [String: String] = [:], flags: [String] = []) throws -> ServiceConfiguration {
        try ServiceConfiguration.resolve(file: file.map { ("test.toml", $0) }, environment: environment, flags: flags)
    }

    private func assertRefused(file: String? = nil, environment: [String: String] = [:], flags: [String] = [],
                               mentioning fragments: [String], line: UInt = #line) {
        XCTAssertThrowsError(try resolve(file: file, environment: environment, flags: flags), line: line) { error in
            for fragment in fragments {
                XCTAssertTrue("\(error)".contains(fragment), "'\(error)' does not mention '\(fragment)'", line: line)
            }
        }
    }

    /// The documented default file sets every setting, each to its built-in default.
    func testTheShippedConfigurationFileDocumentsEverySettingWithItsDefault() throws {
        let path = Self.repository.appendingPathComponent("Config/mimood.toml").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let entries = try ConfigurationFile.entries(text, path: path)
        XCTAssertEqual(entries.map(\.key), ServiceConfiguration.settings.map(\.name))
        XCTAssertEqual(try resolve(file: text), ServiceConfiguration())
        for entry in entries {
            let before = text.components(separatedBy: "\n")[entry.line - 2]
            XCTAssertTrue(before.hasPrefix("# "), "\(entry.key) has no comment above it")
        }
    }

    func testLaterSourcesWinFileThenEnvironmentThenFlags() throws {
        let file = "port = 9000\nbatch_max_slices = 4\nhost = \"0.0.0.0\"  # every interface\nrequest_timeout_seconds = 12.5\n"
        let configuration = try resolve(file: file, environment: ["MIMOOD_PORT": "9100", "MIMOOD_BATCH_MAX_COST": "8"],
                                        flags: ["--port", "9200", "--model=/models/x", "--batch-max-wait-ms", "0"])
        XCTAssertEqual(configuration.port, 9200)
        XCTAssertEqual(configuration.host, "0.0.0.0")
        XCTAssertEqual(configuration.batchMaxSlices, 4)
        XCTAssertEqual(configuration.batchMaxCost, 8)
        XCTAssertEqual(configuration.model, "/models/x")
        XCTAssertEqual(configuration.batchMaxWaitMilliseconds, 0)
        XCTAssertEqual(configuration.requestTimeoutSeconds, 12.5)
    }

    func testBadValuesAreRefusedNamingTheSettingAndWhereItCameFrom() {
        assertRefused(flags: ["--port", "70000"], mentioning: ["port", "--port", "0…65535", "70000"])
        assertRefused(environment: ["MIMOOD_THREADS": "many"], mentioning: ["threads", "MIMOOD_THREADS", "many"])
        assertRefused(file: "\n\nbatch_max_cost = 0\n", mentioning: ["test.toml:3", "batch_max_cost"])
        assertRefused(file: "log_level = \"loud\"\n", mentioning: ["log_level", "one of trace"])
        assertRefused(flags: ["--request-timeout-seconds", "nan"], mentioning: ["request_timeout_seconds"])
        assertRefused(flags: ["--decode-max-dicom-files", "0"], mentioning: ["decode_max_dicom_files", "1…1000000"])
        assertRefused(environment: ["MIMOOD_DECODE_MAX_DICOM_FRAMES": "-1"], mentioning: ["decode_max_dicom_frames", "MIMOOD_DECODE_MAX_DICOM_FRAMES"])
        XCTAssertEqual(try resolve(flags: ["--decode-max-dicom-files", "16"]).inputLimits.dicom.maximumFiles, 16)
        XCTAssertEqual(try resolve(flags: ["--decode-max-dicom-frames", "32"]).inputLimits.dicom.maximumFrames, 32)
        // Strings are quoted in the file, numbers are not.
        assertRefused(file: "host = 0.0.0.0\n", mentioning: ["host", "test.toml:1"])
        assertRefused(file: "port = \"8080\"\n", mentioning: ["port"])
    }

    func testUnknownSettingsAndMalformedLinesAreRefused() {
        assertRefused(file: "prot = 8080\n", mentioning: ["test.toml:1", "unknown setting 'prot'"])
        assertRefused(flags: ["--prot", "8080"], mentioning: ["unknown option '--prot'"])
        assertRefused(flags: ["--port"], mentioning: ["--port needs a value"])
        assertRefused(file: "port 8080\n", mentioning: ["expected 'name = value'"])
        assertRefused(file: "port = 1\nport = 2\n", mentioning: ["test.toml:2", "set twice"])
        assertRefused(file: "api_key = \"abc\n", mentioning: ["not closed"])
        assertRefused(file: "port = 8080 8081\n", mentioning: ["after the value"])
        assertRefused(file: "[server]\n", mentioning: ["expected 'name = value'"])
    }

    func testStringsKeepEscapesAndHashes() throws {
        let configuration = try resolve(file: #"api_key = "a#b\"c\\d" # comment"# + "\n")
        XCTAssertEqual(configuration.apiKey, #"a#b"c\d"#)
    }

    func testConflictingSettingsAreRefusedNamingBoth() {
        assertRefused(flags: ["--request-max-slices", "100", "--queue-max-slices", "50"],
                      mentioning: ["request_max_slices", "queue_max_slices"])
        assertRefused(flags: ["--max-body-bytes", "2000000", "--memory-budget-bytes", "1048576"],
                      mentioning: ["max_body_bytes", "memory_budget_bytes"])
        assertRefused(flags: ["--decode-max-bytes", "536870912"], mentioning: ["decode_max_bytes", "memory_budget_bytes"])
    }

    func testTheHealthListenerIsOffUntilItsPortIsSetAndNeedsAPortOfItsOwn() throws {
        XCTAssertEqual(try resolve().healthPort, 0)
        XCTAssertEqual(try resolve(environment: ["MIMOOD_HEALTH_PORT": "8081"]).healthPort, 8081)
        XCTAssertEqual(try resolve(file: "health_port = 9001\n", flags: ["--health-port", "9002"]).healthPort, 9002)
        assertRefused(flags: ["--health-port", "8080"], mentioning: ["health_port (8080)", "port"])
        assertRefused(environment: ["MIMOOD_HEALTH_PORT": "-1"], mentioning: ["health_port", "MIMOOD_HEALTH_PORT"])
    }

    func testTLSIsOffWithoutACertificateAndItsSettingsGoTogether() throws {
        XCTAssertNil(try resolve().tls)
        let tls = try XCTUnwrap(try resolve(environment: ["MIMOOD_TLS_CERTIFICATE_FILE": "/c.pem", "MIMOOD_TLS_KEY_FILE": "/k.pem"],
                                            flags: ["--tls-client-ca-file", "/ca.pem", "--tls-client-auth=required",
                                                    "--tls-handshake-timeout-seconds", "2.5", "--tls-max-handshakes", "64"]).tls)
        XCTAssertEqual(tls.certificateChainFile, "/c.pem")
        XCTAssertEqual(tls.privateKeyFile, "/k.pem")
        XCTAssertEqual(tls.clientCAFile, "/ca.pem")
        XCTAssertEqual(tls.clientAuthentication, .required)
        XCTAssertEqual(tls.handshakeTimeout, .milliseconds(2500))
        XCTAssertEqual(tls.maxHandshakesInProgress, 64)
        assertRefused(flags: ["--tls-certificate-file", "/c.pem"], mentioning: ["tls_certificate_file", "tls_key_file"])
        assertRefused(flags: ["--tls-client-auth", "optional"], mentioning: ["tls_client_auth", "tls_certificate_file"])
        assertRefused(flags: ["--tls-certificate-file", "/c.pem", "--tls-key-file", "/k.pem", "--tls-client-auth", "required"],
                      mentioning: ["tls_client_auth", "tls_client_ca_file"])
        assertRefused(flags: ["--tls-certificate-file", "/c.pem", "--tls-key-file", "/k.pem", "--tls-client-ca-file", "/ca.pem"],
                      mentioning: ["tls_client_ca_file", "'none'"])
        assertRefused(flags: ["--tls-client-auth", "sometimes"], mentioning: ["tls_client_auth", "one of none, optional, required"])
    }

    func testHelpListsEverySettingWithFlagEnvironmentAndDefault() {
        let help = ServiceConfiguration.helpText
        for setting in ServiceConfiguration.settings {
            XCTAssertTrue(help.contains(setting.flag) && help.contains(setting.environmentName), setting.name)
        }
        XCTAssertTrue(help.contains("--port (MIMOOD_PORT, default '8080')"), help)
    }
}
