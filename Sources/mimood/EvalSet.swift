import Detection
import Foundation
import Imaging

/// One volume of a labelled evaluation set, preprocessed like every input (docs/preprocessing.md) with
/// its brain and lesion masks, reduced to the slices that are evaluated.
struct LabelledVolume {
    let id: String
    /// The `{id}_t2.nii[.gz]` file, which the triage runs whole, as the service would.
    let t2Path: String
    /// Indices of the evaluated slices in the preprocessed stack (inferior to superior).
    let sliceIndices: [Int]
    /// [slices, 160, 160] in [0, 1], and the masks in the same layout.
    let slices: [Float]
    let brain: [Bool]
    let lesion: [Bool]

    var sliceCount: Int { sliceIndices.count }

    /// `{id}_t2.nii[.gz]` with `{id}_brainmask` and `{id}_seg` beside it (the layout of
    /// docs/synthetic-data.md and of Training/mimood_train/data.py). Of the slices with at least
    /// `DetectionResult.minimumBrainPixelsToShow` brain pixels (the training caches' rule), `slicesPerVolume`
    /// evenly spaced ones are kept (all when 0 or more than there are).
    static func load(t2 path: String, slicesPerVolume: Int) throws -> LabelledVolume {
        let id = idOf(t2: path)
        func read(_ file: String) throws -> NIfTIImage {
            do { return try NIfTI.decode(fileContents(file)) } catch { throw CLIError("\(file): \(error)") }
        }
        let image = try read(path)
        let prefix = String(path.dropLast(path.hasSuffix(".gz") ? "_t2.nii.gz".count : "_t2.nii".count))
        let masks = try ["brainmask", "seg"].map { kind in
            let candidates = [".nii.gz", ".nii"].map { prefix + "_\(kind)" + $0 }
            guard let found = candidates.first(where: FileManager.default.fileExists) else {
                throw CLIError("\(path): no \(kind) beside it (\(candidates[0]))")
            }
            return try read(found)
        }
        let prepared = try Preprocessing.preprocess(image.volume, affine: image.geometry.affine(),
                                                    brainMask: masks[0].volume, lesionMask: masks[1].volume)
        let area = Preprocessing.sliceSize * Preprocessing.sliceSize
        let candidates = (0..<prepared.sliceCount).filter { z in
            prepared.brain[z * area ..< (z + 1) * area].lazy.filter { $0 }.count >= DetectionResult.minimumBrainPixelsToShow
        }
        let chosen = evenlySpaced(candidates, count: slicesPerVolume)
        let lesion = prepared.lesion ?? []
        func pick<T>(_ values: [T]) -> [T] { chosen.flatMap { values[$0 * area ..< ($0 + 1) * area] } }
        return LabelledVolume(id: id, t2Path: path, sliceIndices: chosen, slices: pick(prepared.slices), brain: pick(prepared.brain),
                              lesion: pick(lesion))
    }

    /// Every `*_t2.nii[.gz]` under `directory` (sub-folders included, as BraTS keeps one per subject), sorted.
    static func find(in directory: String) throws -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: directory) else { throw CLIError("cannot read the folder \(directory)") }
        let files = walker.compactMap { $0 as? String }.filter { $0.hasSuffix("_t2.nii.gz") || $0.hasSuffix("_t2.nii") }
        guard !files.isEmpty else { throw CLIError("\(directory): no {id}_t2.nii[.gz] volumes") }
        return files.sorted().map { URL(fileURLWithPath: directory).appendingPathComponent($0).path }
    }

    static func idOf(t2 path: String) -> String {
        String(Detect.stem(of: path).dropLast("_t2".count))
    }

    /// `count` items spread evenly over `items` (the middles of `count` equal parts); all when count is 0 or larger.
    static func evenlySpaced(_ items: [Int], count: Int) -> [Int] {
        guard count > 0, count < items.count else { return items }
        return (0..<count).map { items[(2 * $0 + 1) * items.count / (2 * count)] }
    }
}

/// Volumes reported together: all of them, or those of one lesion kind.
struct VolumeGroup {
    let name: String
    /// Indices into the evaluated volumes.
    let members: [Int]

    static let allName = "all"

    /// All volumes, then one group per lesion kind (in order of first appearance) when `kinds` names the
    /// kind of every volume and there is more than one kind.
    static func groups(of volumes: [LabelledVolume], kinds: [String: String]) -> [VolumeGroup] {
        let all = VolumeGroup(name: allName, members: Array(volumes.indices))
        let perVolume = volumes.compactMap { kinds[$0.id] }
        guard perVolume.count == volumes.count else { return [all] }
        var names: [String] = []
        for kind in perVolume where !names.contains(kind) { names.append(kind) }
        guard names.count > 1 else { return [all] }
        return [all] + names.map { name in VolumeGroup(name: name, members: volumes.indices.filter { perVolume[$0] == name }) }
    }
}

/// Each subject's lesion kind from the generator's `dataset.json` (docs/synthetic-data.md), in the data
/// folder or beside it (`DIR/../dataset.json`, where the synthetic generator writes it): id → kind.
/// Empty when there is no such file or it gives no kinds.
func lesionKinds(besideDataFolder data: String) throws -> [String: String] {
    let folder = URL(fileURLWithPath: data)
    let candidates = [folder.appendingPathComponent("dataset.json"), folder.deletingLastPathComponent().appendingPathComponent("dataset.json")]
    guard let file = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else { return [:] }
    guard let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any] else {
        throw CLIError("\(file.path): not a JSON object")
    }
    let splits = manifest["subjects"] as? [String: [[String: Any]]] ?? [:]
    var kinds: [String: String] = [:]
    for record in splits.values.joined() {
        if let id = record["id"] as? String, let kind = record["lesion_kind"] as? String { kinds[id] = kind }
    }
    return kinds
}
