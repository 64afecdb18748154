"""Figures for the README: training curves of every run, and a qualitative comparison in the
style of the paper's Figure 3.

    python Training/tools/report_figures.py curves --runs RUNS --out docs/img
    python Training/tools/report_figures.py examples --runs RUNS --caches CACHES --out docs/img/examples.png
        [--split val_anomalous] [--slices 4] [--report REPORT.json] [--baseline ar|mvtm-critic]
        [--lam L] [--critic-threshold P] [--ar-lambda NLL] [--restorations 4] [--steps 8] [--seed 0]
        [--device cpu] [--threads 2]

`curves` writes training_<network>.png for every run with a log.jsonl: the loss and the network's
main metric against the step (raw logged values, thin, and a running mean over 9 logged points).

`examples` picks the slices with the largest lesions, one per subject, and shows per row: the input,
the ground-truth contour, the ATD token probabilities over the input, MIM-OOD's first restoration and
anomaly map, then the same for the baseline (AR if its run exists, else MVTM + Token-Critic). The
thresholds come from the arguments, else from the report's calibration, else the checkpoint
defaults (as in `evaluate pixels`). Anomaly maps are shown inside the brain mask, where they are
evaluated, on one colour scale for both methods.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from mimood_train.checkpoint import REQUIRED_COMPONENTS
from mimood_train.config import COMPONENTS
from mimood_train.evaluate import Split, load_runs, load_split, method_setting, run_method
from mimood_train.pipeline import detector_probability, tokenize

# Logged metrics plotted next to the loss (train.py's log.jsonl keys).
MAIN_METRICS = {"vqvae": ["mae", "code_usage"], "atd": ["accuracy"], "mvtm": ["masked_accuracy"],
                "ar": ["accuracy"], "critic": ["accuracy"]}
TITLES = {"vqvae": "VQ-VAE", "atd": "ATD", "mvtm": "MVTM", "ar": "AR", "critic": "Token-Critic",
          "mim-ood": "MIM-OOD", "mvtm-critic": "MVTM + critic"}
SETTING_LABELS = {"mim-ood": "λ", "mvtm-critic": "threshold", "ar": "λ_NLL"}
SMOOTHING = 9   # logged points in the running mean


def running_mean(values: np.ndarray, width: int) -> np.ndarray:
    """Mean over the last `width` values (fewer at the start), same length as `values`."""
    sums = np.cumsum(np.r_[0.0, values])
    ends = np.arange(1, len(values) + 1)
    counts = np.minimum(ends, width)
    return (sums[ends] - sums[ends - counts]) / counts


def plot_curves(runs_dir: Path, out_dir: Path) -> list[Path]:
    """training_<network>.png for every run in RUNS with a log; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for component in COMPONENTS:
        log = runs_dir / component / "log.jsonl"
        if not log.exists():
            continue
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if not records:
            continue
        steps = np.array([r["step"] for r in records])
        keys = ["loss"] + [k for k in MAIN_METRICS[component] if k in records[0]]
        figure = Figure(figsize=(4.2 * len(keys), 3.2), dpi=110, layout="constrained")
        for ax, key in zip(figure.subplots(1, len(keys), squeeze=False)[0], keys):
            values = np.array([r.get(key, np.nan) for r in records], dtype=float)
            ax.plot(steps, values, color="tab:blue", linewidth=0.6, alpha=0.35)
            ax.plot(steps, running_mean(values, SMOOTHING), color="tab:blue", linewidth=1.6)
            if key == "loss":
                ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_title(key.replace("_", " "))
            ax.grid(alpha=0.3)
        figure.suptitle(f"{TITLES[component]} training ({steps[-1]} steps)")
        path = out_dir / f"training_{component}.png"
        figure.savefig(path)
        written.append(path)
    return written


def pick_examples(split: Split, count: int) -> np.ndarray:
    """The slices with the largest lesion area, at most one per subject, largest first."""
    area = split.lesion.reshape(len(split), -1).sum(axis=1)
    chosen, subjects = [], set()
    for index in np.argsort(-area, kind="stable"):
        if area[index] == 0 or len(chosen) == count:
            break
        if split.subject[index] not in subjects:
            chosen.append(int(index))
            subjects.add(split.subject[index])
    if not chosen:
        raise ValueError(f"{split.path} has no slice with a lesion")
    return np.array(chosen)


