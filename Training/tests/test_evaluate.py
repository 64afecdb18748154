import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from torch import nn

from mimood_train import evaluate, pipeline
from mimood_train.config import TransformerConfig
from mimood_train.models import shift_right
from support import GRID, K

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- metrics and ground truth

def test_perfect_and_inverted_scores():
    labels = np.array([0, 0, 1, 0, 1, 1, 0, 0], dtype=bool)
    perfect = evaluate.pooled_metrics(labels.astype(np.float32), labels)
    assert perfect["dice"] == 1.0 and perfect["ap"] == 1.0 and perfect["auroc"] == 1.0
    assert perfect["threshold"] == 1.0 and perfect["prevalence"] == 3 / 8
    assert evaluate.pooled_metrics(-labels.astype(np.float32), labels)["auroc"] == 0.0


def test_metrics_equal_sklearn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.1
    scores = np.round(rng.random(5000) + 0.5 * labels, 2).astype(np.float32)   # many ties
    measured = evaluate.pooled_metrics(scores, labels)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    assert measured["ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert measured["auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert measured["dice"] == pytest.approx(f1.max(), abs=1e-12)
    assert measured["threshold"] == thresholds[np.argmax(f1[:-1])]
    predicted = scores >= measured["threshold"]
    assert measured["dice"] == pytest.approx(2 * (predicted & labels).sum() / (predicted.sum() + labels.sum()))


def test_metrics_refuse_a_single_class():
    with pytest.raises(ValueError, match="both classes"):
        evaluate.pooled_metrics(np.ones(4), np.zeros(4, dtype=bool))


def test_token_ground_truth_is_any_lesion_in_the_patch():
    mask = np.zeros((1, 16, 24), dtype=bool)
    mask[0, 9, 3] = True                      # one pixel in patch (1, 0)
    mask[0, 0:8, 16:24] = True                # all of patch (0, 2)
    mask[0, 7, 15] = True                     # the corner pixel of patch (0, 1)
    expected = np.array([[[False, True, True], [True, False, False]]])
    assert np.array_equal(evaluate.patch_any(mask, 8), expected)


def test_every_kth_keeps_at_most_the_limit():
    assert list(evaluate.every_kth(10, 4)) == [0, 3, 6, 9]
    assert list(evaluate.every_kth(10, 5)) == [0, 2, 4, 6, 8]
    assert list(evaluate.every_kth(3, None)) == [0, 1, 2] and list(evaluate.every_kth(3, 7)) == [0, 1, 2]


def test_subject_dice_averages_subjects_with_lesions():
    scores = np.array([0.9, 0.9, 0.1, 0.9, 0.1, 0.9])
    labels = np.array([1, 0, 0, 1, 1, 0], dtype=bool)
    subjects = np.array([0, 0, 0, 1, 1, 2])   # subject 2 has no lesion: left out
    # subject 0: TP 1, 2 detected, 1 lesion -> 2/3; subject 1: TP 1, 1 detected, 2 lesion -> 2/3
    assert evaluate.subject_dice(scores, labels, subjects, 0.5) == pytest.approx(2 / 3)


def test_choose_best_picks_the_largest_dice_first_on_ties():
    rows = [{"dice": 0.2}, {"dice": 0.5}, {"dice": 0.1}, {"dice": 0.5}]
    assert evaluate.choose_best(rows) == 1


# ---------------------------------------------------------------- token scores

class MaskSpy(nn.Module):
    """An 'MVTM' with uniform logits that records which positions each pass masked."""

    def __init__(self):
        super().__init__()
        self.cfg = TransformerConfig(vocab_size=K + 1, n_positions=GRID * GRID, head="mvtm")
        self.masked = []

    def forward(self, sequences):
        self.masked.append(sequences == K)
        return torch.zeros(*sequences.shape, K)


def test_mvtm_scores_every_token_once_with_its_neighbours_visible():
    spy = MaskSpy()
    grids = torch.randint(0, K, (2, GRID, GRID))
    nll = pipeline.mvtm_token_nll(spy, grids)
    assert torch.allclose(nll, torch.full((2, GRID * GRID), float(np.log(K))))
    passes = torch.stack(spy.masked).reshape(4, 2, GRID, GRID)
    assert torch.equal(passes.sum(0), torch.ones(2, GRID, GRID, dtype=torch.long))   # each token masked once
    for masked in passes[:, 0]:   # the 3×3 window around a masked token holds no other masked token
        window_counts = torch.nn.functional.conv2d(masked.float()[None, None], torch.ones(1, 1, 3, 3), padding=1)[0, 0]
        assert (window_counts[masked] == 1).all()


def test_ar_nll_depends_only_on_the_prefix(runs_dir):
    ar = evaluate.load_model(runs_dir / "ar", "ar")
    grids = torch.randint(0, K, (1, GRID, GRID))
    changed = grids.clone()
    changed[0, 3, 5] = (grids[0, 3, 5] + 1) % K                 # position 29 in raster order
    before, after = pipeline.ar_token_nll(ar, grids), pipeline.ar_token_nll(ar, changed)
    assert torch.equal(before[:, :29], after[:, :29])
    assert not torch.allclose(before[:, 29:], after[:, 29:])
    with torch.no_grad():
        logits = ar(shift_right(grids.reshape(1, -1), K))
    assert before[0, 29] == pytest.approx(float(-torch.log_softmax(logits[0, 29], -1)[grids[0, 3, 5]]), abs=1e-6)


# ---------------------------------------------------------------- pieces

def test_vqvae_piece_equals_the_forward_pass(runs_dir, caches):
    runs = evaluate.load_runs(runs_dir, torch.device("cpu"))
    val = evaluate.load_split(caches, "val")
    indices = np.array([0, 2, 3, 5])
    result = evaluate.evaluate_vqvae(runs["vqvae"], val, evaluate.split_tokens(runs["vqvae"], val, torch.device("cpu")),
                                     indices, 3, torch.device("cpu"))
    x = val.batch(indices, torch.device("cpu"))
    with torch.no_grad():
        error = (runs["vqvae"].model(x)[0] - x).abs()[:, 0]
    brain = torch.from_numpy(val.brain[indices])
    assert result["mae"] == pytest.approx(float(error.mean()), rel=1e-5)
    assert result["mae_brain"] == pytest.approx(float(error[brain].mean()), rel=1e-5)
    assert 0 < result["code_usage"] <= 1 and 1 <= result["perplexity"] <= K


def test_calibration_reports_every_setting_and_chooses_the_best(runs_dir, caches):
    runs = evaluate.load_runs(runs_dir, torch.device("cpu"))
    anomalous = evaluate.load_split(caches, "val_anomalous", with_lesion=True)
    tokens = evaluate.split_tokens(runs["vqvae"], anomalous, torch.device("cpu"))
    result = evaluate.calibrate("mim-ood", [1.5, 0.0, 0.5], runs, anomalous, np.arange(6), tokens, batch_size=4,
                                restorations=2, steps=2, seed=0, device=torch.device("cpu"))
    rows = result["rows"]
    assert [row["setting"] for row in rows] == [1.5, 0.0, 0.5]
    assert rows[0]["steps_run_mean"] == 0 and rows[0]["changed_tokens"] == 0   # λ above every probability
    assert rows[1]["steps_run_mean"] == 2                                     # λ = 0 masks everything
    assert result["chosen"] == rows[int(np.argmax([row["dice"] for row in rows]))]["setting"]
    assert all(0 <= row[key] <= 1 for row in rows for key in ("dice", "ap", "auroc", "subject_dice"))


def test_cli_end_to_end_and_report_merging(runs_dir, caches, tmp_path, capsys):
    out = tmp_path / "report.json"
    common = ["--runs", str(runs_dir), "--caches", str(caches), "--out", str(out), "--threads", "1",
              "--batch-size", "4", "--restorations", "2", "--steps", "2"]
    assert evaluate.main(["vqvae", "mvtm", "tokens", *common]) == 0
    assert evaluate.main(["calibrate", "pixels", *common, "--lambdas", "0.2,0.6", "--critic-thresholds", "0.5",
                          "--ar-lambdas", "3", "--calib-slices", "4", "--max-slices", "4"]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"runs", "vqvae", "mvtm", "tokens", "calibrate", "pixels"}   # the first call's pieces kept
    assert report["runs"]["critic"]["step"] == 2 and report["vqvae"]["networks"] == {"vqvae": 2}
    assert 0 <= report["mvtm"]["accuracy"] <= 1 and report["mvtm"]["masked_tokens"] > 0
    assert set(report["tokens"]["methods"]) == {"atd", "mvtm", "ar", "critic"}
    assert 0 < report["tokens"]["prevalence"] < 1
    assert report["calibrate"]["mim-ood"]["slices"] == 4 and len(report["calibrate"]["ar"]["rows"]) == 1
    pixels = report["pixels"]["val_anomalous"]
    assert set(pixels) == {"mim-ood", "mvtm-critic", "ar"}
    assert pixels["mim-ood"]["setting"] == report["calibrate"]["mim-ood"]["chosen"]
    assert pixels["mim-ood"]["setting_source"] == "calibration" and pixels["mim-ood"]["seconds_per_32"] > 0
    printed = capsys.readouterr().out
    assert "MIM-OOD (ATD)" in printed and "chosen lambda" in printed


def test_cli_refuses_test_data_without_the_flag(runs_dir, caches, tmp_path):
    with pytest.raises(SystemExit):
        evaluate.main(["pixels", "--runs", str(runs_dir), "--caches", str(caches), "--out", str(tmp_path / "r.json"),
                       "--split", "test_anomalous"])
    assert not (tmp_path / "r.json").exists()
