"""Evaluation of trained runs with the paper's measures, one JSON report.

    python -m mimood_train.evaluate [PIECE ...] --runs RUNS --caches CACHES --out REPORT.json
        [--device cpu|cuda] [--threads 2] [--batch-size 32] [--max-slices N] [--seed 0]
        [--restorations 4] [--steps 8] [--methods mim-ood,mvtm-critic,ar]
        [--lambdas L,...] [--critic-thresholds P,...] [--ar-lambdas NLL,...] [--calib-slices 64]
        [--split val_anomalous] [--allow-test] [--lam L] [--critic-threshold P] [--ar-lambda NLL]

RUNS holds one run directory per network (vqvae, atd, mvtm, ar, critic: model.pt, or state.pt while a
run is unfinished); CACHES holds the slice caches val.npz, val_anomalous.npz, test_anomalous.npz.
PIECES (default: every piece whose networks exist):

  vqvae      on `val`: reconstruction MAE over all and over brain pixels, codebook usage, perplexity
  mvtm       on `val` tokens: masked-token accuracy and NLL under brush masks (the run's brush settings)
  tokens     on `val_anomalous`: anomalous-token identification, AP and AUROC (the paper's Table 1)
  calibrate  on every k-th slice of `val_anomalous` (--calib-slices): best DICE, AP, AUROC for each
             λ (MIM-OOD), critic threshold and λ_NLL (AR); the value with the best DICE is chosen
  pixels     on --split: best DICE, AP, AUROC, mean subject DICE, seconds per batch of 32 (Table 2)

REPORT.json is read if it exists and each piece replaces only its own entry (per method for calibrate,
per split and method for pixels), so pieces can run one at a time, e.g. while later networks still
train; every entry records the training step of the networks it used. --max-slices keeps every k-th
slice of a split (all pieces but calibrate).

Conventions (those of the method notes, "Evaluation conventions", where they say):
  * Metrics are pooled over the whole set with one threshold (`pooled_metrics`): best DICE is the
    exact maximum F1 over the precision-recall curve, AP is sklearn's average_precision_score
    (step-wise Σ ΔR·P), AUROC the area under the ROC curve.
  * Pixels are restricted to the brain mask; tokens to those whose f×f patch touches the brain (the
    background tokens are trivially normal and would inflate AUROC).
  * Token ground truth: a token is anomalous if its f×f patch (f = 8) holds any lesion pixel.
  * Token scores: ATD and Token-Critic probabilities; MVTM: −log p(token) with the token masked, the
    grid masked in 4 interleaved groups (row % 2, col % 2), one pass per group, so each token is
    predicted with its 8 neighbours visible; AR: teacher-forced −log p(token | raster prefix).
  * Restoration settings: R and T from the arguments, anomaly maps with the checkpoint defaults
    (softmax-weighted residuals, 3×3 min-pool, 7×7 average pool); each batch draws from its own
    generator seeded with seed + batch number, so every setting sees the same random stream.
  * λ is calibrated on `val_anomalous` only; `pixels` on `val_anomalous` is therefore in-sample for λ.
    `test_anomalous` is evaluated only with --allow-test.
  * Token grids of a whole split are cached next to a finished VQ-VAE (`tokens_<split>_v1.npz`, as
    the trainers do); with an unfinished VQ-VAE they are recomputed each time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import DEFAULT_INFERENCE, REQUIRED_COMPONENTS
from .config import COMPONENTS
from .data import SliceDataset
from .masks import BrushConfig, brush_masks
from .models import codebook_stats
from .loading import load_model, load_or_build_tokens, tokenize_dataset
from .pipeline import TOKEN_SCORES, anomaly_map, decode, restore_ar, restore_mim_ood, restore_mvtm_critic, tokenize

PIECES = ("vqvae", "mvtm", "tokens", "calibrate", "pixels")
METHODS = ("mim-ood", "mvtm-critic", "ar")
# What each method's setting is called, and its value when neither given nor calibrated.
SETTING_NAMES = {"mim-ood": "lambda", "mvtm-critic": "critic_threshold", "ar": "lambda_nll"}
DEFAULT_SETTINGS = {method: DEFAULT_INFERENCE[name] for method, name in SETTING_NAMES.items()}
DEFAULT_LAMBDAS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)   # about log-spaced
DEFAULT_AR_LAMBDAS = (4.0, 5.0, 6.0, 7.0, 8.0)                             # around the paper's 6
TOKEN_DETECTORS = {"ar": "AR (NLL)", "mvtm": "MVTM (NLL)", "critic": "MVTM + Token-Critic",
                   "atd": "MIM-OOD (ATD)"}                                # the rows of Table 1


# ---------------------------------------------------------------- runs and data

@dataclass
class Run:
    component: str
    path: Path
    model: nn.Module
    step: int                   # optimiser steps behind the weights
    total_steps: int
    train_config: dict

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


def load_run(run_dir: Path, component: str, device: torch.device) -> Run:
    """A run directory's weights (model.pt, else the latest state.pt) and what it says about itself."""
    config = json.loads((run_dir / "config.json").read_text())
    weights = run_dir / "model.pt" if (run_dir / "model.pt").exists() else run_dir / "state.pt"
    step = (config["total_steps"] if weights.name == "model.pt"
            else torch.load(weights, weights_only=False, map_location="cpu")["step"])
    return Run(component, run_dir, load_model(weights, component).to(device), step, config["total_steps"],
               config["train"])


