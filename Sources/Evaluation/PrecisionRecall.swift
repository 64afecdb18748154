/// Scores ranked against binary labels, all samples pooled: the exact precision–recall and ROC curves
/// over every distinct score, and the measures of the paper's Tables 1 and 2 taken from them.
///
/// Point i predicts `score >= thresholds[i]`; thresholds run from the highest score down, one point per
/// distinct score, so tied samples enter the positive set together (as scikit-learn's curves do).
public struct PrecisionRecallCurve: Sendable {
    public let thresholds: [Float]
    public let truePositives: [Int]
    public let falsePositives: [Int]
    public let positives: Int
    public let negatives: Int

    /// Scores must be finite (NaN has no rank); labels true = anomalous.
    public init(scores: some Collection<Float>, labels: some Collection<Bool>) {
        precondition(scores.count == labels.count, "\(scores.count) scores for \(labels.count) labels")
        precondition(scores.allSatisfy(\.isFinite), "scores must be finite")
        let ranked = zip(scores, labels).sorted { $0.0 > $1.0 }
        var thresholds: [Float] = [], truePositives: [Int] = [], falsePositives: [Int] = []
        var hits = 0
        for (index, (score, isPositive)) in ranked.enumerated() {
            if isPositive { hits += 1 }
            // A point closes a run of tied scores: the next sample scores lower, or there is none.
            if index + 1 == ranked.count || ranked[index + 1].0 < score {
                thresholds.append(score)
                truePositives.append(hits)
                falsePositives.append(index + 1 - hits)
            }
        }
        self.thresholds = thresholds
        self.truePositives = truePositives
        self.falsePositives = falsePositives
        positives = hits
        negatives = ranked.count - hits
    }

    /// TP / (TP + FP) at each point (never 0/0: every point predicts at least one sample).
    public var precision: [Double] {
        zip(truePositives, falsePositives).map { tp, fp in Double(tp) / Double(tp + fp) }
    }

    /// TP / P at each point; nil without positives.
    public var recall: [Double]? {
        positives == 0 ? nil : truePositives.map { Double($0) / Double(positives) }
    }

    /// scikit-learn's `average_precision_score`: Σ_i (R_i − R_{i−1}) · P_i, with R_{−1} = 0 (a step
    /// function, no interpolation). nil without positives.
    public var averagePrecision: Double? {
        guard let recall else { return nil }
        var previous = 0.0, area = 0.0
        for (r, p) in zip(recall, precision) {
            area += (r - previous) * p
            previous = r
        }
        return area
    }

    /// Area under the ROC curve (FPR, TPR) from (0, 0), trapezoids: a run of ties is a diagonal,
    /// i.e. counts one half. nil unless both classes are present.
    public var auroc: Double? {
        guard positives > 0, negatives > 0 else { return nil }
        var (tpr, fpr, area) = (0.0, 0.0, 0.0)
        for (tp, fp) in zip(truePositives, falsePositives) {
            let (nextTPR, nextFPR) = (Double(tp) / Double(positives), Double(fp) / Double(negatives))
            area += (nextFPR - fpr) * (tpr + nextTPR) / 2
            (tpr, fpr) = (nextTPR, nextFPR)
        }
        return area
    }

    /// The best achievable DICE: the maximum over the curve of F1 = 2TP / (TP + FP + P), exact (no
    /// threshold grid), with the threshold reaching it (the highest one on ties). nil without positives.
    public var bestDice: (dice: Double, threshold: Float)? {
        guard positives > 0 else { return nil }
        var best: (dice: Double, threshold: Float) = (-1, 0)
        for (index, (tp, fp)) in zip(truePositives, falsePositives).enumerated() {
            let f1 = 2 * Double(tp) / Double(tp + fp + positives)
            if f1 > best.dice { best = (f1, thresholds[index]) }
        }
        return best
    }
}

/// DICE of the prediction `score >= threshold` against `labels`: 2|A ∩ B| / (|A| + |B|). nil when
/// there is no lesion (the measure says nothing about a volume without one).
public func dice(scores: some Collection<Float>, labels: some Collection<Bool>, threshold: Float) -> Double? {
    precondition(scores.count == labels.count, "\(scores.count) scores for \(labels.count) labels")
    var (overlap, predicted, lesion) = (0, 0, 0)
    for (score, isLesion) in zip(scores, labels) {
        let isPredicted = score >= threshold
        if isPredicted { predicted += 1 }
        if isLesion { lesion += 1 }
        if isPredicted && isLesion { overlap += 1 }
    }
    return lesion == 0 ? nil : 2 * Double(overlap) / Double(predicted + lesion)
}
