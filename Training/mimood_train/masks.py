"""Free-form brush masks on the token grid (DeepFill-style random walk with changing width).

A mask is a union of strokes. A stroke starts at a random token and walks `segments` straight
segments; every segment redraws its angle, length and width. The brush is a square of `width`
tokens stamped every half token along the segment, so consecutive stamps touch and each stroke
is one 8-connected blob. Strokes are added until the coverage reaches a target ratio drawn
uniformly from [min_ratio, max_ratio]; a stroke that would push coverage above max_ratio is
redrawn, so a mask is never empty and never full.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class BrushConfig:
    min_ratio: float = 0.03        # coverage target is drawn from U(min_ratio, max_ratio)
    max_ratio: float = 0.5
    min_segments: int = 1          # segments per stroke, inclusive range
    max_segments: int = 4
    min_length: float = 2.0        # segment length in tokens
    max_length: float = 7.0
    min_width: int = 1             # brush width in tokens, inclusive range
    max_width: int = 3
    angle_jitter: float = 2 * math.pi / 5   # per-segment deviation from the stroke's base angle
    max_strokes: int = 40          # safety bound on strokes per mask
    max_redraws: int = 20          # attempts to find a stroke that keeps coverage <= max_ratio


def brush_stroke(rng: np.random.Generator, grid: int, cfg: BrushConfig) -> np.ndarray:
    """One connected stroke as a bool [grid, grid] array."""
    mask = np.zeros((grid, grid), dtype=bool)
    y, x = rng.uniform(0, grid, size=2)
    base_angle = rng.uniform(0, 2 * math.pi)
    for segment in range(rng.integers(cfg.min_segments, cfg.max_segments + 1)):
        angle = base_angle + rng.uniform(-cfg.angle_jitter, cfg.angle_jitter)
        if segment % 2 == 1:
            angle = 2 * math.pi - angle   # DeepFill mirrors every other segment: zig-zag walk
        length = rng.uniform(cfg.min_length, cfg.max_length)
        width = int(rng.integers(cfg.min_width, cfg.max_width + 1))
        end_y = float(np.clip(y + length * math.sin(angle), 0, grid - 1e-6))
        end_x = float(np.clip(x + length * math.cos(angle), 0, grid - 1e-6))
        n_stamps = int(math.ceil(2 * math.hypot(end_y - y, end_x - x))) + 1
        for t in np.linspace(0.0, 1.0, n_stamps):
            _stamp(mask, y + t * (end_y - y), x + t * (end_x - x), width)
        y, x = end_y, end_x
    return mask


def _stamp(mask: np.ndarray, y: float, x: float, width: int) -> None:
    # Square brush of `width` tokens containing the token under (y, x).
    top = int(math.floor(y)) - (width - 1) // 2
    left = int(math.floor(x)) - (width - 1) // 2
    mask[max(top, 0):max(top + width, 0), max(left, 0):max(left + width, 0)] = True


def brush_mask(rng: np.random.Generator, grid: int = 20, cfg: BrushConfig | None = None) -> np.ndarray:
    """A bool [grid, grid] mask; True marks the tokens to corrupt / mask."""
    cfg = cfg or BrushConfig()
    target = rng.uniform(cfg.min_ratio, cfg.max_ratio)
    mask = np.zeros((grid, grid), dtype=bool)
    for _ in range(cfg.max_strokes):
        for _ in range(cfg.max_redraws):
            candidate = mask | brush_stroke(rng, grid, cfg)
            if candidate.mean() <= cfg.max_ratio:
                mask = candidate
                break
        if mask.mean() >= target:
            break
    if not mask.any():   # only reachable with a max_ratio below one stroke's area
        mask[rng.integers(grid), rng.integers(grid)] = True
    return mask


def brush_masks(rng: np.random.Generator, batch: int, grid: int = 20,
                cfg: BrushConfig | None = None) -> np.ndarray:
    """A bool [batch, grid, grid] stack of independent masks."""
    return np.stack([brush_mask(rng, grid, cfg) for _ in range(batch)])
