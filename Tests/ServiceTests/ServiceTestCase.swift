import Foundation
import Imaging
import XCTest

/// What the tests of the real `mimood serve` share: a scratch folder per test, the server on the parity
/// checkpoint, and input files written into the folder.
class ServiceTestCase: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("mimood-service-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    func serve(_ arguments: [String] = [], environment: [String: String] = [:]) throws -> ServiceProcess {
        try ServiceProcess(["--model", ServiceProcess.parityCheckpoint, "--threads", "2"] + arguments, environment: environment)
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let url = folder.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// The parity input's first slice: a preprocessed 160×160 image in [0, 1].
    func paritySlice() throws -> [Float] {
        let url = ServiceProcess.repository.appendingPathComponent("Tests/Fixtures/parity/input.npy")
        return Array(try NPY.decode([UInt8](Data(contentsOf: url))).values.prefix(160 * 160))
    }
}
