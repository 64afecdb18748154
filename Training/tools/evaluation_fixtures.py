"""scikit-learn's measures on seeded random scores, for the Swift metric code (Sources/Evaluation).

    python Training/tools/evaluation_fixtures.py --out Tests/Fixtures/evaluation/sklearn.json

Each case holds scores (rounded to a few levels in some cases, so that ties are many), binary labels
and what scikit-learn gives: average_precision_score, roc_auc_score, and the best DICE as the maximum
F1 over precision_recall_curve with its threshold. Tests/EvaluationTests compare the Swift code with
them; Training/tests/test_evaluation_fixtures.py checks that the committed file is what scikit-learn
gives today. The file regenerates byte for byte.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

SEED = 8
# (name, samples, positive rate, positives' score shift, distinct score levels or None for continuous)
CASES = (("continuous", 400, 0.2, 0.5, None), ("ties", 300, 0.3, 0.5, 7), ("rare-positives", 800, 0.04, 0.2, None),
         ("coarse-ties", 200, 0.5, 0.5, 3))


def sklearn_measures(scores: np.ndarray, labels: np.ndarray) -> dict:
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
    best = int(np.argmax(f1[:-1]))   # the last point (recall 0, precision 1) has no threshold
    return {"average_precision": float(average_precision_score(labels, scores)),
            "auroc": float(roc_auc_score(labels, scores)),
            "best_dice": float(f1[best]), "best_threshold": float(thresholds[best])}


def cases() -> list[dict]:
    rng = np.random.default_rng(SEED)
    out = []
    for name, samples, rate, shift, levels in CASES:
        labels = rng.random(samples) < rate
        # Positives score higher on average, so the measures are far from both 0.5 and 1.
        scores = rng.random(samples) + shift * labels
        if levels is not None:
            scores = np.round(scores * levels) / levels
        scores = scores.astype(np.float32)
        out.append({"name": name, "scores": scores.tolist(), "labels": labels.astype(int).tolist(),
                    **sklearn_measures(scores, labels)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seed": SEED, "cases": cases()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
