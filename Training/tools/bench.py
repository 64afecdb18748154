"""PyTorch reference timing of the MIM-OOD pipeline, which scripts/bench-engine runs beside `mimood bench`.

    python Training/tools/bench.py --model Models/default [--input slices.npy] [--batch 32]
        [--restorations 4] [--steps 8] [--threads 2] [--repeats 3] [--json]

Runs the same work as the Swift engine's benchmark: a batch of slices, tokenise, T detect-and-resample
steps over B·R sequences, decode the B·R restorations, anomaly maps. The threshold is set below every
probability (λ = −1) so that all T steps run on both engines whatever the sampled tokens: the work is
then identical, and the comparison is of engines, not of random draws. Prints the median time of each
stage over `repeats` runs (after one warm-up run), in seconds, as text or one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mimood_train.checkpoint import load_checkpoint
from fixtures import PARITY_INPUT as DEFAULT_INPUT   # tiled to the batch when no input is given
from mimood_train.pipeline import anomaly_map, decode, restore_mim_ood, tokenize
ALL_TOKENS = -1.0   # a λ below every probability: every step masks and resamples every token


def load_batch(path: Path, batch: int) -> torch.Tensor:
    """[batch, 1, 160, 160] float32 from an .npy of one slice [H, W] or a stack [N, H, W] / [N, 1, H, W],
    repeating the slices in order to fill the batch."""
    slices = np.load(path).astype(np.float32)
    slices = slices.reshape(-1, 1, *slices.shape[-2:])
    repeats = -(-batch // len(slices))
    return torch.from_numpy(np.concatenate([slices] * repeats)[:batch].copy())


def run_once(models: dict, x: torch.Tensor, *, restorations: int, steps: int, seed: int,
             inference: dict) -> dict[str, float]:
    """One pipeline run; seconds per stage."""
    times = {}
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    tokens = tokenize(models["vqvae"], x)
    times["tokenize"] = time.perf_counter() - start

    start = time.perf_counter()
    restoration = restore_mim_ood(models["atd"], models["mvtm"], tokens, lam=ALL_TOKENS, steps=steps,
                                  restorations=restorations, generator=generator)
    times["restore"] = time.perf_counter() - start
    assert restoration.steps_run == steps

    start = time.perf_counter()
    restored = decode(models["vqvae"], restoration.tokens)
    times["decode"] = time.perf_counter() - start

    start = time.perf_counter()
    smoothing = inference.get("smoothing", {"min_pool": 3, "avg_pool": 7})
    anomaly_map(x, restored, combine=inference.get("combine", "softmax-weighted"),
                temperature=inference.get("temperature", 3.0), min_pool_size=smoothing["min_pool"],
                avg_pool_size=smoothing["avg_pool"])
    times["anomaly_map"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    return times


def benchmark(model_dir: Path, x: torch.Tensor, *, restorations: int, steps: int, repeats: int,
              seed: int = 0) -> dict:
    loaded = load_checkpoint(model_dir, ["vqvae", "atd", "mvtm"])
    inference = loaded.manifest.get("inference", {})
    with torch.inference_mode():
        run_once(loaded.models, x, restorations=restorations, steps=steps, seed=seed, inference=inference)
        runs = [run_once(loaded.models, x, restorations=restorations, steps=steps, seed=seed, inference=inference)
                for _ in range(repeats)]
    medians = {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}
    return {"engine": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(),
            "batch": int(x.shape[0]), "restorations": restorations, "steps": steps, "repeats": repeats,
            "seconds": medians, "slices_per_second": x.shape[0] / medians["total"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="Training/tools/bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="checkpoint directory")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help=".npy slice or stack of slices")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--restorations", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if min(args.batch, args.restorations, args.steps, args.repeats, args.threads) < 1:
        parser.error("--batch, --restorations, --steps, --repeats and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    result = benchmark(args.model, load_batch(args.input, args.batch), restorations=args.restorations,
                       steps=args.steps, repeats=args.repeats)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['engine']}, {result['threads']} threads: batch {result['batch']}, "
              f"R = {result['restorations']}, T = {result['steps']}: {result['slices_per_second']:.2f} slices/s")
        for stage, seconds in result["seconds"].items():
            print(f"  {stage:<12} {seconds:8.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
