"""Loading what training and evaluation read: trained models (run directories, model.pt files or
exported checkpoints), and token grids, computed once per (VQ-VAE, slice cache, views) and cached."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from .config import TransformerConfig, VQVAEConfig
from .models import VQVAE, TokenTransformer


class SliceSource(Protocol):
    """What the VQ-VAE trainer needs from a dataset: float [1, H, W] slices in [0, 1]."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> torch.Tensor: ...


def dihedral(x: torch.Tensor, view: int) -> torch.Tensor:
    """View 0..7 of the square's symmetry group on the last two dims: a left-right flip when view is
    odd, then view // 2 counter-clockwise quarter turns. Views 0-1 are identity and mirror image."""
    if view % 2:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, view // 2, dims=(-2, -1))


@torch.no_grad()
def tokenize_dataset(vqvae: VQVAE, data: SliceSource, views: int, batch_size: int = 32) -> np.ndarray:
    """Token grids of every slice under the first `views` dihedral views: [N, views, h, w] int16.
    Flipping/rotating a token grid is not the same as tokenising a flipped image, so latent-model
    augmentation is done here, on images, before tokenising. Runs on the VQ-VAE's device."""
    vqvae.eval()
    device = next(vqvae.parameters()).device
    tokens = np.zeros((len(data), views, vqvae.cfg.grid, vqvae.cfg.grid), dtype=np.int16)
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        images = torch.stack([torch.as_tensor(data[i]) for i in range(start, stop)]).float().to(device)
        for view in range(views):
            tokens[start:stop, view] = vqvae.tokenize(dihedral(images, view)).cpu().numpy()
    return tokens


def load_model(path: str | Path, expected: str) -> nn.Module:
    """A trained model from a run directory (its model.pt, else its latest state.pt), a model.pt, or an
    exported checkpoint directory (its model.json)."""
    path = Path(path)
    if (path / "model.json").is_file():
        from .checkpoint import load_checkpoint   # checkpoint.py imports this module
        return load_checkpoint(path, [expected]).models[expected]
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").exists() else path / "state.pt"
    saved = torch.load(path, weights_only=False, map_location="cpu")
    component, config = saved["component"], saved["config"]
    state_dict = saved["state_dict"] if "state_dict" in saved else saved["model"]   # model.pt or state.pt
    if component != expected:
        raise ValueError(f"{path} holds a {component}, expected {expected}")
    model = VQVAE(VQVAEConfig(**config)) if component == "vqvae" else TokenTransformer(TransformerConfig(**config))
    model.load_state_dict(state_dict)
    return model.eval()


def load_or_build_tokens(vqvae_path: str, data_path: str, data: SliceSource, views: int,
                         tokens_path: str | None, device: str = "cpu") -> np.ndarray:
    """Token grids cached next to the VQ-VAE (computed once, shared by the four latent trainers)."""
    vqvae_dir = Path(vqvae_path) if Path(vqvae_path).is_dir() else Path(vqvae_path).parent
    path = Path(tokens_path) if tokens_path else vqvae_dir / f"tokens_{Path(data_path).stem}_v{views}.npz"
    if path.exists():
        return np.load(path)["tokens"]
    print(f"tokenising {len(data)} slices x {views} views -> {path}", flush=True)
    tokens = tokenize_dataset(load_model(vqvae_path, "vqvae").to(device), data, views,
                              batch_size=256 if device != "cpu" else 32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, tokens=tokens)
    os.replace(tmp, path)
    return tokens
