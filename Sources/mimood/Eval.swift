import ArgumentParser
import Evaluation
import Foundation
import Imaging
import Kernels
import Models

/// `mimood eval`: the paper's Tables 1 and 2, or with `--sweep` its supplementary Figure 4, on a
/// labelled NIfTI set (docs/results.md).
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Token- and pixel-level AP, AUROC and best DICE, and time per batch, for MIM-OOD and its baselines on labelled volumes.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Folder of {id}_t2.nii[.gz] volumes with {id}_brainmask and {id}_seg beside them (sub-folders too). A dataset.json in it or beside it that gives each subject's lesion_kind adds per-kind rows.")
    var data: String
    @Option(help: "Folder of healthy {id}_t2.nii[.gz] volumes: triage (every volume run whole, healthy against --data) and the healthy slices' early exit.")
    var healthy: String?
    @Option(help: "Output directory: results, figures, and the per-volume cache a rerun resumes from.") var out: String
    @Option(help: "Evaluate the first N volumes (sorted by name) only.") var maxVolumes: Int?
    @Option(help: "Evenly spaced slices per volume among those with ≥ 1500 brain pixels; 0 = all of them.")
    var slicesPerVolume = 8
    @Option(help: "Table 2 rows, comma-separated: \(TableTwoRow.allCases.map(\.rawValue).joined(separator: ", ")).")
    var methods = TableTwoRow.allCases.map(\.rawValue).joined(separator: ",")
    @Option(help: "MIM-OOD λ (default: the checkpoint's).") var lambda: Float?
    @Option(help: "AR λ_NLL (default: the checkpoint's).") var lambdaNLL: Float?
    @Option(help: "Token-Critic threshold (default: the checkpoint's).") var criticThreshold: Float?
    @Option(help: "Detect-and-resample steps T (default: the checkpoint's; 4 with --sweep, as the paper's Figure 4).")
    var steps: Int?
    @Option(help: "Seed of the draws; slice i of a volume uses seed + i.") var seed: UInt64?
    @Option(help: "Slices in the timed batch of each method (the paper's 32); 0 skips timing.") var timingBatch = 32
    @Option(help: "Slices per engine call (memory bound, not a result).") var batch = 16
    @Option(help: "Volumes with a figure of the input, restorations and maps.") var figures = 3
    @Flag(help: "Figure 4 instead of the tables: best DICE against R, T and λ (use the validation set).") var sweep = false
    @Option(help: "--sweep: values of R (T and λ fixed).") var sweepRestorations = "1,2,4,8"
    @Option(help: "--sweep: values of T (R = 4).") var sweepSteps = "1,2,4,8"
    @Option(help: "--sweep: values of λ (R = 4).") var sweepLambdas = "0.005,0.01,0.02,0.05,0.1,0.2,0.5"

    func validate() throws {
        for (name, value) in [("--slices-per-volume", slicesPerVolume), ("--timing-batch", timingBatch), ("--figures", figures)]
        where value < 0 {
            throw ValidationError("\(name) must be at least 0, got \(value)")
        }
        if batch < 1 { throw ValidationError("--batch must be at least 1, got \(batch)") }
        if let maxVolumes, maxVolumes < 1 { throw ValidationError("--max-volumes must be at least 1, got \(maxVolumes)") }
        _ = try rows()
    }

    func run() throws {
        let (engine, directory) = try modelOptions.engine()
        var base = engine.defaults
        if let lambda { base.lambda = lambda }
        if let lambdaNLL { base.lambdaNLL = lambdaNLL }
        if let criticThreshold { base.criticThreshold = criticThreshold }
        if let seed { base.seed = seed }
        base.steps = steps ?? (sweep ? 4 : base.steps)
        if let problem = base.problem { throw ValidationError(problem) }

        let paths = Array(try LabelledVolume.find(in: data).prefix(maxVolumes ?? .max))
        var volumes: [LabelledVolume] = []
        let started = ContinuousClock.now
        for (number, path) in paths.enumerated() {
            volumes.append(try LabelledVolume.load(t2: path, slicesPerVolume: slicesPerVolume))
            progress("loading volumes", number + 1, of: paths.count, started: started)
        }
        let groups = VolumeGroup.groups(of: volumes, kinds: try lesionKinds(besideDataFolder: data))
        // The cache is per slice subset: another --slices-per-volume evaluates other slices.
        let cacheRoot = URL(fileURLWithPath: out).appendingPathComponent("cache")
        let cache = cacheRoot.appendingPathComponent("\(slicesPerVolume == 0 ? "all" : "\(slicesPerVolume)")-slices")
        let evaluation = EvalRun(engine: engine, volumes: volumes, groups: groups, batch: batch, cache: cache)
        let report = EvalReport(directory: URL(fileURLWithPath: out), model: "\(engine.manifest.name) (\(directory))",
                                data: data, volumes: volumes, groups: groups, slicesPerVolume: slicesPerVolume, threads: Threads.count)
        if sweep {
            try report.writeSweep(sweepSettings(base).map { axis, setting in (axis, setting, try evaluation.pixelMeasures(setting)) })
            return
        }
        let settings = try rows().map { ($0, $0.setting(base)) }
        // The VQ-VAE residual baseline of Table 1 reduces Table 2's `vqvae` maps (cached: computed once for both).
        let vqvae = TableTwoRow.vqvae.setting(base)
        let vqvaeMaps = engine.supports(vqvae.parameters.method) ? try evaluation.anomalyMaps(vqvae) : nil
        let tokenScores = try evaluation.tokenScores(vqvaeMaps: vqvaeMaps)
        let tableOneRows = TokenScorer.allCases.map(TableOneRow.scorer) + [.intensity, .vqvaeResidual]
        let table1 = try tableOneRows.compactMap { row in try tokenScores[row].map { try evaluation.tokenRow(row, scores: $0) } }
        let table2 = try settings.map { row, setting in
            try evaluation.pixelRow(key: row.rawValue, title: row.title, setting: setting, maps: evaluation.anomalyMaps(setting))
        } + PixelBaseline.allCases.compactMap { baseline in
            try evaluation.baselineMaps(baseline, tokenScores: tokenScores).map { maps in
                try evaluation.pixelRow(key: baseline.rawValue, title: baseline.title, setting: nil, maps: maps)
            }
        }
        let triage = try healthy.map { folder in
            try Triage(engine: engine, setting: EvalSetting(name: "the service (\(base.method.rawValue))", parameters: base), batch: batch,
                       cache: cacheRoot.appendingPathComponent("volumes"),
                       lesion: volumes.enumerated().map { index, volume in
                           (volume.id, volume.t2Path, groups.dropFirst().first { $0.members.contains(index) }?.name ?? VolumeGroup.allName)
                       },
                       healthy: try LabelledVolume.find(in: folder), groups: groups)
        }
        var timings: [(name: String, seconds: Double)] = []
        if timingBatch > 0 {
            var timed = settings.map(\.1)
            if let ar = settings.first(where: { $0.0 == .arR4 })?.1 {
                timed.insert(EvalSetting(name: TableTwoRow.arFullPassTitle, parameters: ar.parameters, arDecoding: .fullPass), at: 0)
            }
            timings = try timed.map { setting in (setting.name, try evaluation.timeBatch(setting, slices: timingBatch)) }
        }
        try report.writeTables(table1: table1, table2: table2, timings: timings, timingSlices: min(timingBatch, volumes.map(\.sliceCount).reduce(0, +)),
                               triage: triage)
        if figures > 0 {
            try report.writeFigures(try volumes.prefix(figures).map { volume in
                (volume, try settings.map { row, setting in (row.title, try evaluation.restoreWorstSlice(of: volume, setting)) })
            })
        }
    }

    private func rows() throws -> [TableTwoRow] {
        try methods.split(separator: ",").map { name in
            guard let row = TableTwoRow(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--methods: unknown '\(name)' (known: \(TableTwoRow.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return row
        }
    }

    /// Figure 4's three axes around the base setting (R = 4 on the T and λ axes).
    private func sweepSettings(_ base: InferenceParameters) throws -> [(axis: String, setting: EvalSetting)] {
        func values<T: LosslessStringConvertible>(_ text: String, _ name: String) throws -> [T] {
            try text.split(separator: ",").map {
                guard let value = T(String($0).trimmingCharacters(in: .whitespaces)) else { throw ValidationError("\(name): cannot read '\($0)'") }
                return value
            }
        }
        var mimOOD = base
        mimOOD.method = .mimOOD
        mimOOD.restorations = 4
        func setting(_ edit: (inout InferenceParameters) -> Void) -> EvalSetting {
            var parameters = mimOOD
            edit(&parameters)
            return EvalSetting(name: "MIM-OOD R=\(parameters.restorations) T=\(parameters.steps) λ=\(format(parameters.lambda))", parameters: parameters)
        }
        let restorations: [Int] = try values(sweepRestorations, "--sweep-restorations")
        let steps: [Int] = try values(sweepSteps, "--sweep-steps")
        let lambdas: [Float] = try values(sweepLambdas, "--sweep-lambdas")
        return restorations.map { r in ("R", setting { $0.restorations = r }) }
            + steps.map { t in ("T", setting { $0.steps = t }) }
            + lambdas.map { l in ("lambda", setting { $0.lambda = l }) }
    }
}

/// The rows of the paper's Table 2.
enum TableTwoRow: String, CaseIterable {
    case mimOODR4 = "mim-ood-r4", mimOODR8 = "mim-ood-r8", arR4 = "ar-r4", mvtmCriticR4 = "mvtm-critic-r4", vqvae

    static let arFullPassTitle = "AR restoration R=4 (full pass per position)"

    var title: String {
        switch self {
        case .mimOODR4: "MIM-OOD R=4"
        case .mimOODR8: "MIM-OOD R=8"
        case .arR4: "AR restoration R=4 (KV cache)"
        case .mvtmCriticR4: "MVTM + Token-Critic R=4"
        case .vqvae: "VQ-VAE reconstruction"
        }
    }

    func setting(_ base: InferenceParameters) -> EvalSetting {
        var parameters = base
        parameters.restorations = 4
        switch self {
        case .mimOODR4: parameters.method = .mimOOD
        case .mimOODR8: (parameters.method, parameters.restorations) = (.mimOOD, 8)
        case .arR4: parameters.method = .ar
        case .mvtmCriticR4: parameters.method = .mvtmCritic
        // No ATD probability exceeds λ = 2: nothing is resampled, the restoration is the reconstruction.
        case .vqvae: (parameters.method, parameters.lambda, parameters.restorations) = (.mimOOD, 2, 1)
        }
        return EvalSetting(name: title, parameters: parameters)
    }
}

/// Progress on stderr: what, how far, elapsed time and the time left at this pace.
func progress(_ what: String, _ done: Int, of total: Int, started: ContinuousClock.Instant) {
    let elapsed = (ContinuousClock.now - started).inSeconds
    let left = elapsed / Double(done) * Double(total - done)
    printError(String(format: "%@: %d/%d, %.0f s, about %.0f s left", what, done, total, elapsed, left))
}
