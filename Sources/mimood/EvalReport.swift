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
    let groups: [VolumeGroup]
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

    func writeTables(table1: [TokenRow], table2: [PixelRow], timings: [(name: String, seconds: Double)], timingSlices: Int,
                     triage: Triage?) throws {
        let seconds = Dictionary(timings, uniquingKeysWith: { first, _ in first })
        let first = table1.first?.all
        var markdown = "# mimood eval\n\nModel: \(model). Data: \(subset). Threads: \(threads).\n\n"
        markdown += "## Table 1: anomalous-token identification\n\nTokens whose 8×8 patch touches the brain: \(first?.tokens ?? 0), "
            + "of which \(first?.anomalous ?? 0) hold lesion.\n\n| Method | AP | AUROC |\n|---|---|---|\n"
        var table1CSV = "scorer,name,group,ap,auroc,tokens,anomalous_tokens\n"
        for row in table1 {
            markdown += "| \(row.row.title) | \(f3(row.all.averagePrecision)) | \(f3(row.all.auroc)) |\n"
            for (group, measures) in zip(groups.map(\.name), [row.all] + row.perKind) {
                table1CSV += "\(row.row.key),\(row.row.title),\(group),\(measures.map { "\($0.averagePrecision),\($0.auroc),\($0.tokens),\($0.anomalous)" } ?? ",,,")\n"
            }
        }
        markdown += "\n## Table 2: pixel-wise detection within the brain mask\n\n"
            + (table2.first.map { wholeBrainBaseline($0.all.prevalence) } ?? "")
            + (timings.isEmpty ? "" : "IT: seconds for one batch of \(timingSlices) slices (tokenise, restore, decode, anomaly map).\n\n")
            + "| Method | Settings | [DICE] | mean volume DICE | AP | AUROC | IT (s) |\n|---|---|---|---|---|---|---|\n"
        var table2CSV = "row,name,group,method,restorations,steps,threshold,best_dice,dice_threshold,mean_volume_dice,ap,auroc,seconds_per_batch,batch_slices\n"
        var perVolume = "volume,slices,lesion_pixels," + table2.map(\.key).joined(separator: ",") + "\n"
        var json: [[String: Any]] = []
        for row in table2 {
            let p = row.setting?.parameters
            let settings = p.map { p in
                row.key == TableTwoRow.vqvae.rawValue ? "R=1, nothing resampled"
                    : "R=\(p.restorations), \(p.method == .ar ? "" : "T=\(p.steps), ")threshold \(format(p.methodThreshold))"
            } ?? "baseline"
            let time = row.setting.flatMap { seconds[$0.name] }
            markdown += "| \(row.title) | \(settings) | \(f3(row.all.dice)) | \(f3(row.all.meanVolumeDice)) | \(f3(row.all.averagePrecision)) "
                + "| \(f3(row.all.auroc)) | \(time.map(f1) ?? "–") |\n"
            let settingColumns = p.map { "\($0.method.rawValue),\($0.restorations),\($0.steps),\($0.methodThreshold)" } ?? ",,,"
            for (group, measures) in zip(groups.map(\.name), [row.all] + row.perKind) {
                table2CSV += "\(row.key),\(row.title),\(group),\(settingColumns),"
                    + (measures.map { "\($0.dice),\($0.threshold),\($0.meanVolumeDice),\($0.averagePrecision),\($0.auroc)" } ?? ",,,,")
                    + ",\(time.map { "\($0)" } ?? ""),\(timingSlices)\n"
            }
            json.append(["row": row.key, "name": row.title, "method": jsonValue(p?.method.rawValue), "restorations": jsonValue(p?.restorations),
                         "steps": jsonValue(p?.steps), "threshold": jsonValue(p.map { Double($0.methodThreshold) }),
                         "seconds_per_batch": jsonValue(time), "volume_dice": row.all.volumeDice.map(jsonValue),
                         "groups": Dictionary(uniqueKeysWithValues: zip(groups.map(\.name), [row.all] + row.perKind).map { group, m in
                             (group, m.map { m -> Any in ["best_dice": m.dice, "dice_threshold": m.threshold, "mean_volume_dice": m.meanVolumeDice,
                                                          "prevalence": m.prevalence, "ap": m.averagePrecision, "auroc": m.auroc] } ?? NSNull())
                         })]
                .merging(["best_dice": row.all.dice, "dice_threshold": row.all.threshold, "mean_volume_dice": row.all.meanVolumeDice,
                          "prevalence": row.all.prevalence, "ap": row.all.averagePrecision, "auroc": row.all.auroc]) { a, _ in a })
        }
        if let fullPass = seconds[TableTwoRow.arFullPassTitle] {
            markdown += "| \(TableTwoRow.arFullPassTitle) | as the KV-cache row: the same restoration | | | | | \(f1(fullPass)) |\n"
            table2CSV += "ar-r4-full-pass,\(TableTwoRow.arFullPassTitle),\(VolumeGroup.allName),ar,4,,,,,,,,\(fullPass),\(timingSlices)\n"
        }
        for (number, volume) in volumes.enumerated() {
            let lesion = volume.lesion.indices.filter { volume.lesion[$0] && volume.brain[$0] }.count
            perVolume += "\(volume.id),\(volume.sliceCount),\(lesion)," + table2.map { $0.all.volumeDice[number].map { "\($0)" } ?? "" }.joined(separator: ",") + "\n"
        }
        markdown += "\n[DICE]: the best achievable DICE, one threshold for all pixels, exact maximum F1 over the precision–recall curve; "
            + "mean volume DICE: the mean over volumes with lesion of their DICE at that threshold (per_volume.csv).\n"
        markdown += perKind(table1: table1, table2: table2)
        var results: [String: Any] = ["table1": table1.map { row in
                                          ["scorer": row.row.key, "name": row.row.title, "ap": row.all.averagePrecision, "auroc": row.all.auroc,
                                           "tokens": row.all.tokens, "anomalous_tokens": row.all.anomalous,
                                           "groups": Dictionary(uniqueKeysWithValues: zip(groups.map(\.name), [row.all] + row.perKind).map { group, m in
                                               (group, m.map { m -> Any in ["ap": m.averagePrecision, "auroc": m.auroc, "tokens": m.tokens,
                                                                            "anomalous_tokens": m.anomalous] } ?? NSNull())
                                           })] as [String: Any]
                                      },
                                      "table2": json, "timing_batch_slices": timingSlices,
                                      "seconds_per_batch": Dictionary(uniqueKeysWithValues: timings.map { ($0.name, $0.seconds) }),
                                      "groups": groups.map { ["name": $0.name, "volumes": $0.members.map { volumes[$0].id }] }]
        if let triage {
            markdown += triageSection(triage)
            try write(triageCSV(triage), "triage.csv")
            results["triage"] = ["setting": triage.setting.key,
                                 "rows": triage.rows.map { ["name": $0.name, "auroc": $0.all,
                                                            "auroc_per_kind": Dictionary(uniqueKeysWithValues: zip(groups.dropFirst().map(\.name), $0.perKind))] },
                                 "healthy_slices": [triage.healthyAllSlices, triage.healthyBrainSlices].map {
                                     ["slices": $0.slices, "flagged_token_fraction": $0.flaggedFraction, "mean_steps_run": $0.meanStepsRun]
                                 }]
        }
        try write(markdown, "results.md")
        try write(table1CSV, "table1.csv")
        try write(table2CSV, "table2.csv")
        try write(perVolume, "per_volume.csv")
        try writeJSON(context.merging(results) { a, _ in a }, "results.json")
        print(markdown)
    }

    /// Both tables again, one column pair per lesion kind; empty without kinds.
    private func perKind(table1: [TokenRow], table2: [PixelRow]) -> String {
        let kinds = groups.dropFirst()
        guard !kinds.isEmpty else { return "" }
        let header = kinds.map { "\($0.name) (\($0.members.count) volume\($0.members.count == 1 ? "" : "s"))" }
        var text = "\n## Per lesion kind\n\nFrom dataset.json. “–”: the kind's evaluated slices hold no lesion.\n\n"
            + "Table 1, AP / AUROC:\n\n| Method | " + header.joined(separator: " | ") + " |\n|---|" + kinds.map { _ in "---|" }.joined() + "\n"
        for row in table1 {
            text += "| \(row.row.title) | " + row.perKind.map { $0.map { "\(f3($0.averagePrecision)) / \(f3($0.auroc))" } ?? "–" }.joined(separator: " | ") + " |\n"
        }
        text += "\nTable 2, [DICE] / AP / AUROC (one threshold per kind):\n\n| Method | " + header.joined(separator: " | ") + " |\n|---|"
            + kinds.map { _ in "---|" }.joined() + "\n"
        for row in table2 {
            text += "| \(row.title) | " + row.perKind.map { $0.map { "\(f3($0.dice)) / \(f3($0.averagePrecision)) / \(f3($0.auroc))" } ?? "–" }
                .joined(separator: " | ") + " |\n"
        }
        return text
    }

    private func triageSection(_ triage: Triage) -> String {
        let lesion = triage.volumes.filter { $0.group != nil }.count
        let kinds = groups.dropFirst()
        var text = "\n## Triage: healthy volumes against volumes with lesion\n\n"
            + "Every volume run whole, every slice, as POST /detect runs it (\(triage.setting.key)): \(lesion) volumes with lesion, "
            + "\(triage.volumes.count - lesion) healthy. Per-volume AUROC (triage.csv has the scores):\n\n"
            + "| Volume score | all | " + kinds.map(\.name).joined(separator: " | ") + (kinds.isEmpty ? "" : " |") + "\n|---|---|"
            + kinds.map { _ in "---|" }.joined() + "\n"
        for row in triage.rows {
            text += "| \(row.name) | \(f3(row.all)) | " + row.perKind.map(f3).joined(separator: " | ") + (kinds.isEmpty ? "" : " |") + "\n"
        }
        text += "\nHealthy slices at the evaluated threshold (\(format(triage.setting.parameters.methodThreshold))): "
            + "the share of tokens the first pass flags, and the passes run (of T = \(triage.setting.parameters.steps)).\n\n"
            + "| Slices | count | tokens flagged | mean steps run |\n|---|---|---|---|\n"
        for (name, activity) in [("every slice", triage.healthyAllSlices),
                                 ("≥ \(DetectionResult.minimumBrainPixelsToShow) brain pixels", triage.healthyBrainSlices)] {
            text += "| \(name) | \(activity.slices) | \(f3(100 * activity.flaggedFraction)) % | \(f3(activity.meanStepsRun)) |\n"
        }
        return text
    }

    private func triageCSV(_ triage: Triage) -> String {
        triage.volumes.reduce("volume,group,max_score,mean_score,brain_map_p99,brain_map_p999,brain_share_above_map_threshold,"
                              + "intensity_score,slices,mean_steps_run\n") { csv, volume in
            let (detection, steps) = (volume.detection, volume.detection.sliceStepsRun)
            return csv + "\(volume.id),\(volume.group ?? "healthy"),\(detection.maximumScore),\(detection.meanScore),"
                + "\(detection.brainMapPercentile(0.99)),\(detection.brainMapPercentile(0.999)),"
                + "\(detection.brainShareAboveMapThreshold.map { "\($0)" } ?? ""),"
                + "\(volume.intensityScore),\(steps.count),\(Double(steps.reduce(0, +)) / Double(max(steps.count, 1)))\n"
        }
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

/// A JSON value, or null.
private func jsonValue(_ value: (some Any)?) -> Any { value ?? NSNull() }

private func f3(_ value: Double) -> String { String(format: "%.3f", value) }
private func f1(_ value: Double) -> String { String(format: "%.1f", value) }