def load_runs(runs_dir: Path, device: torch.device) -> dict[str, Run]:
    """Every network of RUNS that has weights, by component."""
    runs = {}
    for component in COMPONENTS:
        run_dir = runs_dir / component
        if (run_dir / "model.pt").exists() or (run_dir / "state.pt").exists():
            runs[component] = load_run(run_dir, component, device)
    return runs


def steps_of(runs: dict[str, Run], components) -> dict[str, int]:
    return {component: runs[component].step for component in components}


@dataclass
class Split:
    name: str
    path: Path
    images: SliceDataset        # float16 slices [N, H, W]
    brain: np.ndarray           # [N, H, W] bool
    lesion: np.ndarray | None   # [N, H, W] bool, for anomalous splits
    subject: np.ndarray         # [N] subject number

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices: np.ndarray, device: torch.device) -> torch.Tensor:
        return self.images.slices[torch.from_numpy(indices)].float().unsqueeze(1).to(device)


def load_split(caches: Path, name: str, *, with_lesion: bool = False) -> Split:
    path = caches / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"no slice cache {path}")
    with np.load(path) as cache:
        brain, subject = cache["brain"].astype(bool), cache["subject"]
        lesion = cache["lesion"].astype(bool) if "lesion" in cache.files else None
    if with_lesion and lesion is None:
        raise ValueError(f"{path} has no lesion masks; anomaly detection needs an anomalous split")
    return Split(name, path, SliceDataset(path), brain, lesion, subject)


def split_tokens(vqvae: Run, split: Split, device: torch.device) -> np.ndarray:
    """Token grids [N, h, w] int64 of every slice of a split (identity view)."""
    if split.images.slices.shape[-1] != vqvae.model.cfg.resolution:
        raise ValueError(f"{split.path}: slices are {split.images.slices.shape[-1]} px, the VQ-VAE takes "
                         f"{vqvae.model.cfg.resolution} px")
    if vqvae.finished:
        grids = load_or_build_tokens(str(vqvae.path), str(split.path), split.images, 1, None, str(device))
    else:   # a cache would go stale as the VQ-VAE trains on
        grids = tokenize_dataset(vqvae.model, split.images, views=1, batch_size=32 if device.type == "cpu" else 256)
    return grids[:, 0].astype(np.int64)


def every_kth(n: int, limit: int | None) -> np.ndarray:
    """Indices 0, k, 2k, … of range(n) with k the smallest step that keeps at most `limit` (all if None)."""
    step = 1 if limit is None or limit >= n else math.ceil(n / limit)
    return np.arange(0, n, step)


def batches(indices: np.ndarray, size: int):
    return [indices[start:start + size] for start in range(0, len(indices), size)]


