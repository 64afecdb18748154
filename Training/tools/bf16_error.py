"""What bf16 Transformer weights would cost in accuracy: the shipped ATD and MVTM with every Linear
layer's weight and input rounded to bfloat16 and the products summed in float32 (what an avx512_bf16
`vdpbf16ps` kernel computes), against float32, on validation slices only (the glioma validation set,
every 12th slice). Prints the largest differences beside the parity tolerance (1e-4, docs/engine.md),
the detector decisions (p > λ) that flip, and the MVTM draws' mode changes at 15 % masked tokens.

    .venv/bin/python Training/tools/bf16_error.py [--model Models/default] [--data data/w/cache/val_anomalous.npz]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimood_train.checkpoint import load_checkpoint  # noqa: E402

PARITY_TOLERANCE = 1e-4


def bfloat16_rounded(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float32)


def forward(model: nn.Module, inputs: torch.Tensor, bfloat16_linears: bool) -> torch.Tensor:
    """model(inputs), its Linear layers' weights and inputs rounded to bf16 when asked; the model is left as it was."""
    hooks, originals = [], []
    if bfloat16_linears:
        for module in model.modules():
            if isinstance(module, nn.Linear):
                originals.append((module, module.weight.data))
                module.weight.data = bfloat16_rounded(module.weight.data)
                hooks.append(module.register_forward_pre_hook(lambda _, args: (bfloat16_rounded(args[0]),)))
    try:
        with torch.no_grad():
            return model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
        for module, weight in originals:
            module.weight.data = weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Models/default")
    parser.add_argument("--data", default="data/w/cache/val_anomalous.npz")
    parser.add_argument("--every", type=int, default=12, help="take every N-th slice")
    args = parser.parse_args()
    torch.manual_seed(0)
    checkpoint = load_checkpoint(args.model, ["vqvae", "atd", "mvtm"])
    vqvae, atd, mvtm = (checkpoint.models[name] for name in ("vqvae", "atd", "mvtm"))
    lam = json.loads((Path(args.model) / "model.json").read_text())["inference"]["lambda"]
    slices = np.load(args.data)["slices"][::args.every].astype(np.float32)
    images = torch.from_numpy(slices)[:, None]
    with torch.no_grad():
        sequences = torch.cat([vqvae.tokenize(images[i:i + 32]) for i in range(0, len(images), 32)]).flatten(1)

    exact = torch.sigmoid(forward(atd, sequences, False)).squeeze(-1)
    rounded = torch.sigmoid(forward(atd, sequences, True)).squeeze(-1)
    flipped = ((exact > lam) != (rounded > lam)).float().mean().item()
    print(f"{len(images)} slices, {sequences.numel()} tokens; parity tolerance {PARITY_TOLERANCE:g}")
    print(f"ATD probabilities: largest |bf16 − fp32| {(exact - rounded).abs().max():.2e}, "
          f"mean {(exact - rounded).abs().mean():.2e}; decisions p > λ = {lam} flipped: {100 * flipped:.3f} %")

    masked = sequences.clone()
    mask = torch.rand(sequences.shape) < 0.15
    masked[mask] = mvtm.cfg.vocab_size - 1
    exact, rounded = forward(mvtm, masked, False), forward(mvtm, masked, True)
    mode_changed = (exact.argmax(-1) != rounded.argmax(-1))[mask].float().mean().item()
    print(f"MVTM logits at masked tokens: largest |bf16 − fp32| {(exact - rounded)[mask].abs().max():.2e}, "
          f"mean {(exact - rounded)[mask].abs().mean():.2e}; most likely token changed at {100 * mode_changed:.3f} %")


if __name__ == "__main__":
    main()
