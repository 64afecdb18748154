"""PyTorch reference of the MIM-OOD restoration (paper §3.4) and of the two baselines.

This is the behaviour the Swift engine must reproduce. Conventions (docs/checkpoint-format.md,
"Inference"):
  * a token grid [B, 20, 20] is flattened row-major to a sequence [B, 400];
  * R restorations of B images run as one batch of B·R sequences, row b·R + r is restoration r of
    image b; results are returned as [B, R, ...];
  * every random draw goes through the explicit `torch.Generator`;
  * iterative restoration stops early, jointly for the whole batch, at the first step where no token
    of any restoration scores above the threshold (a restoration with nothing masked would not change
    anyway, so stopping jointly gives the same tokens as stopping each restoration on its own, and it
    keeps the generator's consumption independent of the batch composition within a step);
  * a background-only image (every pixel 0, the value preprocessing gives everything outside the
    brain) has nothing to restore: its tokens score 0 and are kept, its restorations are the image
    itself and its anomaly map is 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .models import shift_right


@dataclass
class Restoration:
    tokens: torch.Tensor                # [B, R, h, w] long, final tokens of each restoration
    token_heatmap: torch.Tensor         # [B, h, w] detector probabilities of the input's own tokens
    scores: list[torch.Tensor]          # per step run: detector probabilities [B, R, h, w] that made the mask
    masks: list[torch.Tensor]           # per step run: [B, R, h, w] bool, True = resampled
    samples: list[torch.Tensor]         # per step run: [B, R, h, w] long, the draws (used where masked)
    steps_run: int


@dataclass
class Detection:
    tokens: torch.Tensor                # [B, h, w] tokens of the input
    restoration: Restoration
    restored_images: torch.Tensor       # [B, R, C, H, W]
    anomaly_map: torch.Tensor           # [B, C, H, W] in [0, 1]


# A sampler gets (step, masked input [B·R, N]) and returns draws [B·R, N] for every position.
Sampler = Callable[[int, torch.Tensor], torch.Tensor]


@torch.no_grad()
def tokenize(vqvae: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Image [B, 1, H, W] -> token grid [B, h, w] (nearest codebook entry)."""
    _, _, indices = vqvae.quantize(vqvae.encode(x))
    return indices


