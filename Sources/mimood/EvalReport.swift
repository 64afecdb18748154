import Detection
import Foundation
import Imaging
import Models

/// What `mimood eval` writes: Markdown, CSV and JSON of the tables or the sweep, per-volume DICE,
/// and figures.
struct EvalReport {
    let directory: URL
    let model: String
    let data: String
    let volumes: [LabelledVolume]
    let slicesPerVolume: Int
    let threads: Int

    private var subset: String {
        let slices = volumes.map(\.sliceCount).reduce(0, +)
        let perVolume = slicesPerVolume == 0 ? "every slice" : "\(slicesPerVolume) evenly spaced slices"
        return "\(volumes.count) volumes of \(data), \(perVolume) per volume among those with ≥ \(DetectionResult.minimumBrainPixelsToShow) brain pixels: \(slices) slices"
    }

    private var context: [String: Any] {
        ["model": model, "data": data, "volumes": volumes.map(\.id), "slices_per_volume": slicesPerVolume,
         "slices": volumes.map(\.sliceCount).reduce(0, +), "threads": threads]
    }

    func writeTables(table1: [TokenMeasures], table2: [(TableTwoRow, EvalSetting, PixelMeasures)],
                     timings: [(name: String, seconds: Double)], timingSlices: Int) throws {
        let names: [TokenScorer: String] = [.atd: "MIM-OOD (ATD)", .mvtm: "MVTM (NLL)", .ar: "AR (NLL)", .critic: "MVTM + Token-Critic"]
        let seconds = Dictionary(timings, uniquingKeysWith: { first, _ in first })
        var markdown = "# mimood eval\n\nModel: \(model). Data: \(subset). Threads: \(threads).\n\n"
        markdown += "## Table 1: anomalous-token identification\n\nTokens whose 8×8 patch touches the brain: \(table1.first?.tokens ?? 0), "
            + "of which \(table1.first?.anomalous ?? 0) hold lesion.\n\n| Method | AP | AUROC |\n|---|---|---|\n"
        var table1CSV = "scorer,name,ap,auroc,tokens,anomalous_tokens\n"
        for row in table1 {
            markdown += "| \(names[row.scorer]!) | \(f3(row.averagePrecision)) | \(f3(row.auroc)) |\n"
            table1CSV += "\(row.scorer.rawValue),\(names[row.scorer]!),\(row.averagePrecision),\(row.auroc),\(row.tokens),\(row.anomalous)\n"
        }
        markdown += "\n## Table 2: pixel-wise detection within the brain mask\n\n"
            + (table2.first.map { wholeBrainBaseline($0.2.prevalence) } ?? "")
            + (timings.isEmpty ? "" : "IT: seconds for one batch of \(timingSlices) slices (tokenise, restore, decode, anomaly map).\n\n")
            + "| Method | Settings | [DICE] | mean volume DICE | AP | AUROC | IT (s) |\n|---|---|---|---|---|---|---|\n"
        var table2CSV = "row,name,method,restorations,steps,threshold,best_dice,dice_threshold,mean_volume_dice,ap,auroc,seconds_per_batch,batch_slices\n"
        var perVolume = "volume,slices,lesion_pixels," + table2.map(\.0.rawValue).joined(separator: ",") + "\n"
        var json: [[String: Any]] = []
        for (row, setting, measures) in table2 {
            let p = setting.parameters
            let settings = row == .vqvae ? "R=1, nothing resampled" : "R=\(p.restorations), \(p.method == .ar ? "" : "T=\(p.steps), ")threshold \(format(p.methodThreshold))"
            markdown += "| \(row.title) | \(settings) | \(f3(measures.dice)) | \(f3(measures.meanVolumeDice)) | \(f3(measures.averagePrecision)) "
                + "| \(f3(measures.auroc)) | \(seconds[row.title].map(f1) ?? "–") |\n"
            table2CSV += "\(row.rawValue),\(row.title),\(p.method.rawValue),\(p.restorations),\(p.steps),\(p.methodThreshold),\(measures.dice),"
                + "\(measures.threshold),\(measures.meanVolumeDice),\(measures.averagePrecision),\(measures.auroc),"
                + "\(seconds[row.title].map { "\($0)" } ?? ""),\(timingSlices)\n"
            json.append(["row": row.rawValue, "name": row.title, "method": p.method.rawValue, "restorations": p.restorations,
                         "steps": p.steps, "threshold": p.methodThreshold, "best_dice": measures.dice,
                         "dice_threshold": measures.threshold, "mean_volume_dice": measures.meanVolumeDice, "prevalence": measures.prevalence,
                         "ap": measures.averagePrecision, "auroc": measures.auroc, "seconds_per_batch": jsonValue(seconds[row.title]),
                         "volume_dice": measures.volumeDice.map(jsonValue)])
        }
        if let fullPass = seconds[TableTwoRow.arFullPassTitle] {
            markdown += "| \(TableTwoRow.arFullPassTitle) | as the KV-cache row: the same restoration | | | | | \(f1(fullPass)) |\n"
            table2CSV += "ar-r4-full-pass,\(TableTwoRow.arFullPassTitle),ar,4,,,,,,,,\(fullPass),\(timingSlices)\n"
        }
        for (number, volume) in volumes.enumerated() {
            let lesion = volume.lesion.indices.filter { volume.lesion[$0] && volume.brain[$0] }.count
            perVolume += "\(volume.id),\(volume.sliceCount),\(lesion)," + table2.map { $0.2.volumeDice[number].map { "\($0)" } ?? "" }.joined(separator: ",") + "\n"
        }
        markdown += "\n[DICE]: the best achievable DICE, one threshold for all pixels, exact maximum F1 over the precision–recall curve; "
            + "mean volume DICE: the mean over volumes with lesion of their DICE at that threshold (per_volume.csv).\n"
        try write(markdown, "results.md")
        try write(table1CSV, "table1.csv")
        try write(table2CSV, "table2.csv")
        try write(perVolume, "per_volume.csv")
        try writeJSON(context.merging(["table1": table1.map { ["scorer": $0.scorer.rawValue, "name": names[$0.scorer]!, "ap": $0.averagePrecision,
                                                                   "auroc": $0.auroc, "tokens": $0.tokens, "anomalous_tokens": $0.anomalous] },
                                       "table2": json, "timing_batch_slices": timingSlices,
                                       "seconds_per_batch": Dictionary(uniqueKeysWithValues: timings.map { ($0.name, $0.seconds) })]) { a, _ in a },
                      "results.json")
        print(markdown)
    }

