"""The engine beside the PyTorch reference on the same checkpoint, input and sizes, in one run: runs
`mimood bench --json` and `Training/tools/bench.py --json` one after the other and prints seconds per
stage, slices per second and the speed ratio (> 1: mimood is faster), then the Transformer passes' rate.

    python Benchmarks/Engine/compare.py --mimood .build/release/mimood [--model DIR] [--input FILE.npy]
        [--batch 32 --restorations 4 --steps 8 --repeats 3 --threads 2]

scripts/bench-engine builds the release binary and runs this with the repository's Python.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
STAGES = ["tokenize", "restore", "decode", "anomaly_map", "total"]


def run_json(command: list[str], **kwargs) -> dict:
    finished = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if finished.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {finished.returncode}):\n{finished.stderr[-2000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mimood", required=True, help="the mimood executable (a release build for real numbers)")
    parser.add_argument("--python", default=sys.executable, help="a Python with torch (default: this one)")
    parser.add_argument("--model", default=str(REPOSITORY / "Models/default"))
    parser.add_argument("--input", default=str(REPOSITORY / "Tests/Fixtures/parity/input.npy"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--restorations", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    sizes = ["--model", args.model, "--input", args.input, "--batch", str(args.batch), "--restorations", str(args.restorations),
             "--steps", str(args.steps), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    ours = run_json([args.mimood, "bench", "--json", *sizes])
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "Training"))
    theirs = run_json([args.python, str(REPOSITORY / "Training/tools/bench.py"), "--json", *sizes], env=environment)

    print(f"{ours['model']} ({args.model}), batch {args.batch}, R = {args.restorations}, T = {args.steps}, every step run, "
          f"{args.threads} thread(s); median of {args.repeats} run(s) after a warm-up; BLAS: {ours['blas']}")
    print(f"{'stage':<12}{'mimood':>10}{theirs['engine']:>{max(16, len(theirs['engine']) + 2)}}{'speed ratio':>13}")
    rows = [(stage, ours["seconds"][stage], theirs["seconds"][stage], "{:.3f} s") for stage in STAGES]
    rows.append(("slices/s", ours["slices_per_second"], theirs["slices_per_second"], "{:.2f}"))
    for name, mine, reference, style in rows:
        ratio = reference / mine if name != "slices/s" else mine / reference
        print(f"{name:<12}{style.format(mine):>10}{style.format(reference):>{max(16, len(theirs['engine']) + 2)}}{ratio:>13.2f}")
    rate = ours["transformer_gflops_per_second"]
    print(f"Transformer passes: {ours['transformer_gflop']:.1f} GFLOP at {rate:.1f} GFLOP/s (restore stage), "
          f"{100 * rate / ours['measured_peak_gflops']:.1f} % of the multiply-add peak measured in the same run, "
          f"{ours['measured_peak_gflops']:.0f} GFLOP/s; vector kernels: {ours['vector_kernels']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
