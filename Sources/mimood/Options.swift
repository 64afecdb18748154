import ArgumentParser
import Foundation
import Kernels
import Models

/// Where the checkpoint is, and how many threads the kernels use.
struct ModelOptions: ParsableArguments {
    @Option(help: "Checkpoint directory (default: Models/default in the current directory or above the executable).")
    var model: String?

    @Option(help: "Threads for the kernels (default: every online core).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    /// Loads and verifies the checkpoint (hashes, shapes) and sets the thread count.
    func engine() throws -> (Engine, directory: String) {
        if let threads { Threads.count = threads }
        let directory = try model ?? RepositoryFiles.locate("Models/default", what: "the default model (pass --model DIR)")
        do {
            return (try Engine(Checkpoint(directory: directory)), directory)
        } catch {
            throw CLIError("cannot load the model: \(error)")
        }
    }
}

/// Per-call overrides of the checkpoint's inference defaults.
struct InferenceOptions: ParsableArguments {
    @Option(help: "Restorations per slice (R).") var restorations: Int?
    @Option(help: "Maximum detect-and-resample steps (T).") var steps: Int?
    // .unconditional: a negative value (`--threshold -1`) is a value, not an option.
    @Option(parsing: .unconditional,
            help: "The method's threshold: tokens scoring above it are resampled (mim-ood: λ on the ATD probability, mvtm-critic: on the critic's, ar: λ_NLL).")
    var threshold: Float?
    @Option(help: "Seed of the draws; the same seed gives the same output.") var seed: UInt64?
    @Option(help: "mim-ood, ar or mvtm-critic.") var method: String?
    @Option(help: "How restorations combine: mean or softmax-weighted.") var combine: String?

    /// The checkpoint's defaults with these overrides, refused with a message naming the bad value.
    func parameters(defaults: InferenceParameters) throws -> InferenceParameters {
        let chosenMethod = try method.map { name in
            guard let chosen = InferenceMethod(rawValue: name) else {
                throw ValidationError("--method must be one of \(InferenceMethod.allCases.map(\.rawValue).joined(separator: ", ")), got '\(name)'")
            }
            return chosen
        }
        let rule = try combine.map { name in
            guard let rule = CombineRule(rawValue: name) else {
                throw ValidationError("--combine must be mean or softmax-weighted, got '\(name)'")
            }
            return rule
        }
        let parameters = defaults.overriding(method: chosenMethod, restorations: restorations, steps: steps,
                                             threshold: threshold, seed: seed, combine: rule)
        if let problem = parameters.problem { throw ValidationError(problem) }
        return parameters
    }
}

/// A failure the user can act on; printed as it is, without a stack of wrappers.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The bytes of the file at `path`, or an error saying why there are none (the caller names the file).
func fileContents(_ path: String) throws -> [UInt8] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CLIError("no such file") }
    guard !isDirectory.boolValue else { throw CLIError("a directory, not a file") }
    guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("the file cannot be read (permissions?)") }
    return [UInt8](data)
}

/// Files that ship with the repository (the default model, the parity input), found from the current
/// directory or from the executable's location, walking up: the executable lives in .build/<config>/.
enum RepositoryFiles {
    static func locate(_ relativePath: String, what: String) throws -> String {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let starts = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath), executable.deletingLastPathComponent()]
        for start in starts {
            var folder = start.standardizedFileURL
            while true {
                let candidate = folder.appendingPathComponent(relativePath)
                if FileManager.default.fileExists(atPath: candidate.path) { return candidate.path }
                let parent = folder.deletingLastPathComponent()
                if parent.path == folder.path { break }
                folder = parent
            }
        }
        throw CLIError("\(what): no \(relativePath) in the current directory, the executable's, or above them")
    }
}

/// Float32 slices [count, 1, 160, 160] as a tensor.
func sliceTensor(_ scalars: ArraySlice<Float>, count: Int, size: Int) -> Tensor {
    Tensor(shape: [count, 1, size, size], scalars: Array(scalars))
}
