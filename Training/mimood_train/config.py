"""Model and training configurations. Every field is a plain int/float/str/bool/list so that
`dataclasses.asdict` round-trips through JSON and a model can be rebuilt from its config alone."""
from __future__ import annotations

from dataclasses import dataclass, field

from .masks import BrushConfig

COMPONENTS = ("vqvae", "atd", "mvtm", "ar", "critic")


@dataclass
class VQVAEConfig:
    in_channels: int = 1
    ch: int = 128                       # multiples of 32: GroupNorm uses 32 groups
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 2, 4])   # f = 2**(len-1)
    num_res_blocks: int = 2
    attn_resolutions: list[int] = field(default_factory=lambda: [20])
    resolution: int = 160
    z_channels: int = 256
    embed_dim: int = 256                # D
    n_embed: int = 256                  # K
    dropout: float = 0.0
    beta: float = 0.25
    # "taming": Taming's encoder (ResNet levels, attention: every token sees the whole slice).
    # "patch": each f×f patch embedded alone, one 3×3 conv of context, then per-token MLP blocks:
    # a token depends on its own patch and its eight neighbours' only (local by construction).
    encoder: str = "taming"
    l2_codes: bool = False              # latents and codes l2-normalised before the lookup (ViT-VQGAN)

    @property
    def grid(self) -> int:
        return self.resolution // 2 ** (len(self.ch_mult) - 1)


@dataclass
class TransformerConfig:
    vocab_size: int = 257               # K for atd/critic, K+1 for mvtm ([MASK]=K) and ar ([SOS]=K)
    n_positions: int = 400
    dim: int = 512
    depth: int = 12
    heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    drop_path: float = 0.1
    head: str = "mvtm"                  # "atd" | "mvtm" | "ar" | "critic"
    causal: bool = False
    layer_norm_eps: float = 1e-5

    @property
    def out_dim(self) -> int:
        # atd/critic: one logit per token; mvtm/ar: logits over the K codes (special id excluded).
        return 1 if self.head in ("atd", "critic") else self.vocab_size - 1


@dataclass
class TrainConfig:
    steps: int = 200_000
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 1e-5
    warmup_steps: int = 1000
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    min_lr_ratio: float = 0.0           # cosine annealing ends at lr * min_lr_ratio
    grad_clip: float = 1.0
    seed: int = 0
    num_threads: int = 2
    log_every: int = 50
    ckpt_every: int = 500
    # VQ-VAE intensity / geometry augmentation
    gamma_range: list[float] = field(default_factory=lambda: [0.5, 2.0])   # log-uniform
    scale_range: list[float] = field(default_factory=lambda: [0.75, 1.25])
    shift_range: list[float] = field(default_factory=lambda: [-0.1, 0.1])
    dihedral: bool = True               # random flips and 90-degree rotations
    dead_code_every: int = 200          # VQ-VAE: re-seed codes unused over this many steps (0: off)
    input_noise: float = 0.0            # VQ-VAE: the encoder sees Gaussian noise of std U(0, this); the target is clean
    consistency: float = 0.0            # VQ-VAE with input_noise: weight pulling a noisy latent onto the clean slice's code
    # latent models
    token_views: int = 8                # dihedral views tokenised per slice (1: identity only)
    label_smoothing: float = 0.1        # MVTM cross-entropy
    brush: BrushConfig = field(default_factory=BrushConfig)
    # ATD proxy anomalies, family -> weight (proxies.py); {"random": 1} is the paper's task
    proxies: dict[str, float] = field(default_factory=lambda: {"random": 1.0})
    validate_every: int = 0             # steps between Task.validation_metrics (0: never)


@dataclass
class ConfigBundle:
    vqvae: VQVAEConfig
    atd: TransformerConfig
    mvtm: TransformerConfig
    ar: TransformerConfig
    critic: TransformerConfig
    train: dict[str, TrainConfig]


def _transformers(n_embed: int, n_positions: int, **sizes) -> dict[str, TransformerConfig]:
    return {
        "atd": TransformerConfig(vocab_size=n_embed, n_positions=n_positions, head="atd", **sizes),
        "mvtm": TransformerConfig(vocab_size=n_embed + 1, n_positions=n_positions, head="mvtm", **sizes),
        "ar": TransformerConfig(vocab_size=n_embed + 1, n_positions=n_positions, head="ar", causal=True, **sizes),
        "critic": TransformerConfig(vocab_size=n_embed, n_positions=n_positions, head="critic", **sizes),
    }


def paper_bundle() -> ConfigBundle:
    vqvae = VQVAEConfig()
    latent = TrainConfig(steps=200_000, batch_size=32)
    return ConfigBundle(
        vqvae=vqvae,
        **_transformers(vqvae.n_embed, vqvae.grid ** 2, dim=512, depth=12, heads=8, dropout=0.1),
        train={"vqvae": TrainConfig(steps=300_000, batch_size=16, token_views=1),
               "atd": latent, "mvtm": latent, "ar": latent, "critic": latent},
    )


def small_bundle() -> ConfigBundle:
    """Sized for the whole pipeline to train in about two hours on a 2-core CPU; step times and the
    budget are in docs/training.md. With a few thousand steps the paper's lr 5e-5 (meant for
    200k-300k steps) barely moves the weights, so the small runs use 3e-4 (VQ-VAE) and 5e-4
    (transformers), usual Adam rates for ~1 M-parameter models, with the same cosine decay."""
    vqvae = VQVAEConfig(ch=32, ch_mult=[1, 1, 2, 2], num_res_blocks=1, attn_resolutions=[20],
                        z_channels=64, embed_dim=64, n_embed=256)
    sizes = dict(dim=128, depth=4, heads=4, dropout=0.0)

    def latent(steps: int) -> TrainConfig:
        return TrainConfig(steps=steps, batch_size=16, lr=5e-4, warmup_steps=200, token_views=2,
                           log_every=50, ckpt_every=250)

    return ConfigBundle(
        vqvae=vqvae,
        **_transformers(vqvae.n_embed, vqvae.grid ** 2, **sizes),
        train={"vqvae": TrainConfig(steps=4000, batch_size=8, lr=3e-4, warmup_steps=200,
                                    dead_code_every=200, token_views=1, log_every=50, ckpt_every=250),
               "atd": latent(3000), "mvtm": latent(3000), "ar": latent(3000), "critic": latent(2000)},
    )


def small_local_bundle(consistency: float = 0.0) -> ConfigBundle:
    """`small` with a tokenizer whose tokens are local (issue 13): the patch encoder, l2-normalised
    16-dimensional codes, denoising training against flips (docs/training-report.md §0.6)."""
    bundle = small_bundle()
    bundle.vqvae = VQVAEConfig(ch=32, ch_mult=[1, 1, 2, 2], num_res_blocks=1, attn_resolutions=[20],
                               z_channels=64, embed_dim=16, n_embed=256, encoder="patch", l2_codes=True)
    bundle.train["vqvae"].input_noise = 0.02
    bundle.train["vqvae"].consistency = consistency
    return bundle


CONFIGS = {"paper": paper_bundle(), "small": small_bundle(), "small-local": small_local_bundle(),
           # the stability lever of docs/training-report.md §0.6, measured against small-local
           "small-local-consistent": small_local_bundle(consistency=1.0)}
