import ArgumentParser

/// `mimood`: anomaly detection in brain MRI with MIM-OOD, from the command line and as a service.
@main
struct MIMOOD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mimood",
        abstract: "Find anomalies in brain MRI slices and volumes with MIM-OOD (docs/cli.md, docs/service.md).",
        subcommands: [Detect.self, Bench.self, Eval.self, Serve.self])
}