@torch.no_grad()
def plot_examples(runs_dir: Path, caches: Path, out: Path, *, split_name: str = "val_anomalous", count: int = 4,
                  report: dict | None = None, baseline: str | None = None, given: dict | None = None,
                  restorations: int = 4, steps: int = 8, seed: int = 0, device: torch.device = torch.device("cpu")) -> Path:
    runs = load_runs(runs_dir, device)
    lacking = [c for c in REQUIRED_COMPONENTS["mim-ood"] if c not in runs]
    if lacking:
        raise ValueError(f"{runs_dir}: the figure needs the MIM-OOD networks; missing {', '.join(lacking)}")
    if baseline is None:
        baseline = next((m for m in ("ar", "mvtm-critic") if all(c in runs for c in REQUIRED_COMPONENTS[m])), None)
    elif any(c not in runs for c in REQUIRED_COMPONENTS[baseline]):
        raise ValueError(f"{runs_dir}: baseline {baseline} needs {', '.join(REQUIRED_COMPONENTS[baseline])}")
    split = load_split(caches, split_name, with_lesion=True)
    indices = pick_examples(split, count)
    x = split.batch(indices, device)
    tokens = tokenize(runs["vqvae"].model, x)
    f = x.shape[-1] // tokens.shape[-1]
    heatmap = detector_probability(runs["atd"].model, tokens).reshape(tokens.shape).cpu().numpy()

    methods = ["mim-ood"] + ([baseline] if baseline else [])
    outputs, settings = {}, {}
    for method in methods:
        settings[method], _ = method_setting(method, (given or {}).get(method), report or {})
        outputs[method] = run_method(method, runs, x, tokens, settings[method], restorations=restorations,
                                     steps=steps, generator=torch.Generator(device=device).manual_seed(seed))
    brain = split.brain[indices]
    maps = {m: outputs[m].anomaly_map[:, 0].cpu().numpy() * brain for m in methods}
    top = max(float(max(m.max() for m in maps.values())), 1e-6)

    columns = ["input", "ground truth", "ATD p(anomalous)"]
    for method in methods:
        columns += [f"{TITLES[method]} restoration", f"{TITLES[method]} anomaly map"]
    figure = Figure(figsize=(1.9 * len(columns), 1.9 * len(indices) + 0.5), dpi=120, layout="constrained")
    axes = figure.subplots(len(indices), len(columns), squeeze=False)
    image = x[:, 0].cpu().numpy()
    lesion = split.lesion[indices]
    extent = (-0.5, image.shape[-1] - 0.5, image.shape[-2] - 0.5, -0.5)
    for row in range(len(indices)):
        panels = [("image", image[row]), ("contour", image[row]), ("tokens", image[row])]
        for method in methods:
            panels += [("image", outputs[method].images[row, 0, 0].clamp(0, 1).cpu().numpy()),
                       ("map", maps[method][row])]
        for column, (kind, picture) in enumerate(panels):
            ax = axes[row, column]
            if kind == "map":
                ax.imshow(picture, cmap="magma", vmin=0, vmax=top)
                ax.contour(lesion[row], levels=[0.5], colors="cyan", linewidths=0.7)
            else:
                ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
            if kind == "contour":
                ax.contour(lesion[row], levels=[0.5], colors="red", linewidths=0.8)
            if kind == "tokens":   # each token's probability over its f×f patch
                ax.imshow(heatmap[row], cmap="inferno", vmin=0, vmax=1, alpha=0.6, extent=extent,
                          interpolation="nearest")
                ax.contour(lesion[row], levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[column], fontsize=9)
    described = ", ".join(f"{TITLES[m]} {SETTING_LABELS[m]} = {settings[m]:g}" for m in methods)
    figure.suptitle(f"{split_name}: R = {restorations}, T = {steps}; {described}; f = {f}", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="Training/tools/report_figures.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    curves = commands.add_parser("curves", help="training curves of every run")
    curves.add_argument("--runs", required=True, type=Path)
    curves.add_argument("--out", required=True, type=Path, help="folder for training_<network>.png")
    examples = commands.add_parser("examples", help="Figure-3-style comparison on glioma slices")
    examples.add_argument("--runs", required=True, type=Path)
    examples.add_argument("--caches", required=True, type=Path)
    examples.add_argument("--out", required=True, type=Path, help="PNG file")
    examples.add_argument("--split", default="val_anomalous")
    examples.add_argument("--slices", type=int, default=4)
    examples.add_argument("--report", type=Path, help="evaluate's JSON report (for the calibrated thresholds)")
    examples.add_argument("--baseline", choices=("ar", "mvtm-critic"), help="default: AR if trained, else MVTM + critic")
    examples.add_argument("--lam", type=float)
    examples.add_argument("--critic-threshold", type=float)
    examples.add_argument("--ar-lambda", type=float)
    examples.add_argument("--restorations", type=int, default=4)
    examples.add_argument("--steps", type=int, default=8)
    examples.add_argument("--seed", type=int, default=0)
    examples.add_argument("--device", default="cpu")
    examples.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    if args.command == "curves":
        written = plot_curves(args.runs, args.out)
        if not written:
            parser.error(f"no run with a log.jsonl in {args.runs}")
    else:
        if min(args.slices, args.restorations, args.steps, args.threads) < 1:
            parser.error("--slices, --restorations, --steps and --threads must be at least 1")
        torch.set_num_threads(args.threads)
        report = json.loads(args.report.read_text()) if args.report else {}
        given = {"mim-ood": args.lam, "mvtm-critic": args.critic_threshold, "ar": args.ar_lambda}
        try:
            written = [plot_examples(args.runs, args.caches, args.out, split_name=args.split, count=args.slices,
                                     report=report, baseline=args.baseline, given=given,
                                     restorations=args.restorations, steps=args.steps, seed=args.seed,
                                     device=torch.device(args.device))]
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