@torch.no_grad()
def decode(vqvae: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Token grids [..., h, w] -> images [..., C, H, W] (any number of leading dimensions)."""
    lead, (h, w) = tokens.shape[:-2], tokens.shape[-2:]
    images = vqvae.decode_indices(tokens.reshape(-1, h, w))
    return images.reshape(*lead, *images.shape[1:])


def token_probabilities(detector: nn.Module, sequences: torch.Tensor) -> torch.Tensor:
    """ATD / Token-Critic: sigmoid of the per-token logit, [B, N]."""
    return torch.sigmoid(detector(sequences).reshape(sequences.shape))


def sample_categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of logits [..., K] at temperature 1."""
    probs = torch.softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


def mvtm_sampler(mvtm: nn.Module, generator: torch.Generator) -> Sampler:
    return lambda step, masked_input: sample_categorical(mvtm(masked_input), generator)


@torch.no_grad()
def restore_iteratively(detector: nn.Module, tokens: torch.Tensor, sampler: Sampler, *, threshold: float,
                        steps: int, restorations: int, mask_id: int,
                        background: torch.Tensor | None = None) -> Restoration:
    """The loop of §3.4 steps 2–3, repeated T times: probabilities p = detector(y_t); mask m = p > λ;
    draws ŷ from the sampler on y_t with masked positions set to [MASK]; y_{t+1} = y_t(1−m) + ŷ m.
    `background` [B] bool: images whose tokens score 0 (background only)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    batch, h, w = tokens.shape
    current = tokens.reshape(batch, h * w).repeat_interleave(restorations, dim=0)   # [B·R, N]

    def grid(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, restorations, h, w)

    scores, masks, samples = [], [], []
    kept = None if background is None else background.repeat_interleave(restorations)[:, None]
    for step in range(steps):
        probs = token_probabilities(detector, current)
        if kept is not None:
            probs = probs.masked_fill(kept, 0.0)
        if step == 0:
            token_heatmap = grid(probs)[:, 0]   # all restorations still equal the input
        mask = probs > threshold
        if not mask.any():
            break
        drawn = sampler(step, current.masked_fill(mask, mask_id))
        current = torch.where(mask, drawn, current)
        scores.append(grid(probs))
        masks.append(grid(mask))
        samples.append(grid(drawn))
    return Restoration(tokens=grid(current), token_heatmap=token_heatmap, scores=scores, masks=masks,
                       samples=samples, steps_run=len(masks))


def restore_mim_ood(atd: nn.Module, mvtm: nn.Module, tokens: torch.Tensor, *, lam: float, steps: int,
                    restorations: int, generator: torch.Generator,
                    background: torch.Tensor | None = None) -> Restoration:
    """MIM-OOD: ATD picks the tokens to resample (probability > λ), MVTM in-paints them."""
    return restore_iteratively(atd, tokens, mvtm_sampler(mvtm, generator), threshold=lam, steps=steps,
                               restorations=restorations, mask_id=mvtm.cfg.vocab_size - 1, background=background)


def restore_mvtm_critic(mvtm: nn.Module, critic: nn.Module, tokens: torch.Tensor, *, threshold: float,
                        steps: int, restorations: int, generator: torch.Generator) -> Restoration:
    """Baseline (Lezama et al.): the Token-Critic picks the tokens to resample, MVTM in-paints them."""
    return restore_iteratively(critic, tokens, mvtm_sampler(mvtm, generator), threshold=threshold,
                               steps=steps, restorations=restorations, mask_id=mvtm.cfg.vocab_size - 1)


def replay_mim_ood(atd: nn.Module, tokens: torch.Tensor, samples: list[torch.Tensor], *, lam: float,
                   steps: int, restorations: int, mask_id: int) -> Restoration:
    """Re-runs a restoration with the ATD but takes the draws from a recorded run (`samples`, one
    [B, R, h, w] tensor per step run) instead of sampling: an engine with a different random
    generator can be compared exactly this way."""
    def recorded_draws(step: int, masked_input: torch.Tensor) -> torch.Tensor:
        if step >= len(samples):
            raise ValueError(f"replay diverged: step {step} masks tokens but only {len(samples)} steps were recorded")
        return samples[step].reshape(masked_input.shape)

    return restore_iteratively(atd, tokens, recorded_draws, threshold=lam, steps=steps,
                               restorations=restorations, mask_id=mask_id)


@torch.no_grad()
def restore_ar(ar: nn.Module, tokens: torch.Tensor, *, lambda_nll: float, restorations: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """AR baseline (Naval Marimont & Tarroni 2021), as in the paper: raster order, one full forward
    pass per position. At position i the token's NLL under the AR given the already-restored prefix
    is computed; above λ_NLL it is replaced by a draw from the AR distribution. A draw is made at
    every position whether used or not, so the generator's state after position i does not depend
    on later tokens. Returns (restored tokens [B, R, h, w], resampled [B, R, h, w] bool)."""
    batch, h, w = tokens.shape
    current = tokens.reshape(batch, h * w).repeat_interleave(restorations, dim=0)
    resampled = torch.zeros_like(current, dtype=torch.bool)
    start_id = ar.cfg.vocab_size - 1
    for position in range(h * w):
        logits = ar(shift_right(current, start_id))[:, position]          # [B·R, K], sees tokens < position
        nll = -torch.log_softmax(logits, dim=-1).gather(1, current[:, position: position + 1]).squeeze(1)
        drawn = sample_categorical(logits, generator)
        replace = nll > lambda_nll
        current[:, position] = torch.where(replace, drawn, current[:, position])
        resampled[:, position] = replace
    shape = (batch, restorations, h, w)
    return current.reshape(shape), resampled.reshape(shape)


# Token scores of the input's own tokens, as the restorations above use them (Table 1).

@torch.no_grad()
def mvtm_token_nll(mvtm: nn.Module, grids: torch.Tensor) -> torch.Tensor:
    """−log p(token) [B, N] of every token of grids [B, h, w], each predicted while masked. Masking in
    4 interleaved groups (row % 2, col % 2) leaves every masked token's 8 neighbours visible."""
    batch, h, w = grids.shape
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    group = (2 * (rows % 2) + cols % 2).reshape(-1).to(grids.device)
    sequences = grids.reshape(batch, h * w)
    nll = torch.empty(sequences.shape, device=grids.device)
    for g in range(4):
        masked = group == g
        logits = mvtm(sequences.masked_fill(masked, mvtm.cfg.vocab_size - 1))
        token_nll = -torch.log_softmax(logits.float(), dim=-1).gather(-1, sequences.unsqueeze(-1)).squeeze(-1)
        nll[:, masked] = token_nll[:, masked]
    return nll


@torch.no_grad()
def ar_token_nll(ar: nn.Module, grids: torch.Tensor) -> torch.Tensor:
    """Teacher-forced −log p(t_i | t_<i) [B, N] in raster order ([SOS] = K in front, shifted right)."""
    sequences = grids.reshape(grids.shape[0], -1)
    logits = ar(shift_right(sequences, ar.cfg.vocab_size - 1))
    return -torch.log_softmax(logits.float(), dim=-1).gather(-1, sequences.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def detector_probability(detector: nn.Module, grids: torch.Tensor) -> torch.Tensor:
    return token_probabilities(detector, grids.reshape(grids.shape[0], -1))


TOKEN_SCORES = {"atd": detector_probability, "mvtm": mvtm_token_nll, "ar": ar_token_nll,
                "critic": detector_probability}


def min_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """size×size minimum, stride 1, same size; the border is padded with +inf so it never wins."""
    return -F.max_pool2d(-x, size, stride=1, padding=size // 2)


def avg_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """size×size mean, stride 1, same size; at the border only the in-image pixels are averaged."""
    return F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)


def background_only(x: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] -> [B] bool: every pixel 0 (outside the brain after preprocessing)."""
    return (x == 0).flatten(1).all(dim=1)


def anomaly_map(x: torch.Tensor, restored: torch.Tensor, *, combine: str = "softmax-weighted",
                temperature: float = 3.0, min_pool_size: int = 3, avg_pool_size: int = 7) -> torch.Tensor:
    """x [B, C, H, W], restored [B, R, C, H, W] -> smoothed anomaly score [B, C, H, W] in [0, 1].

    Residuals d_j = |x − x̃_j|. "mean": the mean over j. "softmax-weighted": Σ_j w_j d_j with
    w = softmax_j(temperature / mean_pixels(d_j)), favouring restorations close to the input; the
    mean residual is floored at 1e-8 so an exact restoration gets weight ~1 rather than a NaN.
    Then a min-pool removes thin edge residuals and an average pool smooths."""
    residuals = (x.unsqueeze(1) - restored).abs()
    if combine == "mean":
        combined = residuals.mean(dim=1)
    elif combine == "softmax-weighted":
        mean_residual = residuals.flatten(2).mean(dim=2).clamp_min(1e-8)      # [B, R]
        weights = torch.softmax(temperature / mean_residual, dim=1)
        combined = (weights[:, :, None, None, None] * residuals).sum(dim=1)
    else:
        raise ValueError(f"combine must be 'mean' or 'softmax-weighted', got {combine!r}")
    return avg_pool(min_pool(combined, min_pool_size), avg_pool_size).clamp(0.0, 1.0)


@torch.no_grad()
def detect_mim_ood(vqvae: nn.Module, atd: nn.Module, mvtm: nn.Module, x: torch.Tensor, *, lam: float,
                   steps: int, restorations: int, generator: torch.Generator,
                   combine: str = "softmax-weighted", temperature: float = 3.0,
                   min_pool_size: int = 3, avg_pool_size: int = 7) -> Detection:
    """End to end (paper §3.4): tokenize, restore, decode, anomaly map."""
    tokens = tokenize(vqvae, x)
    background = background_only(x)
    restoration = restore_mim_ood(atd, mvtm, tokens, lam=lam, steps=steps, restorations=restorations,
                                  generator=generator, background=background)
    restored_images = decode(vqvae, restoration.tokens)
    restored_images[background] = x[background].unsqueeze(1).expand(-1, restorations, -1, -1, -1)
    score = anomaly_map(x, restored_images, combine=combine, temperature=temperature,
                        min_pool_size=min_pool_size, avg_pool_size=avg_pool_size)
    return Detection(tokens=tokens, restoration=restoration, restored_images=restored_images,
                     anomaly_map=score)
