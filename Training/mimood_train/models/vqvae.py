"""VQ-VAE with the Taming Transformers (VQGAN) encoder/decoder, or a local patch encoder and l2-normalised
codes (ViT-VQGAN); state_dict names follow Taming."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VQVAEConfig


def normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.norm1 = normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
        self.norm2 = normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, 1x1 convs, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        q = self.q(hn).reshape(b, c, h * w).transpose(1, 2)       # [B, HW, C]
        k = self.k(hn).reshape(b, c, h * w)                        # [B, C, HW]
        v = self.v(hn).reshape(b, c, h * w)                        # [B, C, HW]
        weights = torch.softmax(torch.bmm(q, k) * c ** -0.5, dim=2)   # [B, HW(query), HW(key)]
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))   # zero pad right and bottom


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout)
    mid.attn_1 = AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


class Encoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, stride=1, padding=1)
        in_mult = [1] + list(cfg.ch_mult)
        resolution = cfg.resolution
        self.down = nn.ModuleList()
        for level, mult in enumerate(cfg.ch_mult):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = cfg.ch * in_mult[level], cfg.ch * mult
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, cfg.dropout))
                block_in = block_out
                if resolution in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in))
            if level != len(cfg.ch_mult) - 1:
                stage.downsample = Downsample(block_in)
                resolution //= 2
            self.down.append(stage)
        self.mid = _mid(block_in, cfg.dropout)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class TokenBlock(nn.Module):
    """Pre-LN MLP on each token alone: x + fc2(SiLU(fc1(LayerNorm(x)))), x [B, N, C]. LayerNorm over a
    token's channels, not GroupNorm over the grid, whose statistics would let every token see all others."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.fc1 = nn.Linear(channels, channels)
        self.fc2 = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.silu(self.fc1(self.norm(x))))


class PatchEncoder(nn.Module):
    """Local tokens: conv_in embeds each f×f patch alone (kernel = stride = f), conv_context mixes each
    token with its eight neighbours (its only spatial reach: a pixel change moves tokens at most one
    token away), then per-token MLP blocks."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        f = 2 ** (len(cfg.ch_mult) - 1)
        channels = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.in_channels, channels, f, stride=f)
        self.conv_context = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.block = nn.ModuleList(TokenBlock(channels) for _ in range(2 * cfg.num_res_blocks))
        self.norm_out = nn.LayerNorm(channels)
        self.proj_out = nn.Linear(channels, cfg.z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_context(F.silu(self.conv_in(x)))
        b, c, height, width = h.shape
        h = h.flatten(2).transpose(1, 2)                      # [B, h·w, C]
        for block in self.block:
            h = block(h)
        h = self.proj_out(F.silu(self.norm_out(h)))
        return h.transpose(1, 2).reshape(b, -1, height, width)


class Decoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        block_in = cfg.ch * cfg.ch_mult[-1]
        resolution = cfg.grid
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, stride=1, padding=1)
        self.mid = _mid(block_in, cfg.dropout)
        stages = []
        for level in reversed(range(len(cfg.ch_mult))):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_out = cfg.ch * cfg.ch_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, cfg.dropout))
                block_in = block_out
                if resolution in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in))
            if level != 0:
                stage.upsample = Upsample(block_in)
                resolution *= 2
            stages.insert(0, stage)   # up.{i} has the resolution of encoder down.{i}
        self.up = nn.ModuleList(stages)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.in_channels, 3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for stage in reversed(self.up):   # lowest resolution first
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int, beta: float, l2: bool = False):
        super().__init__()
        self.n_embed, self.beta, self.l2 = n_embed, beta, l2
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def project(self, vectors: torch.Tensor) -> torch.Tensor:
        """Latents and codes as the lookup sees them: l2-normalised along the last axis when `l2`."""
        return F.normalize(vectors, dim=-1, eps=1e-6) if self.l2 else vectors

    def codes(self, indices: torch.Tensor) -> torch.Tensor:
        """The code vectors of `indices`, as the decoder reads them."""
        return self.project(self.embedding(indices))

    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of z_flat [N, D] (squared Euclidean distance)."""
        # In float32 even under bf16 autocast: a code decision must not hinge on 8-bit mantissas.
        with torch.autocast(z_flat.device.type, enabled=False):
            z_flat, codes = self.project(z_flat.float()), self.project(self.embedding.weight.float())
            distances = (z_flat.pow(2).sum(1, keepdim=True) - 2 * z_flat @ codes.t()
                         + codes.pow(2).sum(1)[None, :])
        return distances.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, d, h, w = z.shape
        z = self.project(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        indices = self.nearest(z_flat)
        z_q = self.codes(indices).view(b, h, w, d).permute(0, 3, 1, 2)
        loss = torch.mean((z_q.detach() - z) ** 2) + self.beta * torch.mean((z_q - z.detach()) ** 2)
        z_q = z + (z_q - z).detach()   # straight-through estimator
        return z_q, loss, indices.view(b, h, w)


class VQVAE(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg
        encoders = {"taming": Encoder, "patch": PatchEncoder}
        if cfg.encoder not in encoders:
            raise ValueError(f"encoder {cfg.encoder!r} is not one of {sorted(encoders)}")
        self.encoder = encoders[cfg.encoder](cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)
        # Called as a method too, as in Taming: quantize(z) -> (z_q, vq_loss, indices [B, h, w]).
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim, cfg.beta, cfg.l2_codes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] image -> continuous latents z [B, D, H/f, W/f] (after quant_conv)."""
        return self.quant_conv(self.encoder(x))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z_q))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Token grid [B, h, w] long -> image [B, C, H, W]."""
        return self.decode(self.quantize.codes(indices).permute(0, 3, 1, 2))

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize.nearest(
            self.encode(x).permute(0, 2, 3, 1).reshape(-1, self.cfg.embed_dim)
        ).view(x.shape[0], self.cfg.grid, self.cfg.grid)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_q, vq_loss, indices = self.quantize(self.encode(x))
        return self.decode(z_q), vq_loss, indices

    @torch.no_grad()
    def reseed_codes(self, dead: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None) -> int:
        """Replace the codes flagged in `dead` [K] bool by random encoder outputs from z [B, D, h, w]
        (codebook-collapse guard). Returns the number of re-seeded codes."""
        n_dead = int(dead.sum())
        if n_dead:
            z_flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.cfg.embed_dim)
            pick = torch.randint(0, z_flat.shape[0], (n_dead,), generator=generator)
            self.quantize.embedding.weight[dead] = z_flat[pick].to(self.quantize.embedding.weight)
        return n_dead


def codebook_stats(indices: torch.Tensor, n_embed: int) -> tuple[float, float]:
    """(fraction of the K codes used, perplexity exp(H(p)) of the code histogram)."""
    counts = torch.bincount(indices.reshape(-1), minlength=n_embed).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float((counts > 0).float().mean()), float(entropy.exp())
