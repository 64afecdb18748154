import dataclasses
import math

import pytest
import torch

from mimood_train.config import CONFIGS, TransformerConfig, VQVAEConfig
from mimood_train.models import VQVAE, TokenTransformer, codebook_stats, shift_right

# 32 px, f = 8 -> 4x4 tokens; channels change at level 1 so a nin_shortcut exists.
TINY_VQ = VQVAEConfig(ch=32, ch_mult=[1, 2, 2, 2], num_res_blocks=2, attn_resolutions=[4], resolution=32,
                      z_channels=32, embed_dim=16, n_embed=32)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def tiny_transformer(head: str, **overrides) -> TransformerConfig:
    vocab = 33 if head in ("mvtm", "ar") else 32
    cfg = TransformerConfig(vocab_size=vocab, n_positions=16, dim=32, depth=2, heads=4, head=head,
                            causal=head == "ar", dropout=0.0, drop_path=0.1)
    return dataclasses.replace(cfg, **overrides)


def _resnet_keys(prefix, shortcut):
    keys = [f"{prefix}.{n}.{p}" for n in ("norm1", "conv1", "norm2", "conv2") for p in ("weight", "bias")]
    return keys + ([f"{prefix}.nin_shortcut.{p}" for p in ("weight", "bias")] if shortcut else [])


def _attn_keys(prefix):
    return [f"{prefix}.{n}.{p}" for n in ("norm", "q", "k", "v", "proj_out") for p in ("weight", "bias")]


def expected_vqvae_keys(cfg: VQVAEConfig) -> list[str]:
    """The Taming layout written out from method-notes.md, independently of the model code."""
    keys = ["encoder.conv_in.weight", "encoder.conv_in.bias"]
    channels, res, levels = cfg.ch, cfg.resolution, len(cfg.ch_mult)
    for i, mult in enumerate(cfg.ch_mult):
        for b in range(cfg.num_res_blocks):
            keys += _resnet_keys(f"encoder.down.{i}.block.{b}", channels != cfg.ch * mult)
            channels = cfg.ch * mult
        if res in cfg.attn_resolutions:
            keys += sum((_attn_keys(f"encoder.down.{i}.attn.{b}") for b in range(cfg.num_res_blocks)), [])
        if i != levels - 1:
            keys += [f"encoder.down.{i}.downsample.conv.{p}" for p in ("weight", "bias")]
            res //= 2
    mid = lambda m: _resnet_keys(f"{m}.mid.block_1", False) + _attn_keys(f"{m}.mid.attn_1") + _resnet_keys(f"{m}.mid.block_2", False)
    keys += mid("encoder") + ["encoder.norm_out.weight", "encoder.norm_out.bias", "encoder.conv_out.weight", "encoder.conv_out.bias"]
    keys += ["decoder.conv_in.weight", "decoder.conv_in.bias"] + mid("decoder")
    up_keys = {}
    for i in reversed(range(levels)):
        level_keys = []
        for b in range(cfg.num_res_blocks + 1):
            level_keys += _resnet_keys(f"decoder.up.{i}.block.{b}", channels != cfg.ch * cfg.ch_mult[i])
            channels = cfg.ch * cfg.ch_mult[i]
        if res in cfg.attn_resolutions:
            level_keys += sum((_attn_keys(f"decoder.up.{i}.attn.{b}") for b in range(cfg.num_res_blocks + 1)), [])
        if i != 0:
            level_keys += [f"decoder.up.{i}.upsample.conv.{p}" for p in ("weight", "bias")]
            res *= 2
        up_keys[i] = level_keys
    keys += sum((up_keys[i] for i in range(levels)), [])
    keys += ["decoder.norm_out.weight", "decoder.norm_out.bias", "decoder.conv_out.weight", "decoder.conv_out.bias",
             "quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias",
             "quantize.embedding.weight"]
    return keys


def test_vqvae_state_dict_names():
    keys = list(VQVAE(TINY_VQ).state_dict())
    assert sorted(keys) == sorted(expected_vqvae_keys(TINY_VQ))
    for name in ["encoder.down.0.block.0.norm1.weight", "encoder.down.1.block.0.nin_shortcut.weight",
                 "encoder.down.3.attn.1.q.weight", "encoder.down.0.downsample.conv.weight",
                 "encoder.mid.attn_1.proj_out.weight", "decoder.up.0.block.2.conv2.weight",
                 "decoder.up.1.upsample.conv.weight", "quantize.embedding.weight"]:
        assert name in keys
    assert "encoder.down.3.downsample.conv.weight" not in keys and "decoder.up.0.upsample.conv.weight" not in keys