def patch_any(mask: np.ndarray, f: int) -> np.ndarray:
    """[N, H, W] bool -> [N, H/f, W/f]: True where the f×f patch holds any True pixel."""
    n, h, w = mask.shape
    return mask.reshape(n, h // f, f, w // f, f).any(axis=(2, 4))


# ---------------------------------------------------------------- metrics

def pooled_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Best DICE, AP and AUROC of `scores` against binary `labels`, all samples pooled.

    One descending sort gives, at each distinct score t, the true and false positives of
    `score >= t`. Best DICE is the maximum of F1 = 2TP / (TP + FP + P) over these thresholds (exact,
    no grid); AP = Σ_t (R_t − R_{t−1}) P_t as sklearn's average_precision_score; AUROC the trapezoidal
    area under (FPR, TPR). One sort for all three because a split has ~40 M brain pixels."""
    scores, labels = np.asarray(scores).ravel(), np.asarray(labels, dtype=bool).ravel()
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError(f"metrics need both classes: got {positives} positive and {negatives} negative samples")
    order = np.argsort(scores, kind="stable")[::-1]
    sorted_scores, hits = scores[order], labels[order]
    del order
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), labels.size - 1]
    tp = np.cumsum(hits, dtype=np.int64)[last_of_tie]
    fp = last_of_tie + 1 - tp
    recall = tp / positives
    precision = tp / (tp + fp)
    f1 = 2 * tp / (tp + fp + positives)
    best = int(np.argmax(f1))
    return {"dice": float(f1[best]), "threshold": float(sorted_scores[last_of_tie[best]]),
            "ap": float(np.sum(np.diff(recall, prepend=0.0) * precision)),
            "auroc": float(np.trapezoid(np.r_[0.0, recall], np.r_[0.0, fp / negatives])),
            "prevalence": positives / labels.size, "samples": int(labels.size)}


def subject_dice(scores: np.ndarray, labels: np.ndarray, subjects: np.ndarray, threshold: float) -> float:
    """Mean over subjects with lesion pixels of DICE(score >= threshold, lesion), the common second
    figure next to the pooled best DICE (a subject here = its slices in the evaluated set)."""
    predicted = scores >= threshold
    tp = np.bincount(subjects, weights=predicted & labels)
    detected, lesion = np.bincount(subjects, weights=predicted), np.bincount(subjects, weights=labels)
    has_lesion = lesion > 0
    return float(np.mean(2 * tp[has_lesion] / (detected[has_lesion] + lesion[has_lesion])))


def choose_best(rows: list[dict], key: str = "dice") -> int:
    """Index of the row with the largest `key` (the first on ties, i.e. the smallest setting tried first)."""
    return max(range(len(rows)), key=lambda i: rows[i][key])


# ---------------------------------------------------------------- pieces 1-3: networks on their own

@torch.no_grad()
def evaluate_vqvae(vqvae: Run, split: Split, tokens: np.ndarray, indices: np.ndarray, batch_size: int,
                   device: torch.device) -> dict:
    """Reconstruction x̂ = decode(tokenize(x)) of a healthy split: MAE over all and brain pixels;
    code usage (fraction of the K codes chosen at least once) and perplexity over all its tokens."""
    error_sum = brain_error_sum = 0.0
    brain_pixels = 0
    for chunk in batches(indices, batch_size):
        x = split.batch(chunk, device)
        error = (vqvae.model.decode_indices(torch.from_numpy(tokens[chunk]).to(device)) - x).abs()[:, 0].cpu().numpy()
        brain = split.brain[chunk]
        error_sum += float(error.sum(dtype=np.float64))
        brain_error_sum += float(error[brain].sum(dtype=np.float64))
        brain_pixels += int(brain.sum())
    usage, perplexity = codebook_stats(torch.from_numpy(tokens[indices]), vqvae.model.cfg.n_embed)
    return {"split": split.name, "slices": len(indices), "mae": error_sum / (len(indices) * split.images.slices[0].numel()),
            "mae_brain": brain_error_sum / brain_pixels, "code_usage": usage, "perplexity": perplexity,
            "n_embed": vqvae.model.cfg.n_embed}


@torch.no_grad()
def evaluate_mvtm(mvtm: Run, split: Split, tokens: np.ndarray, indices: np.ndarray, batch_size: int, seed: int,
                  device: torch.device) -> dict:
    """Masked-token accuracy (argmax = original) and mean NLL over the masked tokens, pooled, with
    the brush masks of the run's training config drawn from `seed` (all at once, so that the masks do
    not depend on the batch size)."""
    brush = BrushConfig(**mvtm.train_config["brush"])
    grid = tokens.shape[-1]
    masks = torch.from_numpy(brush_masks(np.random.default_rng(seed), len(indices), grid, brush).reshape(len(indices), -1))
    correct = masked = 0
    nll_sum = 0.0
    for start, chunk in zip(range(0, len(indices), batch_size), batches(indices, batch_size)):
        sequences = torch.from_numpy(tokens[chunk]).reshape(len(chunk), -1).to(device)
        mask = masks[start:start + len(chunk)].to(device)
        logits = mvtm.model(sequences.masked_fill(mask, mvtm.model.cfg.vocab_size - 1))[mask].float()
        target = sequences[mask]
        correct += int((logits.argmax(-1) == target).sum())
        nll_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        masked += int(mask.sum())
    return {"split": split.name, "slices": len(indices), "masked_tokens": masked, "masked_fraction": masked / masks.numel(),
            "accuracy": correct / masked, "nll": nll_sum / masked, "seed": seed}


@torch.no_grad()
def evaluate_tokens(runs: dict[str, Run], split: Split, tokens: np.ndarray, indices: np.ndarray,
                    batch_size: int, device: torch.device) -> dict:
    """The paper's Table 1: every available token scorer against the token ground truth, pooled
    over the brain tokens of all slices."""
    f = runs["vqvae"].model.cfg.resolution // tokens.shape[-1]
    labels = patch_any(split.lesion[indices], f).reshape(-1)
    inside = patch_any(split.brain[indices], f).reshape(-1)
    methods = {}
    for component in TOKEN_DETECTORS:
        if component not in runs:
            continue
        start = time.perf_counter()
        scores = torch.cat([TOKEN_SCORES[component](runs[component].model, torch.from_numpy(tokens[chunk]).to(device)).cpu()
                            for chunk in batches(indices, batch_size)]).reshape(-1).numpy()
        measured = pooled_metrics(scores[inside], labels[inside])
        methods[component] = {"name": TOKEN_DETECTORS[component], "ap": measured["ap"], "auroc": measured["auroc"],
                              "step": runs[component].step, "seconds": time.perf_counter() - start}
    return {"split": split.name, "slices": len(indices), "downsampling": f, "brain_tokens": int(inside.sum()),
            "prevalence": float(labels[inside].mean()), "methods": methods}


# ---------------------------------------------------------------- pieces 4-5: restoration methods

@dataclass
class MethodOutput:
    tokens: torch.Tensor            # [B, R, h, w] restored tokens
    images: torch.Tensor            # [B, R, 1, H, W] decoded restorations
    anomaly_map: torch.Tensor       # [B, 1, H, W]
    steps_run: int | None           # detect-and-resample steps (AR: None, it always visits every position)


@torch.no_grad()
def run_method(method: str, runs: dict[str, Run], x: torch.Tensor, tokens: torch.Tensor, setting: float, *,
               restorations: int, steps: int, generator: torch.Generator) -> MethodOutput:
    """Restores token grids `tokens` of images `x` with one of the three methods and scores the residual."""
    models = {component: run.model for component, run in runs.items()}
    if method == "mim-ood":
        restoration = restore_mim_ood(models["atd"], models["mvtm"], tokens, lam=setting, steps=steps,
                                      restorations=restorations, generator=generator)
        restored, steps_run = restoration.tokens, restoration.steps_run
    elif method == "mvtm-critic":
        restoration = restore_mvtm_critic(models["mvtm"], models["critic"], tokens, threshold=setting, steps=steps,
                                          restorations=restorations, generator=generator)
        restored, steps_run = restoration.tokens, restoration.steps_run
    elif method == "ar":
        restored, _ = restore_ar(models["ar"], tokens, lambda_nll=setting, restorations=restorations,
                                 generator=generator)
        steps_run = None
    else:
        raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    images = decode(models["vqvae"], restored)
    smoothing = DEFAULT_INFERENCE["smoothing"]
    score = anomaly_map(x, images, combine=DEFAULT_INFERENCE["combine"], temperature=DEFAULT_INFERENCE["temperature"],
                        min_pool_size=smoothing["min_pool"], avg_pool_size=smoothing["avg_pool"])
    return MethodOutput(restored, images, score, steps_run)


@torch.no_grad()
def detect_split(method: str, setting: float, runs: dict[str, Run], split: Split, indices: np.ndarray, *,
                 tokens: np.ndarray | None, batch_size: int, restorations: int, steps: int, seed: int,
                 device: torch.device) -> dict:
    """Pixel-level metrics of one method and setting over the brain pixels of `indices`. Without
    cached `tokens` the images are tokenised inside the timed region, so seconds_per_32 is the time of
    the whole pipeline (tokenise, restore, decode, anomaly map) per 32 slices."""
    scores, labels, subjects, seconds, steps_run, changed = [], [], [], [], [], []
    for number, chunk in enumerate(batches(indices, batch_size)):
        x = split.batch(chunk, device)
        generator = torch.Generator(device=device).manual_seed(seed + number)
        start = time.perf_counter()
        grids = tokenize(runs["vqvae"].model, x) if tokens is None else torch.from_numpy(tokens[chunk]).to(device)
        output = run_method(method, runs, x, grids, setting, restorations=restorations, steps=steps, generator=generator)
        maps = output.anomaly_map[:, 0].cpu().numpy()
        seconds.append(time.perf_counter() - start)
        brain = split.brain[chunk]
        scores.append(maps[brain])
        labels.append(split.lesion[chunk][brain])
        subjects.append(np.repeat(split.subject[chunk], brain.sum(axis=(1, 2))))
        steps_run.append(output.steps_run)
        changed.append(float((output.tokens != grids.unsqueeze(1)).float().mean()))
    scores, labels, subjects = np.concatenate(scores), np.concatenate(labels), np.concatenate(subjects)
    measured = pooled_metrics(scores, labels)
    return {**measured, "subject_dice": subject_dice(scores, labels, subjects, measured["threshold"]),
            "steps_run_mean": None if steps_run[0] is None else float(np.mean(steps_run)),
            "changed_tokens": float(np.mean(changed)),
            "seconds_per_32": 32 * statistics.median(s / len(c) for s, c in zip(seconds, batches(indices, batch_size))),
            "seconds": float(sum(seconds))}


def calibrate(method: str, settings: list[float], runs: dict[str, Run], split: Split, indices: np.ndarray,
              tokens: np.ndarray, **detection) -> dict:
    """Runs a method at every setting on the same slices and random streams; chooses the best DICE."""
    rows = []
    for setting in settings:
        rows.append({"setting": setting, **detect_split(method, setting, runs, split, indices, tokens=tokens, **detection)})
        print(f"  {method} {SETTING_NAMES[method]} = {setting:g}: DICE {rows[-1]['dice']:.4f} "
              f"[{rows[-1]['seconds']:.0f} s]", flush=True)
    return {"setting_name": SETTING_NAMES[method], "split": split.name, "slices": len(indices),
            "chosen": rows[choose_best(rows)]["setting"], "rows": rows,
            "networks": steps_of(runs, REQUIRED_COMPONENTS[method])}


def method_setting(method: str, given: float | None, report: dict) -> tuple[float, str]:
    """A method's threshold and where it came from: the argument, else the report's calibration,
    else the checkpoint default."""
    if given is not None:
        return given, "argument"
    calibrated = report.get("calibrate", {}).get(method)
    if calibrated:
        return calibrated["chosen"], "calibration"
    return DEFAULT_SETTINGS[method], "checkpoint default"


# ---------------------------------------------------------------- command line

def _floats(text: str) -> list[float]:
    try:
        return [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown)} (known: {', '.join(METHODS)})")
    return methods


def _write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, path)


def _print_piece(piece: str, entry: dict) -> None:
    if piece == "vqvae":
        print(f"VQ-VAE on {entry['split']} ({entry['slices']} slices): MAE {entry['mae']:.4f}, brain {entry['mae_brain']:.4f}; "
              f"codes used {entry['code_usage']:.3f} of {entry['n_embed']}, perplexity {entry['perplexity']:.1f} "
              f"[{entry['seconds']:.0f} s]")
    elif piece == "mvtm":
        print(f"MVTM on {entry['split']} ({entry['slices']} slices, {entry['masked_fraction']:.2f} masked): "
              f"accuracy {entry['accuracy']:.4f}, NLL {entry['nll']:.3f} [{entry['seconds']:.0f} s]")
    elif piece == "tokens":
        print(f"Anomalous tokens on {entry['split']} ({entry['slices']} slices, {entry['brain_tokens']} brain tokens, "
              f"prevalence {entry['prevalence']:.4f}):")
        for result in entry["methods"].values():
            print(f"  {result['name']:<22} AP {result['ap']:.3f}  AUROC {result['auroc']:.3f}  (step {result['step']})")
    elif piece == "calibrate":
        for method, result in entry.items():
            print(f"Calibration of {method} on {result['split']} ({result['slices']} slices):")
            for row in result["rows"]:
                steps = "" if row["steps_run_mean"] is None else f"  steps {row['steps_run_mean']:.1f}"
                print(f"  {result['setting_name']} {row['setting']:<7g} DICE {row['dice']:.4f}  AP {row['ap']:.4f}  "
                      f"AUROC {row['auroc']:.4f}{steps}  changed {row['changed_tokens']:.3f}")
            print(f"  chosen {result['setting_name']} = {result['chosen']:g}")
    elif piece == "pixels":
        for method, result in (item for by_method in entry.values() for item in by_method.items()):
            print(f"{method} on {result['split']} ({result['slices']} slices, {result['setting_name']} "
                  f"{result['setting']:g} from {result['setting_source']}): DICE {result['dice']:.4f}  AP {result['ap']:.4f}  "
                  f"AUROC {result['auroc']:.4f}  subject DICE {result['subject_dice']:.4f}  "
                  f"{result['seconds_per_32']:.2f} s per 32 slices")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimood_train.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pieces", nargs="*", metavar="PIECE", help="what to evaluate (default: all possible)")
    parser.add_argument("--runs", required=True, type=Path, help="folder with one run directory per network")
    parser.add_argument("--caches", required=True, type=Path, help="folder with val.npz, val_anomalous.npz, …")
    parser.add_argument("--out", required=True, type=Path, help="JSON report (updated in place if it exists)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch-size", type=int, default=32, help="slices per pass")
    parser.add_argument("--max-slices", type=int, help="keep every k-th slice, at most this many (not calibrate)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restorations", type=int, default=DEFAULT_INFERENCE["restorations"], help="R")
    parser.add_argument("--steps", type=int, default=DEFAULT_INFERENCE["steps"], help="T")
    parser.add_argument("--methods", metavar="METHOD,…", type=_methods, default=list(METHODS),
                        help="restoration methods for calibrate and pixels (comma-separated)")
    parser.add_argument("--lambdas", metavar="L,…", type=_floats, default=list(DEFAULT_LAMBDAS), help="MIM-OOD λ grid")
    parser.add_argument("--critic-thresholds", metavar="P,…", type=_floats, default=list(DEFAULT_LAMBDAS), help="Token-Critic grid")
    parser.add_argument("--ar-lambdas", metavar="NLL,…", type=_floats, default=list(DEFAULT_AR_LAMBDAS), help="AR λ_NLL grid")
    parser.add_argument("--calib-slices", type=int, default=64, help="calibrate on every k-th slice, at most this many")
    parser.add_argument("--split", default="val_anomalous", help="split of the pixels piece")
    parser.add_argument("--allow-test", action="store_true", help="allow --split test_anomalous")
    parser.add_argument("--lam", type=float, help="pixels: MIM-OOD λ (default: calibrated, else the checkpoint default)")
    parser.add_argument("--critic-threshold", type=float, help="pixels: Token-Critic threshold")
    parser.add_argument("--ar-lambda", type=float, help="pixels: AR λ_NLL")
    args = parser.parse_args(argv)

    unknown = [piece for piece in args.pieces if piece not in PIECES]
    if unknown:
        parser.error(f"unknown piece(s) {', '.join(unknown)} (known: {', '.join(PIECES)})")
    if min(args.threads, args.batch_size, args.restorations, args.steps, args.calib_slices, args.max_slices or 1) < 1:
        parser.error("--threads, --batch-size, --restorations, --steps, --calib-slices and --max-slices must be at least 1")
    if args.split.startswith("test") and not args.allow_test:
        parser.error(f"--split {args.split}: test data is evaluated only with --allow-test (calibrate on val_anomalous)")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    torch.set_num_threads(args.threads)

    runs = load_runs(args.runs, device)
    if "vqvae" not in runs:
        parser.error(f"{args.runs / 'vqvae'}: no VQ-VAE weights (model.pt or state.pt); every piece needs it")
    methods = [m for m in args.methods if all(c in runs for c in REQUIRED_COMPONENTS[m])]
    possible = {"vqvae": True, "mvtm": "mvtm" in runs, "tokens": any(c in runs for c in TOKEN_DETECTORS),
                "calibrate": bool(methods), "pixels": bool(methods)}
    pieces = args.pieces or [piece for piece in PIECES if possible[piece]]
    missing = [piece for piece in pieces if not possible[piece]]
    if missing:
        parser.error(f"piece(s) {', '.join(missing)}: the networks they need are not in {args.runs} "
                     f"(found: {', '.join(runs)})")
    if {"calibrate", "pixels"} & set(pieces):
        for method in (m for m in args.methods if m not in methods):
            print(f"skipping {method}: needs {', '.join(REQUIRED_COMPONENTS[method])}")

    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["runs"] = {c: {"path": str(run.path), "step": run.step, "total_steps": run.total_steps} for c, run in runs.items()}
    context = {"device": str(device), "threads": args.threads}   # what the timings ran on
    splits: dict[str, Split] = {}
    tokens: dict[str, np.ndarray] = {}
    tokenize_seconds: dict[str, float] = {}   # reported with the piece that first needed a split's tokens

    def split(name: str) -> Split:
        if name not in splits:
            splits[name] = load_split(args.caches, name, with_lesion=name != "val")
        return splits[name]

    def split_grids(name: str) -> np.ndarray:
        if name not in tokens:
            start = time.perf_counter()
            tokens[name] = split_tokens(runs["vqvae"], split(name), device)
            tokenize_seconds[name] = time.perf_counter() - start
        return tokens[name]

    detection = dict(batch_size=args.batch_size, restorations=args.restorations, steps=args.steps, seed=args.seed,
                     device=device)
    grids = {"mim-ood": args.lambdas, "mvtm-critic": args.critic_thresholds, "ar": args.ar_lambdas}
    given = {"mim-ood": args.lam, "mvtm-critic": args.critic_threshold, "ar": args.ar_lambda}
    for piece in pieces:
        tokenize_seconds.clear()
        start = time.perf_counter()
        print(f"== {piece}", flush=True)
        if piece == "vqvae":
            val = split("val")
            entry = evaluate_vqvae(runs["vqvae"], val, split_grids("val"), every_kth(len(val), args.max_slices),
                                   args.batch_size, device)
            entry["networks"] = steps_of(runs, ["vqvae"])
        elif piece == "mvtm":
            val = split("val")
            entry = evaluate_mvtm(runs["mvtm"], val, split_grids("val"), every_kth(len(val), args.max_slices),
                                  args.batch_size, args.seed, device)
            entry["networks"] = steps_of(runs, ["vqvae", "mvtm"])
        elif piece == "tokens":
            anomalous = split("val_anomalous")
            entry = evaluate_tokens(runs, anomalous, split_grids("val_anomalous"),
                                    every_kth(len(anomalous), args.max_slices), args.batch_size, device)
        elif piece == "calibrate":
            anomalous = split("val_anomalous")
            indices = every_kth(len(anomalous), args.calib_slices)
            entry = report.get("calibrate", {})
            for method in methods:
                entry[method] = calibrate(method, grids[method], runs, anomalous, indices,
                                          split_grids("val_anomalous"), **detection)
                entry[method].update(restorations=args.restorations, steps=args.steps, **context)
                _write_report({**report, "calibrate": entry}, args.out)
        else:
            evaluated = split(args.split)
            indices = every_kth(len(evaluated), args.max_slices)
            entry = report.get("pixels", {})
            by_method = entry.setdefault(args.split, {})
            for method in methods:
                setting, source = method_setting(method, given[method], report)
                result = detect_split(method, setting, runs, evaluated, indices, tokens=None, **detection)
                by_method[method] = {"split": args.split, "slices": len(indices), "setting_name": SETTING_NAMES[method],
                                     "setting": setting, "setting_source": source, "restorations": args.restorations,
                                     "steps": args.steps, **result, "networks": steps_of(runs, REQUIRED_COMPONENTS[method]),
                                     **context}
                _write_report({**report, "pixels": entry}, args.out)
        if piece in ("vqvae", "mvtm", "tokens"):   # seconds include loading and tokenising the split
            entry.update(seconds=time.perf_counter() - start, tokenize_seconds=sum(tokenize_seconds.values()), **context)
        report[piece] = entry
        _write_report(report, args.out)
        if piece == "calibrate":
            entry = {method: entry[method] for method in methods}   # print this run's results only
        elif piece == "pixels":
            entry = {args.split: {method: by_method[method] for method in methods}}
        _print_piece(piece, entry)
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
