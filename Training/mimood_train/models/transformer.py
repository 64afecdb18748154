"""Pre-LN token Transformer shared by the ATD, MVTM, AR and Token-Critic networks."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TransformerConfig


class DropPath(nn.Module):
    """Stochastic depth: during training, drops a residual branch for whole samples and rescales
    the kept ones by 1/(1-p). Identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(x.shape[0], 1, 1, device=x.device).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Attention(nn.Module):
    """Multi-head self-attention: softmax(q k^T / sqrt(head_dim) [+ causal -inf mask]) v per head,
    heads concatenated, then `proj`. F.scaled_dot_product_attention computes exactly this (its
    fused CPU kernel is ~1.7x faster than the spelled-out matmuls; tests check it against them)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        assert cfg.dim % cfg.heads == 0
        self.heads, self.head_dim, self.causal = cfg.heads, cfg.dim // cfg.heads, cfg.causal
        self.attn_dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)   # output features: [q | k | v], each head-major
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, dim = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, h, N, hd]
        out = F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), is_causal=self.causal,
            dropout_p=self.attn_dropout if self.training else 0.0, scale=1.0 / math.sqrt(self.head_dim))
        return self.proj(out.to(x.dtype).transpose(1, 2).reshape(b, n, dim))   # heads concatenated


class Mlp(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.fc1 = nn.Linear(cfg.dim, hidden)
        self.fc2 = nn.Linear(hidden, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="none"))   # exact erf GELU


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, drop_path: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg)
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.resid_drop(self.attn(self.ln1(x))))
        return x + self.drop_path(self.resid_drop(self.mlp(self.ln2(x))))


class TokenTransformer(nn.Module):
    """tokens [B, N] long -> logits [B, N, out_dim] (out_dim 1 for atd/critic, K for mvtm/ar)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_emb = nn.Parameter(torch.zeros(1, cfg.n_positions, cfg.dim))
        self.emb_drop = nn.Dropout(cfg.dropout)
        # Stochastic-depth rate grows linearly from 0 (first block) to drop_path (last block).
        rates = torch.linspace(0.0, cfg.drop_path, cfg.depth).tolist() if cfg.depth > 1 else [cfg.drop_path]
        self.blocks = nn.ModuleList(Block(cfg, rate) for rate in rates)
        self.ln_f = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.out_dim)
        self.apply(self._init_weights)
        nn.init.normal_(self.pos_emb, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.emb_drop(self.tok_emb(tokens) + self.pos_emb[:, : tokens.shape[1]])
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def shift_right(tokens: torch.Tensor, start_id: int) -> torch.Tensor:
    """AR input: [SOS, t_0, ..., t_{N-2}]; with the causal mask, position i predicts t_i from t_<i."""
    start = torch.full_like(tokens[:, :1], start_id)
    return torch.cat([start, tokens[:, :-1]], dim=1)
