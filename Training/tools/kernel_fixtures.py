"""Small PyTorch reference outputs for the Swift numeric kernels (Sources/Kernels), one .npy per array.

    python Training/tools/kernel_fixtures.py --out Tests/Fixtures/kernels

Every case draws seeded random inputs and records what the PyTorch operation the models use returns;
Tests/KernelsTests compares the Swift kernels against them. The files regenerate byte for byte.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SEED = 4


def cases() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(SEED)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    out: dict[str, torch.Tensor] = {}

    # Convolutions: 3×3 with padding 1; the Taming downsampler (pad right/bottom, stride 2, padding 0);
    # 3×3 stride 2 padding 1; 1×1 plain and with stride 2.
    x, w, b = randn(2, 3, 6, 5), randn(4, 3, 3, 3), randn(4)
    out |= {"conv3x3_input": x, "conv3x3_weight": w, "conv3x3_bias": b,
            "conv3x3_output": F.conv2d(x, w, b, stride=1, padding=1)}
    x, w, b = randn(1, 3, 7, 6), randn(5, 3, 3, 3), randn(5)
    out |= {"downsample_input": x, "downsample_weight": w, "downsample_bias": b,
            "downsample_output": F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, stride=2, padding=0),
            "conv3x3_stride2_output": F.conv2d(x, w, b, stride=2, padding=1)}
    x, w, b = randn(2, 4, 5, 5), randn(3, 4, 1, 1), randn(3)
    out |= {"conv1x1_input": x, "conv1x1_weight": w, "conv1x1_bias": b,
            "conv1x1_output": F.conv2d(x, w, b),
            "conv1x1_stride2_output": F.conv2d(x, w, b, stride=2)}

    x = randn(2, 8, 3, 4) * 3 + 1
    w, b = randn(8), randn(8)
    out |= {"groupnorm_input": x, "groupnorm_weight": w, "groupnorm_bias": b,
            "groupnorm_output": F.group_norm(x, 4, w, b, eps=1e-6)}

    x = randn(3, 5, 16) * 2 - 1
    w, b = randn(16), randn(16)
    out |= {"layernorm_input": x, "layernorm_weight": w, "layernorm_bias": b,
            "layernorm_output": F.layer_norm(x, (16,), w, b, eps=1e-5)}

    x, w, b = randn(2, 3, 8), randn(5, 8), randn(5)
    out |= {"linear_input": x, "linear_weight": w, "linear_bias": b, "linear_output": F.linear(x, w, b)}

    x = randn(4, 10) * 4
    out |= {"activation_input": x, "gelu_output": F.gelu(x, approximate="none"), "silu_output": F.silu(x),
            "softmax_output": torch.softmax(x, dim=-1), "log_softmax_output": torch.log_softmax(x, dim=-1)}

    # Multi-head attention as mimood_train.models.transformer.Attention computes it from its qkv output.
    batch, tokens, heads, head_dim = 2, 7, 3, 4
    dim = heads * head_dim
    qkv = randn(batch, tokens, 3 * dim)
    q, k, v = qkv.view(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    for name, causal in (("attention_output", False), ("attention_causal_output", True)):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=1 / math.sqrt(head_dim))
        out[name] = o.transpose(1, 2).reshape(batch, tokens, dim)
    out["attention_qkv"] = qkv

    # The AttnBlock core of mimood_train.models.vqvae, after its q, k, v 1×1 convolutions.
    q, k, v = randn(2, 6, 3, 4), randn(2, 6, 3, 4), randn(2, 6, 3, 4)
    b_, c, h, w_ = q.shape
    weights = torch.softmax(torch.bmm(q.reshape(b_, c, h * w_).transpose(1, 2), k.reshape(b_, c, h * w_)) * c ** -0.5, 2)
    out |= {"spatial_q": q, "spatial_k": k, "spatial_v": v,
            "spatial_output": torch.bmm(v.reshape(b_, c, h * w_), weights.transpose(1, 2)).reshape(b_, c, h, w_)}

    # VectorQuantizer.nearest on z [N, D, H, W]; the generator checks that no decision is a near tie.
    z, codebook = randn(2, 4, 3, 5), randn(9, 4)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)[None, :]
    two_best = distances.topk(2, dim=1, largest=False).values
    assert (two_best[:, 1] - two_best[:, 0]).min() > 1e-3, "regenerate with another seed: a near tie"
    out |= {"codes_z": z, "codes_codebook": codebook, "codes_indices": distances.argmin(1).to(torch.int32)}

    # Anomaly-map smoothing: min-pool (−max-pool of −x) then average pool without padded positions.
    x = randn(2, 5, 6)
    out |= {"pool2d_input": x,
            "minpool2d_output": -F.max_pool2d(-x[:, None], 3, stride=1, padding=1)[:, 0],
            "avgpool2d_output": F.avg_pool2d(x[:, None], 7, stride=1, padding=3, count_include_pad=False)[:, 0]}
    x = randn(1, 1, 4, 8, 9)
    out |= {"pool3d_input": x,
            "minpool3d_output": -F.max_pool3d(-x, 3, stride=1, padding=1),
            "avgpool3d_output": F.avg_pool3d(x, (3, 7, 7), stride=1, padding=(1, 3, 3), count_include_pad=False)}

    x = randn(1, 2, 3, 4)
    out |= {"upsample_input": x, "upsample_output": F.interpolate(x, scale_factor=2.0, mode="nearest")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for name, tensor in cases().items():
            array = tensor.contiguous().numpy()
            np.save(args.out / f"{name}.npy", array.astype("<i4" if array.dtype == np.int32 else "<f4"))


if __name__ == "__main__":
    main()
