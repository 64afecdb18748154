"""Parity fixtures for the Swift engine: a tiny seeded checkpoint in the real format, two input slices,
and what PyTorch computes from them — every component's output, a few single layers, and a whole
MIM-OOD restoration with its recorded draws (so an engine with another random generator can replay it).

    python Training/tools/fixtures.py --out Tests/Fixtures/parity

The files regenerate equal up to float rounding (which depends on the CPU); `index.json` describes each
array and its tolerance.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mimood_train import pipeline
from mimood_train.checkpoint import export_checkpoint
from mimood_train.config import TransformerConfig, VQVAEConfig
from mimood_train.masks import brush_mask
from mimood_train.models import VQVAE, TokenTransformer, shift_right

SEED = 20240917
# Smaller than `small`, same structure: four levels (f = 8), channel changes both ways (nin_shortcut
# 32 -> 64 in down.1, 64 -> 32 in down.2), attention at 20×20, 160×160 input.
VQVAE_CONFIG = VQVAEConfig(ch=32, ch_mult=[1, 2, 1, 1], num_res_blocks=1, attn_resolutions=[20],
                           z_channels=32, embed_dim=32, n_embed=64)
# The local tokenizer (patch encoder, l2-normalised codes) at the same sizes and K, decoded by the same
# decoder structure; its checkpoint shares the ATD and MVTM above.
LOCAL_VQVAE_CONFIG = VQVAEConfig(ch=32, ch_mult=[1, 2, 1, 1], num_res_blocks=1, attn_resolutions=[20],
                                 z_channels=32, embed_dim=8, n_embed=64, encoder="patch", l2_codes=True)
TRANSFORMER_SIZES = dict(dim=48, depth=2, heads=4, dropout=0.0)
PIPELINE = dict(steps=3, restorations=2)
# The DICOM Segmentation's threshold on the anomaly map: random weights calibrate nothing, so a value that
# marks part of the parity volume's map.
MAP_THRESHOLD = 0.25
# Absolute tolerances the Swift side must meet (float32 with different summation orders). Measured
# float32-vs-float64 error: 1.7e-5 (encoder), 4.1e-5 (decoder, outputs up to ~5.5), under 2e-6 for the
# Transformers and 1.4e-5 for the anomaly maps; the VQ-VAE's conv stacks get a looser bound.
TOLERANCE = 1e-4
CONV_STACK_TOLERANCE = 2.5e-4


def phantom_slices() -> torch.Tensor:
    """Two smooth 160×160 'brains' in [0, 1]: an ellipse of tissue with brighter ventricles, and the
    second one with a bright round lesion — structure, not noise, so tokens vary across the grid."""
    row, col = np.meshgrid(np.linspace(-1, 1, 160), np.linspace(-1, 1, 160), indexing="ij")
    slices = []
    for lesion in (False, True):
        brain = ((row / 0.85) ** 2 + (col / 0.7) ** 2) < 1
        image = 0.35 + 0.15 * np.cos(6 * row) * np.sin(5 * col)
        ventricles = ((row / 0.3) ** 2 + ((np.abs(col) - 0.12) / 0.08) ** 2) < 1
        image = np.where(ventricles, 0.95, image)
        if lesion:
            image = np.where((row + 0.35) ** 2 + (col - 0.3) ** 2 < 0.03, 0.85, image)
        slices.append(np.where(brain, image, 0.0))
    return torch.tensor(np.stack(slices)[:, None], dtype=torch.float32)


def randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Weights of order-one effect: a freshly initialised Transformer outputs near-constant logits, which
    would make an absolute tolerance meaningless."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("weight") and parameter.dim() >= 2:
                fan_in = math.prod(parameter.shape[1:])
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / math.sqrt(fan_in))
            elif name.endswith("weight"):              # normalisation scales
                parameter.copy_(1 + 0.2 * torch.randn(parameter.shape, generator=generator))
            else:                                      # biases and the positional embedding
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))


def build_models(generator: torch.Generator) -> dict[str, nn.Module]:
    k = VQVAE_CONFIG.n_embed
    models: dict[str, nn.Module] = {"vqvae": VQVAE(VQVAE_CONFIG)}
    for head, vocab in (("atd", k), ("mvtm", k + 1), ("ar", k + 1), ("critic", k)):
        models[head] = TokenTransformer(TransformerConfig(vocab_size=vocab, head=head, causal=head == "ar",
                                                          **TRANSFORMER_SIZES))
    for model in models.values():
        randomize(model, generator)
        model.eval()
    return models


def nearest_code_margin(z: torch.Tensor, codebook: torch.Tensor) -> float:
    """Smallest gap between the best and second-best squared distance over all positions: a gap within
    float error would let another engine pick a different token."""
    distances = torch.cdist(z.double(), codebook.double()) ** 2
    best_two = distances.topk(2, dim=1, largest=False).values
    return float((best_two[:, 1] - best_two[:, 0]).min())


def seed_codebook(vqvae: VQVAE, x: torch.Tensor, generator: torch.Generator, tries: int = 16) -> float:
    """Codebook entries drawn from the encoder's outputs, so the phantoms use many codes; of `tries`
    draws, the one whose nearest-code decisions (as the look-up sees them) are clearest. Returns that margin."""
    with torch.no_grad():
        z = vqvae.quantize.project(vqvae.encode(x).permute(0, 2, 3, 1).reshape(-1, vqvae.cfg.embed_dim))
        # Distinct rows only: the patch encoder maps every background patch to the same vector, and two
        # equal codes would tie everywhere.
        z = z.unique(dim=0)
        draws = [z[torch.randperm(len(z), generator=generator)[: vqvae.cfg.n_embed]] for _ in range(tries)]
        margins = [nearest_code_margin(z, codebook) for codebook in draws]
        best = max(range(tries), key=margins.__getitem__)
        vqvae.quantize.embedding.weight.copy_(draws[best])
        return margins[best]


def threshold_with_margin(atd: nn.Module, mvtm: nn.Module, tokens: torch.Tensor, candidates: int = 12) -> float:
    """λ near the median ATD probability, as far as possible from every probability the restoration
    compares with it: a probability within float error of λ would make the Swift mask ambiguous.
    Candidates are the midpoints of the widest gaps between sorted input probabilities in the
    30–70 % range; each is scored by a full (seeded) run."""
    probs = pipeline.token_probabilities(atd, tokens.reshape(len(tokens), -1)).flatten().sort().values
    middle = probs[int(0.3 * len(probs)): int(0.7 * len(probs))]
    widest = (middle[1:] - middle[:-1]).argsort(descending=True, stable=True)[:candidates]

    def margin(lam: float) -> float:
        run = pipeline.restore_mim_ood(atd, mvtm, tokens, lam=lam, **PIPELINE,
                                       generator=torch.Generator().manual_seed(SEED))
        return min(float((scores - lam).abs().min()) for scores in run.scores)

    lams = [float((middle[i] + middle[i + 1]) / 2) for i in widest.tolist()]
    return max(lams, key=margin)


class Recorder:
    """Collects named arrays and their descriptions for `index.json`."""

    def __init__(self, out: Path):
        self.out, self.entries = out, {}

    def add(self, name: str, array, meaning: str, tolerance: float | None = TOLERANCE) -> None:
        array = array.detach().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        array = array.astype("<i4" if array.dtype.kind in "iub" else "<f4")
        np.save(self.out / f"{name}.npy", np.ascontiguousarray(array))
        self.entries[name] = {"file": f"{name}.npy", "shape": list(array.shape), "dtype": array.dtype.str,
                              "meaning": meaning, **({"tolerance": tolerance} if tolerance is not None else {})}


def capture(module: nn.Module, run) -> tuple[torch.Tensor, torch.Tensor]:
    """The (input, output) of `module` during `run()`."""
    seen = {}
    handle = module.register_forward_hook(lambda _, inputs, output: seen.update(x=inputs[0], y=output))
    try:
        run()
    finally:
        handle.remove()
    return seen["x"], seen["y"]


@torch.no_grad()
def write_fixtures(out: Path) -> Path:
    out = Path(out)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(SEED)
        models = build_models(generator)
        vqvae, atd, mvtm, ar, critic = (models[c] for c in ("vqvae", "atd", "mvtm", "ar", "critic"))
        x = phantom_slices()
        token_margin = seed_codebook(vqvae, x, generator)
        tokens = pipeline.tokenize(vqvae, x)
        sequences = tokens.reshape(len(x), -1)
        lam = threshold_with_margin(atd, mvtm, tokens)

        export_checkpoint(out / "checkpoint", models, name="parity-fixture", created="2024-09-17T00:00:00Z",
                          inference={"lambda": lam, **PIPELINE, "seed": SEED, "map_threshold": MAP_THRESHOLD},
                          provenance={"data": "random weights (Training/tools/fixtures.py)"})
        record = Recorder(out)
        k = VQVAE_CONFIG.n_embed
        record.add("input", x, "input slices [B, 1, 160, 160] in [0, 1]")
        record.add("encoder_output", vqvae.encode(x), "vqvae.encode: encoder then quant_conv [B, D, 20, 20]",
                   tolerance=CONV_STACK_TOLERANCE)
        record.add("tokens", tokens, "nearest codebook entry per position [B, 20, 20]", tolerance=None)
        record.add("decoded", vqvae.decode_indices(tokens), "vqvae.decode_indices(tokens) [B, 1, 160, 160]",
                   tolerance=CONV_STACK_TOLERANCE)
        record.add("atd_probabilities", pipeline.token_probabilities(atd, sequences).reshape(tokens.shape),
                   "sigmoid(atd(tokens)) [B, 20, 20]")
        mvtm_mask = torch.stack([torch.from_numpy(brush_mask(np.random.default_rng(SEED + i), 20)).reshape(-1)
                                 for i in range(len(x))])
        record.add("mvtm_mask", mvtm_mask, "positions replaced by [MASK] (id K) for the MVTM [B, 400]", tolerance=None)
        record.add("mvtm_logits", mvtm(sequences.masked_fill(mvtm_mask, k)), "mvtm(masked tokens) [B, 400, K]")
        record.add("ar_input", shift_right(sequences, k), "AR input: start id K then tokens[:-1] [B, 400]", tolerance=None)
        record.add("ar_logits", ar(shift_right(sequences, k)), "ar(ar_input), causal [B, 400, K]")
        record.add("critic_logits", critic(sequences).squeeze(-1), "critic(tokens) logits [B, 400]")

        # Single layers, for the kernel tests.
        # Per-sample layers: the first slice is enough and keeps the files small.
        norm_in, norm_out = capture(vqvae.encoder.down[3].block[0].norm1, lambda: vqvae.encode(x))
        record.add("groupnorm_input", norm_in, "input of encoder.down.3.block.0.norm1 (GroupNorm 32, eps 1e-6)")
        record.add("groupnorm_output", norm_out, "its output")
        block_in, block_out = capture(vqvae.encoder.down[2].block[0], lambda: vqvae.encode(x))
        record.add("resblock_input", block_in[:1], "input of encoder.down.2.block.0 (ResnetBlock 64 -> 32, nin_shortcut), slice 0")
        record.add("resblock_output", block_out[:1], "its output")
        attn_in, attn_out = capture(vqvae.encoder.mid.attn_1, lambda: vqvae.encode(x))
        record.add("attnblock_input", attn_in, "input of encoder.mid.attn_1 (single-head AttnBlock)")
        record.add("attnblock_output", attn_out, "its output")
        layer_in, layer_out = capture(atd.blocks[0], lambda: atd(sequences))
        record.add("transformer_block_input", layer_in, "input of atd.blocks.0 (token + positional embedding)")
        record.add("transformer_block_output", layer_out, "output of atd.blocks.0 (pre-LN block)")

        # The whole MIM-OOD restoration, draws recorded.
        detection = pipeline.detect_mim_ood(vqvae, atd, mvtm, x, lam=lam, **PIPELINE,
                                            generator=torch.Generator().manual_seed(SEED), combine="mean")
        restoration = detection.restoration
        record.add("pipeline_scores", torch.stack(restoration.scores),
                   "per step run: ATD probabilities [steps_run, B, R, 20, 20]")
        record.add("pipeline_masks", torch.stack(restoration.masks),
                   "per step run: resampled positions (probability > lambda) [steps_run, B, R, 20, 20]", tolerance=None)
        record.add("pipeline_samples", torch.stack(restoration.samples),
                   "per step run: MVTM draws, used where masked [steps_run, B, R, 20, 20]", tolerance=None)
        record.add("pipeline_tokens", restoration.tokens, "final tokens [B, R, 20, 20]", tolerance=None)
        record.add("pipeline_token_heatmap", restoration.token_heatmap, "ATD probabilities of the input's tokens [B, 20, 20]")
        record.add("pipeline_restorations", detection.restored_images, "decoded restorations [B, R, 1, 160, 160]",
                   tolerance=CONV_STACK_TOLERANCE)
        record.add("anomaly_map_mean", detection.anomaly_map, "mean residual, min-pool 3, avg-pool 7, clamp [B, 1, 160, 160]")
        record.add("anomaly_map_softmax", pipeline.anomaly_map(x, detection.restored_images, combine="softmax-weighted",
                                                               temperature=3.0),
                   "softmax_j(3 / mean|x - x_j|)-weighted residual, same smoothing [B, 1, 160, 160]")
        index = {
            "description": "PyTorch outputs of the checkpoint in checkpoint/ on input.npy (Training/tools/fixtures.py)",
            "checkpoint": "checkpoint",
            "token_margin": token_margin,
            "pipeline": {"method": "mim-ood", "lambda": lam, **PIPELINE, "steps_run": restoration.steps_run,
                         "lambda_margin": min(float((s - lam).abs().min()) for s in restoration.scores),
                         "seed": SEED, "mask_id": k, "temperature": 3.0, "min_pool": 3, "avg_pool": 7,
                         "layout": "restoration r of image b is row b*R + r of the batched sequences"},
            "arrays": record.entries,
        }
        index["local_checkpoint"] = write_local_vqvae(out, models, x, generator, record)
        (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(False)
    return out


def write_local_vqvae(out: Path, models: dict[str, nn.Module], x: torch.Tensor, generator: torch.Generator,
                      record: Recorder) -> dict:
    """The local tokenizer's checkpoint (checkpoint-local/, with the same ATD and MVTM) and its outputs."""
    vqvae = VQVAE(LOCAL_VQVAE_CONFIG)
    randomize(vqvae, generator)
    vqvae.eval()
    margin = seed_codebook(vqvae, x, generator)
    export_checkpoint(out / "checkpoint-local", {"vqvae": vqvae, "atd": models["atd"], "mvtm": models["mvtm"]},
                      name="parity-fixture-local",
                      created="2024-09-17T00:00:00Z", provenance={"data": "random weights (Training/tools/fixtures.py)"})
    tokens = pipeline.tokenize(vqvae, x)
    record.add("local_encoder_output", vqvae.encode(x), "checkpoint-local: patch encoder then quant_conv [B, D, 20, 20]",
               tolerance=CONV_STACK_TOLERANCE)
    record.add("local_tokens", tokens, "checkpoint-local: nearest l2-normalised code per position [B, 20, 20]", tolerance=None)
    record.add("local_decoded", vqvae.decode_indices(tokens), "checkpoint-local: decode_indices(tokens) [B, 1, 160, 160]",
               tolerance=CONV_STACK_TOLERANCE)
    return {"directory": "checkpoint-local", "token_margin": margin}


