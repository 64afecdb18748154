import ArgumentParser

/// `mimood`: anomaly detection in brain MRI with MIM-OOD, from the command line.
@main
struct MIMOOD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mimood",
        abstract: "Find anomalies in brain MRI slices and volumes with MIM-OOD (docs/cli.md).",
        subcommands: [Detect.self, Bench.self, Eval.self])
}
