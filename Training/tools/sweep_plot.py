"""The supplementary Figure 4 from `mimood eval --sweep`'s CSV: best DICE against R, T and λ.

    python Training/tools/sweep_plot.py SWEEP.csv --out SWEEP.png

One panel per axis of the CSV (R, T, lambda), in that order, each with the best DICE and the mean
volume DICE at its threshold; λ on a log scale.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from matplotlib.figure import Figure

AXES = {"R": ("restorations", "R (restorations)"), "T": ("steps", "T (steps)"), "lambda": ("lambda", "λ")}


def plot(rows: list[dict], out: Path) -> None:
    axes = [axis for axis in AXES if any(row["axis"] == axis for row in rows)]
    figure = Figure(figsize=(4 * len(axes), 3.2), layout="constrained")
    for panel, axis in zip(figure.subplots(1, len(axes), squeeze=False)[0], axes):
        column, label = AXES[axis]
        points = sorted((float(row[column]), float(row["best_dice"]), float(row["mean_volume_dice"]))
                        for row in rows if row["axis"] == axis)
        x = [p[0] for p in points]
        panel.plot(x, [p[1] for p in points], "o-", label="[DICE]")
        panel.plot(x, [p[2] for p in points], "s--", label="mean volume DICE")
        if axis == "lambda":
            panel.set_xscale("log")
        panel.set_xlabel(label)
        panel.set_ylabel("DICE")
        panel.grid(alpha=0.3)
    figure.axes[0].legend()
    figure.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with args.csv.open() as file:
        plot(list(csv.DictReader(file)), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
