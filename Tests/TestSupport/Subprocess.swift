import Foundation

/// What a finished child process printed, and how it ended.
public struct Finished: Sendable {
    public let status: Int32
    public let output: String
    public let errors: String
}

/// Runs `executable` with `arguments` to the end, collecting standard output and standard error
/// (the tests' children print little, well below a pipe's buffer, so reading one after the other is safe).
public func runProcess(_ executable: String, _ arguments: [String]) throws -> Finished {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let (output, errors) = (Pipe(), Pipe())
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Finished(status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
                    errors: String(decoding: errorData, as: UTF8.self))
}

/// The `mimood` executable the end-to-end suites run is not beside the test bundle.
public struct MissingExecutable: Error, CustomStringConvertible {
    public let folder: String
    public init(folder: String) { self.folder = folder }
    public var description: String { "no mimood executable beside the tests in \(folder); build it with `swift build`" }
}
