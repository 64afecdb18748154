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
        // The generator's last pass for each sequence (job, row), whose logits a repeat of its input reuses.
        var generated: [SequenceID: GeneratorPass] = [:]
        var running = Set(jobs.indices)
        for step in 0..<(jobs.map(\.parameters.steps).max() ?? 0) {
            // A job ends after its T steps; an abandoned one at the next step (step 0 always runs: it scores the input).
            running = running.filter { step < jobs[$0].parameters.steps && (step == 0 || !jobs[$0].isAbandoned()) }
            if running.isEmpty { break }
            let order = running.sorted()

            // p = detector(y_t): the probability that each token is anomalous. Equal sequences are scored
            // once: at step 0 the R restorations of an image all equal its input.
            let stale = order.flatMap { j in scored[j].indices.filter { scored[j][$0] == nil }.map { SequenceID(job: j, row: $0) } }
            let sequences = stale.map { states[$0.job].tokens[$0.row] }
            for (sequence, p) in zip(stale, mapDistinct(sequences) { detect($0, detector: detector) }) {
                scored[sequence.job][sequence.row] = p
            }
            for j in order {
                states[j].sequencesScored += Set(zip(stale, sequences).filter { $0.0.job == j }.map(\.1)).count
            }
            var toInpaint: [MaskedSequence] = []
            for j in order {
                let parameters = jobs[j].parameters
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
                for (row, mask) in m.enumerated() where mask.contains(true) {
                    toInpaint.append(MaskedSequence(id: SequenceID(job: j, row: row), mask: mask))
                }
            }

            // ŷ ~ softmax(mvtm(y_t with m → [MASK])), and y_{t+1} = y_t·(1 − m) + ŷ·m.
            let changed = try inpaintAll(toInpaint, in: &states, jobs: jobs, step: step, generator: generator,
                                         generated: &generated, sampler: &sampler)
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
    /// its masked tokens set to [MASK]. Equal inputs share one pass, and a sequence whose input is the one
    /// of its last pass (the same mask, and that pass's draws changed masked tokens only, or nothing) keeps
    /// that pass's logits: only its draws are new. Returns the sequences that changed (a draw may give back
    /// the token it replaces).
    private func inpaintAll(_ masked: [MaskedSequence], in states: inout [Restoration], jobs: [JobTokens], step: Int,
                            generator: TokenTransformer, generated: inout [SequenceID: GeneratorPass],
                            sampler: inout some TokenSampler) throws -> [SequenceID] {
        let maskID = generator.config.vocabSize - 1
        let inputs = masked.map { item in
            zip(states[item.id.job].tokens[item.id.row], item.mask).map { token, isMasked in isMasked ? maskID : token }
        }
        let fresh = masked.indices.filter { !reusesGeneratorPasses || generated[masked[$0].id]?.input != inputs[$0] }
        let freshInputs = fresh.map { inputs[$0] }
        let run = { (distinct: [[Int]]) in
            // At most `maxSequencesPerPass` sequences per call, one per pass as in `detect`; logits at the masked positions only.
            stride(from: 0, to: distinct.count, by: maxSequencesPerPass).flatMap { start in
                overCores(Array(distinct[start ..< min(distinct.count, start + maxSequencesPerPass)])) { share in
                    share.map { input in generator.logits(input, at: input.indices.filter { input[$0] == maskID }) }   // [masked, K]
                }
            }
        }
        let logits = reusesGeneratorPasses ? mapDistinct(freshInputs, run) : run(freshInputs)
        for (index, passLogits) in zip(fresh, logits) { generated[masked[index].id] = GeneratorPass(input: inputs[index], logits: passLogits) }
        for j in Set(fresh.map { masked[$0].id.job }) {   // a job's own passes (two jobs' equal inputs count for each)
            var seen = Set<[Int]>()
            let own = fresh.filter { masked[$0].id.job == j }.map { inputs[$0] }.filter { !reusesGeneratorPasses || seen.insert($0).inserted }
            states[j].generatorPasses += own.map { $0.count { $0 == maskID } }
        }

        var changed: [SequenceID] = []
        for item in masked {
            let (job, row) = (item.id.job, item.id.row)
            let pass = generated[item.id]!   // set above for each fresh input; every other input equals its entry
            let codes = pass.logits.shape[1]
            let restorations = jobs[job].parameters.restorations
            let before = states[job].tokens[row]
            for (index, position) in item.mask.indices.filter({ item.mask[$0] }).enumerated() {
                let site = DrawSite(job: jobs[job].index, image: row / restorations, restoration: row % restorations,
                                    step: step, position: position)
                states[job].tokens[row][position] = try sampler.draw(at: site, logits: pass.logits.scalars[index * codes ..< (index + 1) * codes])
            }
            if states[job].tokens[row] != before { changed.append(item.id) }
        }
        return changed
    }
}

/// One sequence of a job: row b·R + r of its restorations.
struct SequenceID: Hashable {
    let job: Int
    let row: Int
}

/// A sequence with the tokens the detector flagged.
private struct MaskedSequence {
    let id: SequenceID
    let mask: [Bool]
}

/// The generator's input of a sequence's last pass and its logits at the masked tokens, [masked, K].
struct GeneratorPass {
    let input: [Int]
    let logits: Tensor
}
