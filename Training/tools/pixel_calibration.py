"""λ calibration of MIM-OOD on the glioma validation set, with the pixel-level baselines beside it and the
residual-reference ablation (the paper's |x − x̃| against |decode(tokens) − x̃|, which would cancel the
VQ-VAE's own reconstruction error). Validation data only; the test set is never read here.

    python Training/tools/pixel_calibration.py --model Models/default --atd RUN --cache cache/val_anomalous.npz \
        --lambdas 0.05,0.1,0.2,0.3,0.5,0.7 --out docs/training-report-data/calibration-v2.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mimood_train.evaluate import every_kth, pooled_metrics
from mimood_train.loading import load_model
from mimood_train.pipeline import anomaly_map, decode, restore_mim_ood, tokenize


def rounded(metrics: dict) -> dict:
    return {key: round(metrics[key], 4) for key in ("dice", "ap", "auroc")}


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint with the VQ-VAE and MVTM")
    parser.add_argument("--atd", required=True, help="the ATD to calibrate (run dir, model.pt or checkpoint)")
    parser.add_argument("--cache", required=True, help="slice cache of the glioma validation set")
    parser.add_argument("--lambdas", required=True)
    parser.add_argument("--slices", type=int, default=96)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    vqvae, mvtm, atd = load_model(args.model, "vqvae"), load_model(args.model, "mvtm"), load_model(args.atd, "atd")
    with np.load(args.cache) as cache:
        rows = every_kth(len(cache["slices"]), args.slices)
        x = torch.from_numpy(cache["slices"][rows].astype(np.float32)).unsqueeze(1)
        brain, lesion = cache["brain"][rows].astype(bool), cache["lesion"][rows].astype(bool)
    chunks = range(0, len(x), 16)
    tokens = torch.cat([tokenize(vqvae, x[i:i + 16]) for i in chunks])
    reconstruction = torch.cat([decode(vqvae, tokens[i:i + 16]) for i in chunks])
    report = {"split": Path(args.cache).stem, "slices": len(x), "restorations": 4, "steps": 8,
              "intensity": rounded(pooled_metrics(x[:, 0].numpy()[brain], lesion[brain])),
              "vqvae_residual": rounded(pooled_metrics(anomaly_map(x, reconstruction.unsqueeze(1))[:, 0].numpy()[brain],
                                                       lesion[brain])),
              "rows": []}
    for lam in (float(v) for v in args.lambdas.split(",")):
        against_input, against_reconstruction, changed = [], [], []
        for i in chunks:   # one generator per chunk: every λ sees the same draws
            restored = restore_mim_ood(atd, mvtm, tokens[i:i + 16], lam=lam, steps=8, restorations=4,
                                       generator=torch.Generator().manual_seed(i))
            images = decode(vqvae, restored.tokens)
            against_input.append(anomaly_map(x[i:i + 16], images)[:, 0])
            against_reconstruction.append(anomaly_map(reconstruction[i:i + 16], images)[:, 0])
            changed.append(float((restored.tokens != tokens[i:i + 16].unsqueeze(1)).float().mean()))
        row = {"lambda": lam, "changed_tokens": round(float(np.mean(changed)), 4),
               "input": rounded(pooled_metrics(torch.cat(against_input).numpy()[brain], lesion[brain])),
               "reconstruction": rounded(pooled_metrics(torch.cat(against_reconstruction).numpy()[brain], lesion[brain]))}
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
    report["chosen"] = max(report["rows"], key=lambda r: r["input"]["dice"])["lambda"]
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
