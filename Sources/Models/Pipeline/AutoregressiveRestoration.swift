import Kernels

/// How the AR baseline computes the logits of raster position i.
public enum ARDecoding: String, Sendable, CaseIterable {
    /// One incremental step per position: position i's keys and values are kept, so it costs one token's work.
    case kvCache = "kv-cache"
    /// A full forward pass over the whole sequence per position, as the paper's baseline ran it
    /// (h·w passes per restoration; the reference `restore_ar` in Training/mimood_train/pipeline.py).
    case fullPass = "full-pass"
}

extension Engine {
    /// The AR baseline (Naval Marimont & Tarroni 2021) in raster order: at position i the AR model,
    /// fed [SOS] and the restored tokens before i, gives the NLL of the current token; above λ_NLL the
    /// token is replaced by a draw from the AR's distribution. The reference runs a full forward pass
    /// per position; with a KV cache each position costs one token's work and gives the same logits.
    func restoreAutoregressively(_ jobs: [JobTokens], model: TokenTransformer,
                                 sampler: inout some TokenSampler) throws -> [Restoration] {
        let startID = model.config.vocabSize - 1
        // Every sequence of every job that is not of a background-only image: (job in `jobs`, row b·R + r).
        let rows = jobs.indices.flatMap { j in
            (0..<jobs[j].tokens.count * jobs[j].parameters.restorations)
                .filter { !jobs[j].background[$0 / jobs[j].parameters.restorations] }.map { (job: j, row: $0) }
        }
        var tokens = jobs.map { job in job.tokens.flatMap { Array(repeating: $0, count: job.parameters.restorations) } }
        // Background-only sequences keep NLL 0 and their tokens; the others are filled position by position.
        var nll = jobs.map { job in
            (0..<job.tokens.count * job.parameters.restorations).map { row -> [Float] in
                job.background[row / job.parameters.restorations] ? [Float](repeating: 0, count: job.tokens[0].count) : []
            }
        }
        var resampled = nll.map { rows in rows.map { row in [Bool](repeating: false, count: row.count) } }

        for start in stride(from: 0, to: rows.count, by: maxSequencesPerPass) {
            let chunk = Array(rows[start ..< min(rows.count, start + maxSequencesPerPass)])
            var cache = model.makeCache(sequences: chunk.count)
            var input = [Int](repeating: startID, count: chunk.count)
            let length = tokens[chunk[0].job][chunk[0].row].count
            for position in 0..<length {
                let logits: Tensor   // [S, K]: p(token at position | prefix)
                switch arDecoding {
                case .kvCache:
                    logits = model.step(input, cache: &cache)
                case .fullPass:
                    let shifted = chunk.map { [startID] + tokens[$0.job][$0.row].dropLast() }
                    logits = row(at: position, of: model.logits(shifted))
                }
                let logProbabilities = logSoftmax(logits).scalars
                let codes = logits.shape[1]
                for (s, item) in chunk.enumerated() {
                    let parameters = jobs[item.job].parameters
                    let current = tokens[item.job][item.row][position]
                    let score = -logProbabilities[s * codes + current]
                    let replace = score > parameters.lambdaNLL
                    nll[item.job][item.row].append(score)
                    resampled[item.job][item.row].append(replace)
                    if replace {
                        let site = DrawSite(job: jobs[item.job].index, image: item.row / parameters.restorations,
                                            restoration: item.row % parameters.restorations, step: 0, position: position)
                        tokens[item.job][item.row][position] = try sampler.draw(at: site, logits: logits.scalars[s * codes ..< (s + 1) * codes])
                    }
                    input[s] = tokens[item.job][item.row][position]
                }
            }
        }

        return jobs.indices.map { j in
            let restorations = jobs[j].parameters.restorations
            // Per input token, its NLL averaged over the restorations (each given its own restored prefix).
            let tokenScores = (0..<jobs[j].tokens.count).map { image -> [Float] in
                let rows = nll[j][image * restorations ..< (image + 1) * restorations]
                return (0..<jobs[j].tokens[image].count).map { position -> Float in
                    rows.reduce(Float(0)) { total, row in total + row[position] } / Float(restorations)
                }
            }
            return Restoration(tokens: tokens[j], tokenScores: tokenScores,
                               steps: [RestorationStep(scores: nll[j], masked: resampled[j])],
                               sequencesScored: rows.filter { $0.job == j }.count)
        }
    }
}

/// x [S, N, K] → [S, K]: every sequence's row at `position`.
private func row(at position: Int, of x: Tensor) -> Tensor {
    let (length, width) = (x.shape[1], x.shape[2])
    var scalars: [Float] = []
    for s in 0..<x.shape[0] {
        let start = (s * length + position) * width
        scalars += x.scalars[start ..< start + width]
    }
    return Tensor(shape: [x.shape[0], width], scalars: scalars)
}