def test_vqvae_shapes_and_paper_size():
    torch.manual_seed(0)
    model = VQVAE(TINY_VQ).eval()
    x = torch.rand(2, 1, 32, 32)
    z = model.encode(x)
    assert z.shape == (2, 16, 4, 4)
    z_q, vq_loss, indices = model.quantize(z)
    assert z_q.shape == z.shape and indices.shape == (2, 4, 4) and indices.dtype == torch.long
    assert vq_loss.ndim == 0
    rec, _, idx2 = model(x)
    assert rec.shape == x.shape and torch.equal(idx2, indices)
    codes = model.quantize.embedding.weight[indices].permute(0, 3, 1, 2)
    assert torch.allclose(z_q, codes, atol=1e-5)   # straight-through value equals the code up to rounding
    assert torch.equal(model.decode_indices(indices), model.decode(codes))
    assert torch.equal(model.tokenize(x), indices)
    assert model.state_dict()["decoder.up.1.upsample.conv.weight"].shape == (64, 64, 3, 3)   # [out, in, kh, kw]
    paper = sum(p.numel() for p in VQVAE(CONFIGS["paper"].vqvae).parameters())
    assert 65e6 < paper < 75e6   # "about 70 M parameters"


def test_quantizer_matches_brute_force_and_loss_form():
    model = VQVAE(TINY_VQ)
    z = torch.randn(2, 16, 4, 4, requires_grad=True)
    z_q, loss, indices = model.quantize(z)
    codes = model.quantize.embedding.weight
    z_flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 16)
    assert torch.equal(indices.reshape(-1), torch.cdist(z_flat, codes).argmin(1))
    chosen = codes[indices.reshape(-1)].detach()
    expected = 1.25 * ((chosen - z_flat) ** 2).mean()   # both terms share the value; beta = 0.25
    assert torch.allclose(loss, expected, atol=1e-6)
    z_q.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))   # straight-through


def test_patch_encoder_tokens_depend_on_their_patch_and_its_neighbours_only():
    torch.manual_seed(0)
    model = VQVAE(CONFIGS["small-local"].vqvae).eval()
    assert not any("attn" in name or "mid" in name for name in model.encoder.state_dict())
    x = torch.rand(1, 1, 160, 160)
    changed = x.clone()
    changed[..., 80:88, 40:48] += 0.5                      # the patch of token (10, 5)
    with torch.no_grad():
        moved = (model.encode(changed) - model.encode(x)).abs().sum(1)[0] > 0
    near = torch.zeros(20, 20, dtype=torch.bool)
    near[9:12, 4:7] = True
    assert moved[near].all() and not moved[~near].any()


