import Kernels

extension Engine {
    /// MIM-OOD (detector = ATD) and the MVTM + Token-Critic baseline (detector = critic), paper §3.4
    /// steps 2–3 repeated up to T times, for several jobs at once:
    ///
    ///   p = detector(y_t)                      probability per token, all B·R sequences of the job
    ///   m = p > λ                              (critic: p > critic_threshold)
    ///   stop the job if m is empty everywhere  (nothing would change any more)
    ///   ŷ ~ softmax(mvtm(y_t with m → [MASK]))  drawn where m only
    ///   y_{t+1} = y_t·(1 − m) + ŷ·m
    ///
    /// R restorations of B images are the B·R sequences of row b·R + r, all starting from the input.
    func restoreIteratively(_ jobs: [JobTokens], detector: TokenTransformer, generator: TokenTransformer,
                            sampler: inout some TokenSampler) throws -> [Restoration] {
        let maskID = generator.config.vocabSize - 1
        var states = jobs.map { job in
            Restoration(tokens: job.tokens.flatMap { Array(repeating: $0, count: job.parameters.restorations) },
                        tokenScores: [], steps: [])
        }
        var running = Set(jobs.indices)
        for step in 0..<(jobs.map(\.parameters.steps).max() ?? 0) {
            // An abandoned job stops at the next step boundary; step 0 always runs, as it gives the token scores.
            running = running.filter { step < jobs[$0].parameters.steps && (step == 0 || !jobs[$0].isAbandoned()) }
            if running.isEmpty { break }
            let order = running.sorted()

            // Detect: one pass over the sequences of every running job.
            let probabilities = try detectorProbabilities(detector, order.flatMap { states[$0].tokens })
            var masked: [(job: Int, row: Int, mask: [Bool])] = []
            var offset = 0
            for j in order {
                let parameters = jobs[j].parameters
                let threshold = parameters.method == .mimOOD ? parameters.lambda : parameters.criticThreshold
                let scores = Array(probabilities[offset ..< offset + states[j].tokens.count])
                offset += scores.count
                if step == 0 {   // every restoration still equals its input: take restoration 0's
                    states[j].tokenScores = stride(from: 0, to: scores.count, by: parameters.restorations).map { scores[$0] }
                }
                let masks = scores.map { row in row.map { $0 > threshold } }
                guard masks.contains(where: { $0.contains(true) }) else {
                    running.remove(j)
                    continue
                }
                states[j].steps.append(RestorationStep(scores: scores, masked: masks))
                for (row, mask) in masks.enumerated() where mask.contains(true) { masked.append((j, row, mask)) }
            }

            // Resample: the generator sees each sequence with its masked tokens set to [MASK].
            for start in stride(from: 0, to: masked.count, by: maxSequencesPerPass) {
                let chunk = masked[start ..< min(masked.count, start + maxSequencesPerPass)]
                let inputs = chunk.map { item in
                    zip(states[item.job].tokens[item.row], item.mask).map { token, isMasked in isMasked ? maskID : token }
                }
                let logits = try generator.logits(inputs)   // [M, N, K]
                let (length, codes) = (logits.shape[1], logits.shape[2])
                for (m, item) in chunk.enumerated() {
                    let restorations = jobs[item.job].parameters.restorations
                    for position in 0..<length where item.mask[position] {
                        let site = DrawSite(job: jobs[item.job].index, image: item.row / restorations,
                                            restoration: item.row % restorations, step: step, position: position)
                        let row = (m * length + position) * codes
                        states[item.job].tokens[item.row][position] = try sampler.draw(at: site, logits: logits.scalars[row ..< row + codes])
                    }
                }
            }
        }
        return states
    }

    /// Detector probabilities of many sequences, at most `maxSequencesPerPass` per pass.
    private func detectorProbabilities(_ detector: TokenTransformer, _ sequences: [[Int]]) throws -> [[Float]] {
        var probabilities: [[Float]] = []
        for start in stride(from: 0, to: sequences.count, by: maxSequencesPerPass) {
            probabilities += try detector.probabilities(Array(sequences[start ..< min(sequences.count, start + maxSequencesPerPass)]))
        }
        return probabilities
    }
}
