"""The positional code-frequency prior: a non-learned token scorer, the baseline every learned detector
must beat (issue 13). From healthy training token grids it counts how often each code occurs at each grid
position, spreads the counts over neighbouring positions (a Gaussian of σ tokens: healthy anatomy shifts a
little between subjects), adds α to every count and normalises per position. A token's score is
−log p(code | position): high where the code is rare at that place in healthy brains.

    python -m mimood_train.token_prior --tokens TOKENS.npy --out PRIOR.pt [--alpha 1 --sigma 1 --codes 256]

TOKENS.npy: int [N, h, w] grids; or a .npz whose `tokens` is [N, V, h, w] (V variants of each slice).
PRIOR.pt is exported as the optional checkpoint component `prior` (docs/checkpoint-format.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn


@dataclass
class TokenPriorConfig:
    """`architecture` of the `prior` component (kind `token_prior`)."""
    n_positions: int = 400
    n_codes: int = 256
    alpha: float = 1.0     # added to every smoothed count
    sigma: float = 1.0     # Gaussian spread of the counts over grid positions, in tokens; 0 = none

    def __post_init__(self):
        if self.n_positions < 1 or self.n_codes < 2:
            raise ValueError(f"n_positions must be ≥ 1 and n_codes ≥ 2, got {self.n_positions} and {self.n_codes}")
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ValueError(f"alpha must be a positive number, got {self.alpha}")   # keeps every log p finite
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be a non-negative number, got {self.sigma}")


class TokenPrior(nn.Module):
    """log p(code | position) as the buffer `log_prob` [n_positions, n_codes] (saved in the state_dict)."""

    def __init__(self, cfg: TokenPriorConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("log_prob", torch.zeros(cfg.n_positions, cfg.n_codes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token scores −log p(code | position) of row-major grids [B, n_positions]."""
        positions = torch.arange(self.cfg.n_positions, device=tokens.device).expand_as(tokens)
        return -self.log_prob[positions, tokens]


def read_token_grids(path: Path) -> np.ndarray:
    """[N, h, w] integer grids from a .npy [N, h, w], or from a .npz's `tokens` [N, V, h, w] (variants flattened)."""
    if path.suffix == ".npz":
        with np.load(path) as archive:
            if "tokens" not in archive:
                raise ValueError(f"{path}: no array 'tokens' (has {sorted(archive.files)})")
            grids = archive["tokens"]
        if grids.ndim != 4:
            raise ValueError(f"{path}: 'tokens' must be [N, V, h, w], got shape {list(grids.shape)}")
        grids = grids.reshape(-1, *grids.shape[2:])
    else:
        grids = np.load(path)
        if grids.ndim != 3:
            raise ValueError(f"{path}: token grids must be [N, h, w], got shape {list(grids.shape)}")
    if not np.issubdtype(grids.dtype, np.integer):
        raise ValueError(f"{path}: token grids must be integers, got {grids.dtype}")
    return grids


def build_prior(grids: np.ndarray, n_codes: int, alpha: float = 1.0, sigma: float = 1.0) -> TokenPrior:
    """The prior of healthy grids [N, h, w] with codes in [0, n_codes)."""
    count, height, width = grids.shape
    if count == 0:
        raise ValueError("no token grids to count")
    if grids.min() < 0 or grids.max() >= n_codes:
        raise ValueError(f"codes must lie in [0, {n_codes}), got [{grids.min()}, {grids.max()}]")
    cfg = TokenPriorConfig(n_positions=height * width, n_codes=n_codes, alpha=alpha, sigma=sigma)
    flat = grids.reshape(count, -1).astype(np.int64)
    counts = np.zeros((height * width, n_codes))
    np.add.at(counts, (np.broadcast_to(np.arange(height * width), flat.shape), flat), 1)
    if sigma > 0:
        # Per code, over the grid's two axes; `nearest` keeps border positions' counts at full weight.
        counts = ndimage.gaussian_filter(counts.reshape(height, width, n_codes), sigma=(sigma, sigma, 0),
                                         mode="nearest").reshape(height * width, n_codes)
    smoothed = counts + alpha
    prior = TokenPrior(cfg)
    prior.log_prob.copy_(torch.from_numpy(np.log(smoothed / smoothed.sum(axis=1, keepdims=True))).float())
    return prior


def save_prior(prior: TokenPrior, path: Path, source: dict) -> None:
    torch.save({"config": dataclasses.asdict(prior.cfg), "log_prob": prior.log_prob, "source": source}, path)


def load_prior(path: Path) -> tuple[TokenPrior, dict]:
    """The prior saved by `save_prior`, and what it was built from."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    prior = TokenPrior(TokenPriorConfig(**saved["config"]))
    prior.load_state_dict({"log_prob": saved["log_prob"]})
    return prior.eval(), saved["source"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimood_train.token_prior", description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", required=True, type=Path, help="healthy training token grids (.npy [N, h, w] or .npz 'tokens' [N, V, h, w])")
    parser.add_argument("--out", required=True, type=Path, help="the prior (.pt), for checkpoint export --component prior=PRIOR.pt")
    parser.add_argument("--alpha", type=float, default=1.0, help="added to every smoothed count")
    parser.add_argument("--sigma", type=float, default=1.0, help="Gaussian spread over grid positions, in tokens (0: none)")
    parser.add_argument("--codes", type=int, default=256, help="codebook size K of the VQ-VAE (the small configuration's 256)")
    args = parser.parse_args(argv)
    try:
        grids = read_token_grids(args.tokens)
        prior = build_prior(grids, args.codes, args.alpha, args.sigma)
    except ValueError as error:
        parser.error(str(error))
    save_prior(prior, args.out, {"tokens": str(args.tokens.resolve()), "grids": int(grids.shape[0])})
    entropy = -(prior.log_prob.exp() * prior.log_prob).sum(1).mean().item()
    print(f"{args.out}: {grids.shape[0]} grids of {grids.shape[1]}×{grids.shape[2]}, K = {args.codes}, "
          f"α = {args.alpha}, σ = {args.sigma}; mean entropy per position {entropy:.2f} nats (uniform: {math.log(args.codes):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