def test_l2_codes_look_up_and_decode_unit_vectors():
    model = VQVAE(dataclasses.replace(TINY_VQ, l2_codes=True))
    z = torch.randn(2, 16, 4, 4)
    z_q, _, indices = model.quantize(z * 7.0)               # the length of z does not matter
    unit = torch.nn.functional.normalize(z.permute(0, 2, 3, 1).reshape(-1, 16), dim=1)
    codes = torch.nn.functional.normalize(model.quantize.embedding.weight, dim=1)
    assert torch.equal(indices.reshape(-1), torch.cdist(unit, codes).argmin(1))
    assert torch.allclose(z_q.norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    assert torch.allclose(model.quantize.codes(indices).norm(dim=-1), torch.ones(2, 4, 4), atol=1e-5)


def test_dead_code_reseeding_and_stats():
    model = VQVAE(TINY_VQ)
    z = torch.randn(2, 16, 4, 4)
    dead = torch.zeros(32, dtype=torch.bool)
    dead[:5] = True
    before = model.quantize.embedding.weight.clone()
    assert model.reseed_codes(dead, z, torch.Generator().manual_seed(0)) == 5
    after = model.quantize.embedding.weight
    assert torch.equal(after[5:], before[5:])
    z_rows = z.permute(0, 2, 3, 1).reshape(-1, 16)
    assert all((z_rows == row).all(1).any() for row in after[:5])
    usage, perplexity = codebook_stats(torch.tensor([0, 0, 1, 1]), 4)
    assert usage == 0.5 and math.isclose(perplexity, 2.0, rel_tol=1e-6)


@pytest.mark.parametrize("head,out_dim", [("atd", 1), ("mvtm", 32), ("ar", 32), ("critic", 1)])
def test_transformer_shapes(head, out_dim):
    cfg = tiny_transformer(head)
    tokens = torch.randint(0, cfg.vocab_size, (3, 16))
    assert TokenTransformer(cfg)(tokens).shape == (3, 16, out_dim)


def test_transformer_state_dict_names():
    keys = list(TokenTransformer(tiny_transformer("mvtm")).state_dict())
    block = lambda i: [f"blocks.{i}.{n}.{p}" for n in ("ln1", "attn.qkv", "attn.proj", "ln2", "mlp.fc1", "mlp.fc2")
                       for p in ("weight", "bias")]
    expected = ["tok_emb.weight", "pos_emb"] + block(0) + block(1) + ["ln_f.weight", "ln_f.bias", "head.weight", "head.bias"]
    assert sorted(keys) == sorted(expected)
    sd = TokenTransformer(tiny_transformer("mvtm")).state_dict()
    assert sd["pos_emb"].shape == (1, 16, 32) and sd["blocks.0.attn.qkv.weight"].shape == (96, 32)
    assert sd["tok_emb.weight"].shape == (33, 32) and sd["head.weight"].shape == (32, 32)


def reference_forward(model: TokenTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The forward pass spelled out op by op, as docs/training.md describes it (eval mode)."""
    cfg, sd = model.cfg, model.state_dict()
    hd = cfg.dim // cfg.heads
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (cfg.dim,), sd[p + ".weight"], sd[p + ".bias"], cfg.layer_norm_eps)
    lin = lambda x, p: x @ sd[p + ".weight"].t() + sd[p + ".bias"]
    x = sd["tok_emb.weight"][tokens] + sd["pos_emb"][:, : tokens.shape[1]]
    b, n, _ = x.shape
    for i in range(cfg.depth):
        h = lin(ln(x, f"blocks.{i}.ln1"), f"blocks.{i}.attn.qkv")
        q, k, v = h[..., : cfg.dim], h[..., cfg.dim: 2 * cfg.dim], h[..., 2 * cfg.dim:]
        split = lambda t: t.reshape(b, n, cfg.heads, hd).transpose(1, 2)
        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(hd)
        if cfg.causal:
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        attn = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, n, cfg.dim)
        x = x + lin(attn, f"blocks.{i}.attn.proj")
        h = lin(ln(x, f"blocks.{i}.ln2"), f"blocks.{i}.mlp.fc1")
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        x = x + lin(h, f"blocks.{i}.mlp.fc2")
    return lin(ln(x, "ln_f"), "head")


@pytest.mark.parametrize("head", ["mvtm", "ar"])
def test_forward_matches_documented_reference(head):
    model = TokenTransformer(tiny_transformer(head)).eval()
    tokens = torch.randint(0, 33, (2, 16))
    with torch.no_grad():
        assert torch.allclose(model(tokens), reference_forward(model, tokens), atol=1e-5)


def test_drop_path_only_in_training():
    model = TokenTransformer(tiny_transformer("mvtm", drop_path=0.5, dropout=0.2))
    tokens = torch.randint(0, 33, (4, 16))
    model.eval()
    assert torch.equal(model(tokens), model(tokens))
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(tokens), model(tokens))


def test_ar_causality():
    model = TokenTransformer(tiny_transformer("ar", drop_path=0.0)).eval()
    tokens = torch.randint(0, 32, (1, 16))
    j = 7
    changed = tokens.clone()
    changed[0, j] = (tokens[0, j] + 1) % 32
    with torch.no_grad():
        a, b = model(shift_right(tokens, 32)), model(shift_right(changed, 32))
    assert torch.allclose(a[:, : j + 1], b[:, : j + 1], atol=1e-6)   # position i only sees tokens < i
    assert not torch.allclose(a[:, j + 1], b[:, j + 1])
