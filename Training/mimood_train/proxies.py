"""Proxy anomalies for the Anomalous Token Detector (ATD): what it is shown as "foreign" in training.

The paper's task (family `random`) puts uniformly random codes under a brush mask. Random codes are
rare, incoherent codes; real lesion tokens are common healthy codes in the wrong place, so that task
alone does not transfer (docs/training-report.md, *Diagnosis*). The other families are harder:

* token space, drawn per batch from cached token grids:
  - `cross_subject`: codes of another slice (another subject, usually) at the same positions;
  - `moved`: codes of the same grid, shifted by at least two tokens;
  - `mvtm`: codes the MVTM samples for the masked positions (the Token-Critic's negatives);
* image space, corrupted once and re-tokenised through the VQ-VAE (`build_image_proxies`):
  - `blob`: a smooth brighter or darker region of random size, edge sharpness and texture;
  - `patch`: a patch of another slice, from another place, blended in (foreign patch interpolation);
  - `deform`: a local bulge, pinch or swirl of the anatomy.
  Their label is the set of tokens whose code changed, within one token of the corrupted region;
  codes that flip farther away (the tokenizer is not local) are left out of the loss.

Nothing here models a lesion: no shapes, intensities or locations are taken from the test set's lesion
generator (synthetic.py); every family is generic.

    python -m mimood_train.proxies --vqvae Models/default --data cache/train.npz --tokens TOKENS.npz \
        --out image_proxies.npz --count 6000
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .data import SliceDataset
from .loading import load_model, load_or_build_tokens

TOKEN_FAMILIES = ("random", "cross_subject", "moved", "mvtm")
IMAGE_FAMILIES = ("blob", "patch", "deform")
FAMILIES = TOKEN_FAMILIES + IMAGE_FAMILIES
PATCH = 8   # pixels per token side (the VQ-VAE's downsampling factor)


def parse_weights(text: str) -> dict[str, float]:
    """`random=1,moved=0.5` -> {"random": 1.0, "moved": 0.5}; unknown families are refused."""
    weights = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in FAMILIES:
            raise ValueError(f"unknown proxy family {name!r} (known: {', '.join(FAMILIES)})")
        weights[name] = float(value or 1)
    if not weights or sum(weights.values()) <= 0:
        raise ValueError("proxy weights must name at least one family with a positive weight")
    return weights


# ---------------------------------------------------------------- token space

def random_codes(tokens: torch.Tensor, rng: np.random.Generator, n_codes: int) -> torch.Tensor:
    return torch.from_numpy(rng.integers(0, n_codes, tokens.shape))


def moved_codes(tokens: torch.Tensor, rng: np.random.Generator, grid: int) -> torch.Tensor:
    """Each grid shifted by (dy, dx) with max(|dy|, |dx|) >= 2, wrapping around: codes from elsewhere."""
    grids = tokens.reshape(-1, grid, grid)
    out = torch.empty_like(grids)
    for i, g in enumerate(grids):
        while True:
            dy, dx = (int(v) for v in rng.integers(-grid // 3, grid // 3 + 1, 2))
            if max(abs(dy), abs(dx)) >= 2:
                break
        out[i] = torch.roll(g, shifts=(dy, dx), dims=(0, 1))
    return out.reshape(tokens.shape)


@torch.no_grad()
def mvtm_codes(tokens: torch.Tensor, mask: torch.Tensor, mvtm: torch.nn.Module, rng: np.random.Generator,
               n_codes: int) -> torch.Tensor:
    """Temperature-1 MVTM samples at the masked positions; inverse-CDF sampling from `rng` so that a
    resumed run draws the same codes."""
    masked = torch.where(mask, torch.full_like(tokens, n_codes), tokens)
    probs = torch.softmax(mvtm(masked).float(), -1)
    uniform = torch.from_numpy(rng.random(tokens.shape)).to(probs)
    return torch.searchsorted(probs.cumsum(-1), uniform.unsqueeze(-1)).squeeze(-1).clamp(max=n_codes - 1)


# ---------------------------------------------------------------- image space

def smooth_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Unit-std smooth noise [size, size]."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def region(rng: np.random.Generator, size: int, centre: tuple[float, float], radius: float,
           edge_px: float) -> np.ndarray:
    """Soft [0, 1] mask of an irregular ellipse: random aspect and angle, boundary wobbled by smooth
    noise, logistic edge of width `edge_px`."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, math.pi)
    aspect = rng.uniform(0.5, 1.0)
    dy, dx = yy - centre[0], xx - centre[1]
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = (-dx * math.sin(angle) + dy * math.cos(angle)) / aspect
    wobble = 1 + 0.25 * np.clip(smooth_field(rng, size, max(radius / 2, 2)), -2, 2)
    distance = np.hypot(u, v) - radius * wobble
    return 1 / (1 + np.exp(np.clip(distance / max(edge_px, 1e-3), -50, 50)))