# The committed parity input (two phantom slices), also the default input of `bench.py`.
PARITY_INPUT = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "parity" / "input.npy"


@torch.no_grad()
def write_default_model_fixtures(model_dir: Path, out: Path) -> Path:
    """What PyTorch computes with a trained checkpoint (the shipped default model) on the parity input:
    its tokens and the ATD's token heatmap, so the Swift engine is checked on real weights too. Trained
    codebooks have near-ties, so each position's gap between nearest and second-nearest code (squared
    distance, float64) is saved: a token is only comparable across engines where the gap is well above
    float32 rounding."""
    from mimood_train.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    models = load_checkpoint(model_dir, ["vqvae", "atd"]).models
    x = torch.from_numpy(np.load(PARITY_INPUT))
    quantize = models["vqvae"].quantize
    z = quantize.project(models["vqvae"].encode(x).permute(0, 2, 3, 1).reshape(-1, models["vqvae"].cfg.embed_dim)).double()
    codes = quantize.project(quantize.embedding.weight).double()
    distances = (z.pow(2).sum(1, keepdim=True) - 2 * z @ codes.t() + codes.pow(2).sum(1)[None, :]).sort(dim=1).values
    tokens = pipeline.tokenize(models["vqvae"], x)
    heatmap = pipeline.token_probabilities(models["atd"], tokens.reshape(len(x), -1)).reshape(tokens.shape)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "tokens.npy", tokens.numpy().astype("<i4"))
    np.save(out / "atd_probabilities.npy", heatmap.numpy().astype("<f4"))
    margins = (distances[:, 1] - distances[:, 0]).reshape(tokens.shape)
    np.save(out / "token_margins.npy", margins.numpy().astype("<f4"))
    index = {"description": f"PyTorch on ../parity/input.npy with {model_dir} (Training/tools/fixtures.py --default-model)",
             "token_margin": float(margins.min()), "tolerance": 1e-4}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="Training/tools/fixtures.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("Tests/Fixtures/parity"))
    parser.add_argument("--default-model", type=Path,
                        help="instead: tokens and ATD heatmap of this trained checkpoint on the parity input")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.default_model:
        write_default_model_fixtures(args.default_model, args.out)
    else:
        write_fixtures(args.out)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
