"""Small data and configurations shared by the tests; the pytest fixtures built from them are in conftest.py."""
import numpy as np
import torch

from mimood_train.config import ConfigBundle, TrainConfig, TransformerConfig, VQVAEConfig
from mimood_train.masks import BrushConfig

SIZE, GRID, K = 64, 8, 32   # 64 px slices, f = 8, 32 codes


def tiny_bundle() -> ConfigBundle:
    vq = VQVAEConfig(ch=32, ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[8], resolution=SIZE,
                     z_channels=32, embed_dim=16, n_embed=K)
    t = dict(n_positions=GRID * GRID, dim=32, depth=2, heads=2, dropout=0.1, drop_path=0.1)
    tc = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1, ckpt_every=2, dead_code_every=2,
                     token_views=2, brush=BrushConfig(min_length=1, max_length=3, max_width=2, max_ratio=0.6))
    return ConfigBundle(vqvae=vq,
                        atd=TransformerConfig(vocab_size=K, head="atd", **t),
                        mvtm=TransformerConfig(vocab_size=K + 1, head="mvtm", **t),
                        ar=TransformerConfig(vocab_size=K + 1, head="ar", causal=True, **t),
                        critic=TransformerConfig(vocab_size=K, head="critic", **t),
                        train={c: tc for c in ("vqvae", "atd", "mvtm", "ar", "critic")})


def slices(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(1, SIZE, SIZE, generator=g) * (torch.rand(1, SIZE, SIZE, generator=g) > 0.3) for _ in range(n)]


def tokens(n=6):
    return np.random.default_rng(0).integers(0, K, (n, 2, GRID, GRID)).astype(np.int16)


def brain_image(seed=0, size=SIZE):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    brain = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2
    return np.where(brain, 0.3 + 0.4 * rng.random((size, size)), 0.0), brain
