import Kernels

extension Engine {
    /// MIM-OOD (detector = ATD) and the MVTM + Token-Critic baseline (detector = critic): paper §3.4
    /// steps 2–3, repeated up to T times. R restorations of B images are the B·R sequences y of a job
    /// (row b·R + r), all starting from the input tokens; several jobs run side by side, each with its
    /// own parameters, and `detect` / `inpaintAll` pack their sequences into shared passes.
    func restoreIteratively(_ jobs: [JobTokens], detector: TokenTransformer, generator: TokenTransformer,
                            sampler: inout some TokenSampler) throws -> [Restoration] {
        var states = jobs.map { job in
            Restoration(tokens: job.tokens.flatMap { Array(repeating: $0, count: job.parameters.restorations) },
                        tokenScores: [], steps: [])
        }
        // The detector's probabilities for each sequence's current tokens, nil until it is scored and again
        // once a draw changes it: a sequence that did not change is not scored again (the detector is a
        // function of the tokens), so a restoration with nothing left to resample costs nothing more.
        // A background-only image's sequences are scored 0 and never change.
        var scored = jobs.map { job in
            (0..<job.tokens.count * job.parameters.restorations).map { row -> [Float]? in
                job.background[row / job.parameters.restorations] ? [Float](repeating: 0, count: job.tokens[0].count) : nil
            }
        }
        var running = Set(jobs.indices)
        for step in 0..<(jobs.map(\.parameters.steps).max() ?? 0) {
            // A job ends after its T steps; an abandoned one at the next step (step 0 always runs: it scores the input).
            running = running.filter { step < jobs[$0].parameters.steps && (step == 0 || !jobs[$0].isAbandoned()) }
            if running.isEmpty { break }
            let order = running.sorted()

            // p = detector(y_t): the probability that each token is anomalous. At step 0 the R restorations
            // of an image all equal its input: one pass per image.
            let stale = order.flatMap { j in
                scored[j].indices.filter { scored[j][$0] == nil && (step > 0 || $0 % jobs[j].parameters.restorations == 0) }
                    .map { (job: j, row: $0) }
            }
            for (sequence, p) in zip(stale, detect(stale.map { states[$0.job].tokens[$0.row] }, detector: detector)) {
                scored[sequence.job][sequence.row] = p
                states[sequence.job].sequencesScored += 1
            }
            var toInpaint: [MaskedSequence] = []
            for j in order {
                let parameters = jobs[j].parameters
                if step == 0 {
                    for row in scored[j].indices where row % parameters.restorations != 0 {
                        scored[j][row] = scored[j][row - row % parameters.restorations]
                    }
                }
                let p = scored[j].map { $0! }   // every sequence of a running job has been scored by now
                if step == 0 {   // restoration 0's scores are the input's
                    states[j].tokenScores = stride(from: 0, to: p.count, by: parameters.restorations).map { p[$0] }
                }
                // m = p > λ (critic: p > critic_threshold); a job with nothing left to resample is done.
                let m = p.map { row in row.map { $0 > parameters.methodThreshold } }
                guard m.contains(where: { $0.contains(true) }) else {
                    running.remove(j)
                    continue
                }
                states[j].steps.append(RestorationStep(scores: p, masked: m))
                for (row, mask) in m.enumerated() where mask.contains(true) { toInpaint.append(MaskedSequence(job: j, row: row, mask: mask)) }
            }

            // ŷ ~ softmax(mvtm(y_t with m → [MASK])), and y_{t+1} = y_t·(1 − m) + ŷ·m.
            let changed = try inpaintAll(toInpaint, in: &states, jobs: jobs, step: step, generator: generator, sampler: &sampler)
            for sequence in changed { scored[sequence.job][sequence.row] = nil }
        }
        return states
    }

    /// The detector's probabilities for each sequence, at most `maxSequencesPerPass` sequences per call of
    /// `overCores`, and one sequence per network pass: a core's activations stay in its L2 cache (the MLP's
    /// hidden layer of one 400-token sequence is 800 KB), where a pass over its whole share of 32
    /// went through L3 and memory (docs/engine.md, *A batch over the cores*).
    private func detect(_ sequences: [[Int]], detector: TokenTransformer) -> [[Float]] {
        stride(from: 0, to: sequences.count, by: maxSequencesPerPass).flatMap { start in
            overCores(Array(sequences[start ..< min(sequences.count, start + maxSequencesPerPass)])) { share in
                share.map { detector.probabilities([$0])[0] }
            }
        }
    }

    /// Redraws the masked tokens of every listed sequence from the generator, which sees each sequence with
    /// its masked tokens set to [MASK]; at most `maxSequencesPerPass` sequences per pass. Returns the
    /// sequences that changed (a draw may give back the token it replaces).
    private func inpaintAll(_ masked: [MaskedSequence], in states: inout [Restoration], jobs: [JobTokens], step: Int,
                            generator: TokenTransformer, sampler: inout some TokenSampler) throws -> [MaskedSequence] {
        var changed: [MaskedSequence] = []
        let maskID = generator.config.vocabSize - 1
        for start in stride(from: 0, to: masked.count, by: maxSequencesPerPass) {
            let chunk = masked[start ..< min(masked.count, start + maxSequencesPerPass)]
            let inputs = chunk.map { item in
                (sequence: zip(states[item.job].tokens[item.row], item.mask).map { token, isMasked in isMasked ? maskID : token },
                 positions: item.mask.indices.filter { item.mask[$0] })
            }
            // One sequence per pass, as in `detect`; logits at the masked positions only.
            let logits = overCores(inputs) { share in share.map { generator.logits($0.sequence, at: $0.positions) } }   // M × [masked, K]
            for ((maskedLogits, input), item) in zip(zip(logits, inputs), chunk) {
                let codes = maskedLogits.shape[1]
                let restorations = jobs[item.job].parameters.restorations
                let before = states[item.job].tokens[item.row]
                for (index, position) in input.positions.enumerated() {
                    let site = DrawSite(job: jobs[item.job].index, image: item.row / restorations,
                                        restoration: item.row % restorations, step: step, position: position)
                    let row = index * codes
                    states[item.job].tokens[item.row][position] = try sampler.draw(at: site, logits: maskedLogits.scalars[row ..< row + codes])
                }
                if states[item.job].tokens[item.row] != before { changed.append(item) }
            }
        }
        return changed
    }
}

/// One sequence of a job (row b·R + r of its restorations) with the tokens the detector flagged.
private struct MaskedSequence {
    let job: Int
    let row: Int
    let mask: [Bool]
}
