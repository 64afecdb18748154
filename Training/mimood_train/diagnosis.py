"""Measures that tell why a detector does or does not find lesions (docs/training-report.md, *Diagnosis*).

A *token set* is a fixed collection of token grids with, per token, a label (anomalous or not) and
whether it is scored (it touches the brain and its label is not ambiguous): `tokens` [M, h, w] int16,
`label` and `scored` [M, h, w] bool.

    python -m mimood_train.diagnosis token-set --vqvae V --data cache/val_anomalous.npz --out glioma.npz
    python -m mimood_train.diagnosis corruption-sets --vqvae V --data cache/val.npz --out DIR
    python -m mimood_train.diagnosis atd --atd A --sets glioma.npz DIR/*.npz --out report.json
    python -m mimood_train.diagnosis tokenizer --vqvae V --data cache/val.npz --out report.json

`corruption-sets` grades the proxy task's difficulty on healthy validation grids: uniform random codes
(the paper's task), codes of another subject at the same positions, codes moved within the grid, and
the tokens of the image after a smooth bright or dark blob was added. `tokenizer` measures how local and
stable the VQ-VAE's code is: the share of brain tokens that flip under pixel noise of σ = 0.01, and where
tokens flip when one 8×8 patch is brightened.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .evaluate import every_kth, patch_any, pooled_metrics
from .masks import BrushConfig, brush_masks
from .pipeline import token_probabilities
from .proxies import PATCH, blob, moved_codes, random_codes, token_region
from .loading import load_model, tokenize_dataset


def tokenize_images(vqvae: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Token grids [N, h, w] of images [N, H, W] (identity view), through the trainers' tokeniser."""
    return tokenize_dataset(vqvae, torch.from_numpy(images).float().unsqueeze(1), views=1)[:, 0]