    /// sweep.csv and sweep.json; the λ with the best DICE on the λ axis is the one to use on the test set.
    func writeSweep(_ points: [(axis: String, setting: EvalSetting, measures: PixelMeasures)]) throws {
        var csv = "axis,restorations,steps,lambda,best_dice,mean_volume_dice,ap,auroc\n"
        for (axis, setting, m) in points {
            let p = setting.parameters
            csv += "\(axis),\(p.restorations),\(p.steps),\(p.lambda),\(m.dice),\(m.meanVolumeDice),\(m.averagePrecision),\(m.auroc)\n"
        }
        let lambdaAxis = points.filter { $0.axis == "lambda" }
        let chosen = lambdaAxis.max { $0.measures.dice < $1.measures.dice }?.setting.parameters.lambda
        try write(csv, "sweep.csv")
        try writeJSON(context.merging(["chosen_lambda": jsonValue(chosen.flatMap { Double("\($0)") }),   // 0.02, not 0.0199999995
                                       "points": points.map { ["axis": $0.axis, "restorations": $0.setting.parameters.restorations,
                                                               "steps": $0.setting.parameters.steps, "lambda": $0.setting.parameters.lambda,
                                                               "best_dice": $0.measures.dice, "mean_volume_dice": $0.measures.meanVolumeDice, "prevalence": $0.measures.prevalence,
                                                               "ap": $0.measures.averagePrecision, "auroc": $0.measures.auroc] }]) { a, _ in a },
                      "sweep.json")
        print("Sweep on \(subset)\n" + csv)
        if let chosen { print("best DICE on the λ axis at λ = \(format(chosen))") }
    }

    /// figures/<id>.png: top row the input and each method's first restoration; bottom row the lesion
    /// mask and each method's anomaly map, all maps on one scale (black 0, white the figure's largest score).
    func writeFigures(_ figures: [(LabelledVolume, [(String, (slice: Int, result: RestorationResult))])]) throws {
        let size = Preprocessing.sliceSize, area = size * size
        for (volume, methods) in figures {
            guard let slice = methods.first?.1.slice else { continue }
            let input = Array(volume.slices[slice * area ..< (slice + 1) * area])
            let lesion = volume.lesion[slice * area ..< (slice + 1) * area].map { $0 ? Float(1) : 0 }
            let maps = methods.map { $0.1.result.anomalyMap.scalars }
            let scale = max(maps.joined().max() ?? 1, 1e-6)
            let top = [input] + methods.map { Array($0.1.result.restorations.scalars[0 ..< area]) }
            let bottom = [lesion] + maps.map { $0.map { $0 / scale } }
            let columns = top.count
            var pixels = [Float](repeating: 0, count: 2 * columns * area)
            for (row, tiles) in [top, bottom].enumerated() {
                for (column, tile) in tiles.enumerated() {
                    for y in 0..<size {
                        let target = ((row * size + y) * columns + column) * size
                        pixels.replaceSubrange(target ..< target + size, with: tile[y * size ..< (y + 1) * size])
                    }
                }
            }
            let image = GrayImage(width: columns * size, height: 2 * size, pixels: pixels)
            let folder = directory.appendingPathComponent("figures")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data(PNG.encode(PNGImage(gray: image))).write(to: folder.appendingPathComponent("\(volume.id).png"), options: .atomic)
            printError("figure \(volume.id) (slice \(volume.sliceIndices[slice])): columns input/lesion, "
                       + methods.map(\.0).joined(separator: ", ") + String(format: "; maps scaled by 1/%.3f", scale))
        }
    }

    private func write(_ text: String, _ name: String) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: directory.appendingPathComponent(name), options: .atomic)
    }

    private func writeJSON(_ object: [String: Any], _ name: String) throws {
        try write(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self) + "\n", name)
    }
}

/// The prevalence of lesion pixels, and the DICE of marking the whole brain.
private func wholeBrainBaseline(_ prevalence: Double) -> String {
    "Lesion pixels: \(f3(100 * prevalence)) % of the brain pixels; marking all of them scores DICE \(f3(2 * prevalence / (1 + prevalence))).\n\n"
}

/// A JSON number, or null.
private func jsonValue(_ value: Double?) -> Any { value ?? NSNull() }

private func f3(_ value: Double) -> String { String(format: "%.3f", value) }
private func f1(_ value: Double) -> String { String(format: "%.1f", value) }