def brain_centre(rng: np.random.Generator, brain: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(brain)
    pick = rng.integers(len(ys))
    return float(ys[pick]), float(xs[pick])


def blob(rng: np.random.Generator, image: np.ndarray, brain: np.ndarray,
         sign: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A brighter (sign 1) or darker (-1; default: either) smooth region; its contrast, size, edge and
    texture all drawn at random."""
    size = image.shape[0]
    weight = region(rng, size, brain_centre(rng, brain), rng.uniform(3, 24), rng.uniform(0.5, 4))
    amplitude = (sign or rng.choice([-1, 1])) * rng.uniform(0.08, 0.5)
    texture = 1 + rng.uniform(0, 0.5) * np.clip(smooth_field(rng, size, rng.uniform(1, 4)), -2, 2)
    out = image + brain * weight * amplitude * texture
    return np.clip(out, 0, 1), weight * brain


def patch(rng: np.random.Generator, image: np.ndarray, brain: np.ndarray, donor: np.ndarray,
          donor_brain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreign patch interpolation: a region of `donor`, taken around another point, blended in."""
    size = image.shape[0]
    centre = brain_centre(rng, brain)
    source = brain_centre(rng, donor_brain)
    shifted = ndimage.shift(donor, (centre[0] - source[0], centre[1] - source[1]), order=1, mode="constant")
    weight = region(rng, size, centre, rng.uniform(4, 24), rng.uniform(0.5, 3)) * rng.uniform(0.5, 1.0)
    weight = weight * brain
    return np.clip((1 - weight) * image + weight * shifted, 0, 1), weight


def deform(rng: np.random.Generator, image: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A local bulge (push out), pinch (pull in) or swirl around a point in the brain."""
    size = image.shape[0]
    cy, cx = brain_centre(rng, brain)
    radius = rng.uniform(6, 24)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    r = np.hypot(dy, dx)
    falloff = np.exp(-(r / radius) ** 2)
    kind = rng.integers(3)
    if kind < 2:   # radial: sample from closer to (bulge) or farther from (pinch) the centre
        strength = rng.uniform(0.3, 0.7) * (1 if kind == 0 else -1)
        scale = 1 - strength * falloff
        sy, sx = cy + dy * scale, cx + dx * scale
    else:
        angle = rng.choice([-1, 1]) * rng.uniform(0.5, 1.5) * falloff
        sy = cy + dy * np.cos(angle) - dx * np.sin(angle)
        sx = cx + dy * np.sin(angle) + dx * np.cos(angle)
    out = ndimage.map_coordinates(image, [sy, sx], order=1, mode="constant")
    displacement = np.hypot(sy - yy, sx - xx)
    return out, np.clip(displacement, 0, 1)   # weight 1 where pixels moved by a pixel or more


def token_region(weight: np.ndarray, threshold: float = 0.1, dilation: int = 1) -> np.ndarray:
    """Tokens whose 8×8 patch holds corrupted pixels (weight > threshold), dilated by `dilation` tokens."""
    h, w = weight.shape
    tokens = (weight > threshold).reshape(h // PATCH, PATCH, w // PATCH, PATCH).any(axis=(1, 3))
    return ndimage.binary_dilation(tokens, np.ones((3, 3), bool), iterations=dilation) if dilation else tokens


def corrupt_image(family: str, rng: np.random.Generator, image: np.ndarray, brain: np.ndarray,
                  donor: np.ndarray, donor_brain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if family == "blob":
        return blob(rng, image, brain)
    if family == "patch":
        return patch(rng, image, brain, donor, donor_brain)
    return deform(rng, image, brain)


@torch.no_grad()
def build_image_proxies(vqvae: torch.nn.Module, slices: np.ndarray, clean_tokens: np.ndarray, count: int,
                        seed: int, families: tuple[str, ...] = IMAGE_FAMILIES, batch_size: int = 32) -> dict:
    """`count` corrupted slices (families in turn), re-tokenised. Returns arrays: `source` [M] (row of
    `slices` / `clean_tokens`), `family` [M] (index into `families`), `tokens` [M, h, w] int16, `label`
    [M, h, w] (code changed, near the region) and `ignore` [M, h, w] (code changed far from it)."""
    rng = np.random.default_rng(seed)
    grid = clean_tokens.shape[-1]
    sources = rng.integers(0, len(slices), count)
    donors = rng.integers(0, len(slices), count)
    out = {"source": sources.astype(np.int32), "family": (np.arange(count) % len(families)).astype(np.int8),
           "tokens": np.zeros((count, grid, grid), np.int16), "label": np.zeros((count, grid, grid), bool),
           "ignore": np.zeros((count, grid, grid), bool), "families": np.array(families)}
    device = next(vqvae.parameters()).device
    for start in range(0, count, batch_size):
        rows = range(start, min(start + batch_size, count))
        images, regions = [], []
        for i in rows:
            image = slices[sources[i]].astype(np.float64)
            donor = slices[donors[i]].astype(np.float64)
            corrupted, weight = corrupt_image(families[out["family"][i]], rng, image, image > 0, donor, donor > 0)
            images.append(corrupted)
            regions.append(token_region(weight))
        batch = torch.from_numpy(np.stack(images)).float().unsqueeze(1).to(device)
        tokens = vqvae.tokenize(batch).cpu().numpy()
        for j, i in enumerate(rows):
            changed = tokens[j] != clean_tokens[sources[i]]
            out["tokens"][i] = tokens[j]
            out["label"][i] = changed & regions[j]
            out["ignore"][i] = changed & ~regions[j]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimood_train.proxies", description=__doc__.split("\n")[0])
    parser.add_argument("--vqvae", required=True, help="VQ-VAE run dir, model.pt or checkpoint dir")
    parser.add_argument("--data", required=True, help="the training slice cache (.npz)")
    parser.add_argument("--tokens", required=True, help="its token cache (identity view; built here when missing)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--count", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device of the VQ-VAE, e.g. cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = SliceDataset(args.data)
    clean = load_or_build_tokens(args.vqvae, args.data, data, 1, args.tokens, args.device)[:, 0]
    arrays = build_image_proxies(load_model(args.vqvae, "vqvae").to(args.device), data.slices.numpy(), clean,
                                 args.count, args.seed, batch_size=32 if args.device == "cpu" else 256)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, args.out)
    for index, family in enumerate(arrays["families"]):
        rows = arrays["family"] == index
        print(f"{family}: {rows.sum()} slices, {arrays['label'][rows].sum(axis=(1, 2)).mean():.1f} tokens labelled, "
              f"{arrays['ignore'][rows].sum(axis=(1, 2)).mean():.1f} ignored per slice")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