def load_slices(path: str, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every k-th slice of a cache (at most `limit`): images float32, brain and lesion bool."""
    with np.load(path) as cache:
        rows = every_kth(len(cache["slices"]), limit)
        lesion = cache["lesion"][rows].astype(bool) if "lesion" in cache.files else None
        return cache["slices"][rows].astype(np.float32), cache["brain"][rows].astype(bool), lesion


def lesion_token_set(vqvae, path: str, limit: int) -> dict[str, np.ndarray]:
    images, brain, lesion = load_slices(path, limit)
    if lesion is None:
        raise ValueError(f"{path} has no lesion masks")
    return {"tokens": tokenize_images(vqvae, images), "label": patch_any(lesion, PATCH),
            "scored": patch_any(brain, PATCH)}


def corruption_sets(vqvae, path: str, limit: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Healthy grids under each graded corruption; the label is the set of tokens whose code changed."""
    images, brain, _ = load_slices(path, limit)
    clean = tokenize_images(vqvae, images)
    grid = clean.shape[-1]
    scored = patch_any(brain, PATCH)
    rng = np.random.default_rng(seed)
    flat = torch.from_numpy(clean.astype(np.int64)).flatten(1)
    mask = torch.from_numpy(brush_masks(rng, len(clean), grid, BrushConfig(max_ratio=0.3)).reshape(len(clean), -1))
    n_codes = vqvae.cfg.n_embed
    replacements = {
        "random": random_codes(flat, rng, n_codes),
        "cross_subject": flat[torch.from_numpy(rng.permutation(len(flat)))],
        "moved": moved_codes(flat, rng, grid),
    }
    sets = {}
    for name, codes in replacements.items():
        corrupted = torch.where(mask, codes, flat).reshape(clean.shape).numpy().astype(np.int16)
        sets[name] = {"tokens": corrupted, "label": corrupted != clean, "scored": scored}
    for name, sign in (("bright_blob", 1), ("dark_blob", -1)):
        corrupted_images, regions = [], []
        for image, in_brain in zip(images, brain):
            corrupted, weight = blob(rng, image.astype(np.float64), in_brain, sign)
            corrupted_images.append(corrupted.astype(np.float32))
            regions.append(token_region(weight))
        tokens = tokenize_images(vqvae, np.stack(corrupted_images))
        changed, near = tokens != clean, np.stack(regions)
        # Codes that flipped far from the blob are neither lesion nor healthy: not scored.
        sets[name] = {"tokens": tokens, "label": changed & near, "scored": scored & ~(changed & ~near)}
    return sets


@torch.no_grad()
def detector_scores(detector: torch.nn.Module, tokens: np.ndarray, device: torch.device | str = "cpu",
                    batch_size: int = 128) -> np.ndarray:
    flat = torch.from_numpy(tokens.astype(np.int64)).flatten(1)
    out = [token_probabilities(detector, flat[i:i + batch_size].to(device)).cpu().numpy()
           for i in range(0, len(flat), batch_size)]
    return np.concatenate(out).reshape(tokens.shape)


def score_token_set(detector: torch.nn.Module, token_set: dict, device: torch.device | str = "cpu") -> dict:
    """Pooled AP, AUROC and best DICE of the detector's probabilities over the set's scored tokens."""
    scores = detector_scores(detector, token_set["tokens"], device)
    scored = token_set["scored"].astype(bool)
    return pooled_metrics(scores[scored], token_set["label"].astype(bool)[scored])


@torch.no_grad()
def tokenizer_locality(vqvae, path: str, limit: int, seed: int = 0, noise: float = 0.01,
                       brighten: float = 0.1) -> dict:
    """Stability: share of brain tokens whose code changes under Gaussian pixel noise of std `noise`.
    Locality: one token-aligned 8×8 patch inside the brain brightened by `brighten`; the share of slices
    where every changed token lies within one token (Chebyshev) of it, and the mean number changed.
    Reconstruction: MAE of the decoded clean tokens, over all pixels and over the brain; codes used."""
    images, brain, _ = load_slices(path, limit)
    rng = np.random.default_rng(seed)
    clean = tokenize_images(vqvae, images)
    brain_tokens = patch_any(brain, PATCH)
    noisy = np.clip(images + rng.normal(0, noise, images.shape).astype(np.float32), 0, 1) * (images > 0)
    flipped = (tokenize_images(vqvae, noisy) != clean) & brain_tokens
    grid = clean.shape[-1]
    patched, positions = images.copy(), []
    inside = images.reshape(len(images), grid, PATCH, grid, PATCH).min(axis=(2, 4)) > 0   # patch all brain
    for i in range(len(images)):
        candidates = np.argwhere(inside[i])
        ty, tx = candidates[rng.integers(len(candidates))] if len(candidates) else (grid // 2, grid // 2)
        positions.append((ty, tx))
        window = np.s_[ty * PATCH:(ty + 1) * PATCH, tx * PATCH:(tx + 1) * PATCH]
        patched[i][window] = np.clip(patched[i][window] + brighten, 0, 1)
    changed = tokenize_images(vqvae, patched) != clean
    yy, xx = np.mgrid[0:grid, 0:grid]
    local, counts, far = [], [], []
    for i, (ty, tx) in enumerate(positions):
        distance = np.maximum(abs(yy - ty), abs(xx - tx))
        local.append(not (changed[i] & (distance > 1)).any())
        counts.append(int(changed[i].sum()))
        far.append(int((changed[i] & (distance >= 3)).sum()))
    reconstruction = np.concatenate([vqvae.decode_indices(torch.from_numpy(clean[i:i + 32]).long())[:, 0].numpy()
                                     for i in range(0, len(clean), 32)])
    error = np.abs(reconstruction - images)
    return {"slices": len(images), "noise_sigma": noise, "noise_flipped_brain_tokens": float(flipped.sum() / brain_tokens.sum()),
            "patch_brighten": brighten, "patch_local_fraction": float(np.mean(local)),
            "patch_changed_tokens_mean": float(np.mean(counts)), "patch_changed_far_mean": float(np.mean(far)),
            "mae": float(error.mean()), "brain_mae": float(error[brain].mean()),
            "codes_used": int(len(np.unique(clean)))}


def _save_set(token_set: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **token_set)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimood_train.diagnosis", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("token-set", "corruption-sets", "tokenizer"):
        command = commands.add_parser(name)
        command.add_argument("--vqvae", required=True, help="VQ-VAE run dir, model.pt or checkpoint dir")
        command.add_argument("--data", required=True, help="slice cache (.npz)")
        command.add_argument("--out", required=True, type=Path)
        command.add_argument("--max-slices", type=int, default=800)
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--device", default="cpu", help="torch device of the VQ-VAE, e.g. cuda")
    atd = commands.add_parser("atd")
    atd.add_argument("--atd", required=True, nargs="+", help="NAME=PATH detectors (run dir, model.pt or checkpoint)")
    atd.add_argument("--sets", required=True, nargs="+", type=Path, help="token sets (.npz)")
    atd.add_argument("--out", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.command == "atd":
        sets = {path.stem: dict(np.load(path)) for path in args.sets}
        report = {}
        for item in args.atd:
            name, _, path = item.partition("=")
            detector = load_model(path, "atd")
            report[name] = {set_name: {k: round(v, 4) if isinstance(v, float) else v
                                       for k, v in score_token_set(detector, token_set).items()}
                            for set_name, token_set in sets.items()}
            print(name, {k: (v["ap"], v["auroc"]) for k, v in report[name].items()}, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        return 0
    vqvae = load_model(args.vqvae, "vqvae").to(args.device)
    if args.command == "token-set":
        _save_set(lesion_token_set(vqvae, args.data, args.max_slices), args.out)
    elif args.command == "corruption-sets":
        for name, token_set in corruption_sets(vqvae, args.data, args.max_slices, args.seed).items():
            _save_set(token_set, args.out / f"{name}.npz")
    else:
        report = tokenizer_locality(vqvae, args.data, args.max_slices, args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
