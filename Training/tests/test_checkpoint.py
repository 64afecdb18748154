import dataclasses
import hashlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mimood_train import checkpoint
from mimood_train.checkpoint import CheckpointError, export_checkpoint, load_checkpoint, main, verify_checkpoint
from mimood_train.config import COMPONENTS, TransformerConfig, VQVAEConfig
from mimood_train.models import VQVAE, TokenTransformer
from mimood_train.token_prior import TokenPrior, build_prior, save_prior

# 32 px images, f = 8: a 4x4 token grid keeps every forward pass in milliseconds.
VQVAE_CONFIG = VQVAEConfig(ch=32, ch_mult=[1, 1, 2, 2], num_res_blocks=1, attn_resolutions=[4], resolution=32,
                           z_channels=8, embed_dim=8, n_embed=16)
TRANSFORMER = dict(n_positions=16, dim=32, depth=1, heads=2, dropout=0.0, drop_path=0.0)
TRANSFORMER_CONFIGS = {
    "atd": TransformerConfig(vocab_size=16, head="atd", **TRANSFORMER),
    "mvtm": TransformerConfig(vocab_size=17, head="mvtm", **TRANSFORMER),
    "ar": TransformerConfig(vocab_size=17, head="ar", causal=True, **TRANSFORMER),
    "critic": TransformerConfig(vocab_size=16, head="critic", **TRANSFORMER),
}

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_models(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    models = {"vqvae": VQVAE(VQVAE_CONFIG)}
    models.update({component: TokenTransformer(cfg) for component, cfg in TRANSFORMER_CONFIGS.items()})
    return {component: model.eval() for component, model in models.items()}


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    """A good checkpoint with all five components; tests that damage it work on a copy."""
    return export_checkpoint(tmp_path_factory.mktemp("export") / "ckpt", models, name="tiny",
                             inference={"lambda": 0.3}, provenance={"note": "test"}, created="2024-01-01T00:00:00Z")


@pytest.fixture
def ckpt(exported, tmp_path):
    return Path(shutil.copytree(exported, tmp_path / "ckpt"))


def read_manifest(directory: Path) -> dict:
    return json.loads((directory / "model.json").read_text())


def write_manifest(directory: Path, manifest: dict) -> None:
    (directory / "model.json").write_text(json.dumps(manifest))


def replace_component_file(directory: Path, component: str, blob: bytes) -> None:
    """Writes `blob` as the component's file and updates the manifest's sha256, so that the
    refusal comes from the container checks rather than the hash check."""
    (directory / f"{component}.safetensors").write_bytes(blob)
    manifest = read_manifest(directory)
    manifest["components"][component]["sha256"] = hashlib.sha256(blob).hexdigest()
    write_manifest(directory, manifest)


def crafted(header: dict, data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def rewrite_tensors(directory: Path, component: str, edit) -> None:
    """Re-saves the component's tensors after `edit(dict)` with a valid container and hash."""
    tensors = load_file(str(directory / f"{component}.safetensors"))
    edit(tensors)
    save_file(tensors, str(directory / "edited.safetensors"))
    replace_component_file(directory, component, (directory / "edited.safetensors").read_bytes())


def model_inputs(component: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    if component == "vqvae":
        return torch.rand(2, 1, 32, 32, generator=generator)
    return torch.randint(0, 16, (2, 16), generator=generator)


# ---------------------------------------------------------------- round trip and manifest

def test_round_trip_gives_equal_tensors_and_outputs(models, exported):
    loaded = load_checkpoint(exported)
    assert set(loaded.models) == set(COMPONENTS)
    for component, original in models.items():
        restored = loaded.models[component]
        assert not restored.training
        assert dataclasses.asdict(restored.cfg) == dataclasses.asdict(original.cfg)
        original_state, restored_state = original.state_dict(), restored.state_dict()
        assert original_state.keys() == restored_state.keys()
        for key in original_state:
            assert torch.equal(original_state[key], restored_state[key]), (component, key)
        x = model_inputs(component)
        with torch.no_grad():
            expected, actual = original(x), restored(x)
        if component == "vqvae":   # (reconstruction, vq_loss, indices)
            for e, a in zip(expected, actual):
                assert torch.equal(e, a)
        else:
            assert torch.equal(expected, actual)


def test_load_selected_components(exported):
    loaded = load_checkpoint(exported, ["vqvae", "ar"])
    assert set(loaded.models) == {"vqvae", "ar"}


def test_manifest_contents(models, exported):
    manifest = read_manifest(exported)
    assert manifest["format"] == "mimood-checkpoint"
    assert manifest["format_version"] == 2
    assert manifest["name"] == "tiny"
    assert manifest["created"] == "2024-01-01T00:00:00Z"
    assert list(manifest["components"]) == list(COMPONENTS)
    for component, entry in manifest["components"].items():
        path = exported / entry["file"]
        assert entry["file"] == f"{component}.safetensors"
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        state = models[component].state_dict()
        assert entry["num_parameters"] == sum(t.numel() for t in state.values())
        assert entry["tensors"] == {key: {"dtype": "F32", "shape": list(state[key].shape)} for key in sorted(state)}
        kind = "vqvae" if component == "vqvae" else "token_transformer"
        assert entry["architecture"] == {"kind": kind, **dataclasses.asdict(models[component].cfg)}
    # caller's values override the defaults, the rest of the defaults are kept
    assert manifest["inference"] == {**checkpoint.DEFAULT_INFERENCE, "lambda": 0.3}
    assert manifest["preprocessing"] == checkpoint.DEFAULT_PREPROCESSING
    assert manifest["provenance"]["note"] == "test"
    assert manifest["provenance"]["torch_version"] == torch.__version__


def test_container_follows_the_specification(exported):
    """Header length, JSON header, F32 only, tensors tiling the data buffer."""
    data = (exported / "atd.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8: 8 + header_len])
    header.pop("__metadata__", None)
    spans = sorted(tuple(entry["data_offsets"]) for entry in header.values())
    assert {entry["dtype"] for entry in header.values()} == {"F32"}
    assert spans[0][0] == 0 and spans[-1][1] == len(data) - 8 - header_len
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_documented_qkv_layout(models, exported):
    """docs/checkpoint-format.md: attn.qkv rows are [q | k | v], each head-major; y = x Wᵀ + b."""
    arrays = checkpoint.parse_safetensors((exported / "atd.safetensors").read_bytes(), "atd")
    weight, bias = (torch.from_numpy(arrays[f"blocks.0.attn.qkv.{p}"]) for p in ("weight", "bias"))
    proj_weight, proj_bias = (torch.from_numpy(arrays[f"blocks.0.attn.proj.{p}"]) for p in ("weight", "bias"))
    dim, heads = TRANSFORMER_CONFIGS["atd"].dim, TRANSFORMER_CONFIGS["atd"].heads
    head_dim = dim // heads
    x = torch.randn(2, 16, dim, generator=torch.Generator().manual_seed(2))
    q, k, v = (x @ weight[s * dim:(s + 1) * dim].T + bias[s * dim:(s + 1) * dim] for s in range(3))
    outputs = []
    for h in range(heads):
        columns = slice(h * head_dim, (h + 1) * head_dim)
        scores = torch.softmax(q[..., columns] @ k[..., columns].transpose(1, 2) / head_dim ** 0.5, dim=-1)
        outputs.append(scores @ v[..., columns])
    expected = torch.cat(outputs, dim=-1) @ proj_weight.T + proj_bias
    with torch.no_grad():
        actual = models["atd"].blocks[0].attn(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_export_twice_replaces_the_directory_atomically(models, tmp_path):
    out = tmp_path / "ckpt"
    export_checkpoint(out, models, name="first")
    export_checkpoint(out, models, name="second")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]   # no .ckpt.* staging or retired directory left
    assert read_manifest(out)["name"] == "second"
    assert sorted(p.name for p in out.iterdir()) == sorted(["model.json"] + [f"{c}.safetensors" for c in COMPONENTS])
    assert out.stat().st_mode & 0o777 == 0o755
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in out.iterdir())
    verify_checkpoint(out)


def test_export_refuses_a_method_without_its_components(models, tmp_path):
    with pytest.raises(CheckpointError, match=r"'mim-ood' needs component\(s\) \['mvtm'\]"):
        export_checkpoint(tmp_path / "ckpt", {"vqvae": models["vqvae"], "atd": models["atd"]}, name="x")
    with pytest.raises(CheckpointError, match="unknown inference method 'magic'"):
        export_checkpoint(tmp_path / "ckpt", models, name="x", inference={"method": "magic"})
    with pytest.raises(CheckpointError, match="non-empty subset"):
        export_checkpoint(tmp_path / "ckpt", {"decoder": models["vqvae"]}, name="x")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- corruptions

def flip_byte(d: Path):
    data = bytearray((d / "mvtm.safetensors").read_bytes())
    data[-5] ^= 0x01
    (d / "mvtm.safetensors").write_bytes(bytes(data))


def set_manifest(**fields):
    def edit(d: Path):
        write_manifest(d, {**read_manifest(d), **fields})
    return edit


def edit_entry(component: str, **fields):
    def edit(d: Path):
        manifest = read_manifest(d)
        manifest["components"][component].update(fields)
        write_manifest(d, manifest)
    return edit


def blob(data: bytes):
    return lambda d: replace_component_file(d, "critic", data)


def tensors(edit):
    return lambda d: rewrite_tensors(d, "critic", edit)


def add_component(d: Path):
    manifest = read_manifest(d)
    manifest["components"]["decoder"] = manifest["components"]["atd"]
    write_manifest(d, manifest)


def drop_sha256(d: Path):
    manifest = read_manifest(d)
    del manifest["components"]["atd"]["sha256"]
    write_manifest(d, manifest)


F32x4 = {"dtype": "F32", "shape": [4]}
ENTRY_A = b'"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}'
ATD_ARCHITECTURE = {"kind": "token_transformer", **dataclasses.asdict(TRANSFORMER_CONFIGS["atd"])}

CORRUPTIONS = {
    "flipped byte": (flip_byte, r"component 'mvtm', file mvtm.safetensors: SHA-256 mismatch"),
    "truncated file": (blob(b"\x10\x00\x00"), r"truncated file \(3 bytes\)"),
    "header length beyond file": (blob(struct.pack("<Q", 1000) + b"{}"),
                                  r"header length 1000 is larger than the file \(10 bytes\)"),
    "header not JSON": (blob(struct.pack("<Q", 5) + b"nope!"), r"header is not UTF-8 JSON"),
    "duplicate tensor name": (blob(struct.pack("<Q", 2 * len(ENTRY_A) + 3) + b"{" + ENTRY_A + b"," + ENTRY_A + b"}" + bytes(16)),
                              r"header is not UTF-8 JSON: duplicate name\(s\) \['a'\]"),
    "header not an object": (blob(crafted([], b"")), r"header is not a JSON object"),
    "bad metadata": (blob(crafted({"__metadata__": {"a": 1}}, b"")), r"__metadata__ must map strings to strings"),
    "overlapping offsets": (blob(crafted({"a": {**F32x4, "data_offsets": [0, 16]},
                                          "b": {**F32x4, "data_offsets": [8, 24]}}, bytes(24))),
                            r"data_offsets of tensors 'a' and 'b' overlap"),
    "gap between tensors": (blob(crafted({"a": {**F32x4, "data_offsets": [0, 16]},
                                          "b": {**F32x4, "data_offsets": [20, 36]}}, bytes(36))),
                            r"gap of 4 bytes before tensor 'b'"),
    "bytes after the last tensor": (blob(crafted({"a": {**F32x4, "data_offsets": [0, 16]}}, bytes(20))),
                                    r"data buffer is 20 bytes, tensors cover 16"),
    "unknown dtype": (blob(crafted({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}, bytes(8))),
                      r"tensor 'a': unsupported dtype 'F16' \(only F32 is allowed\)"),
    "offsets not matching shape": (blob(crafted({"a": {**F32x4, "data_offsets": [0, 12]}}, bytes(12))),
                                   r"tensor 'a': data_offsets \[0, 12\] span 12 bytes, shape \[4\] needs 16"),
    "negative shape": (blob(crafted({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b"")),
                       r"shape \[-1\] is not a list of non-negative integers"),
    "extra entry field": (blob(crafted({"a": {**F32x4, "data_offsets": [0, 16], "x": 1}}, bytes(16))),
                          r"entry must have exactly dtype, shape, data_offsets"),
    "missing tensor": (tensors(lambda t: t.pop("head.bias")), r"missing tensor\(s\) \['head.bias'\]"),
    "unexpected tensor": (tensors(lambda t: t.update(extra=torch.zeros(2))), r"unexpected tensor\(s\) \['extra'\]"),
    "wrong shape": (tensors(lambda t: t.update({"head.bias": torch.zeros(2)})),
                    r"tensor 'head.bias': shape \[2\], architecture expects \[1\]"),
    "missing component file": (lambda d: (d / "ar.safetensors").unlink(), r"component 'ar', file ar.safetensors: file is missing"),
    "file outside the directory": (edit_entry("ar", file="../ar.safetensors"), r"must be a plain file name"),
    "unknown component": (add_component, r"unknown component 'decoder'"),
    "unknown architecture kind": (edit_entry("atd", architecture={"kind": "lstm"}), r"unknown architecture kind 'lstm'"),
    "architecture field unknown": (edit_entry("atd", architecture={**ATD_ARCHITECTURE, "width": 3}),
                                   r"architecture fields do not match TransformerConfig: missing \[\], unknown \['width'\]"),
    "architecture field missing": (edit_entry("atd", architecture={k: v for k, v in ATD_ARCHITECTURE.items() if k != "dim"}),
                                   r"missing \['dim'\], unknown \[\]"),
    "architecture the model rejects": (edit_entry("atd", architecture={**ATD_ARCHITECTURE, "heads": 3}),
                                       r"architecture does not fit TransformerConfig"),
    "architecture of another size": (edit_entry("atd", architecture={**ATD_ARCHITECTURE, "dim": 64}),
                                     r"tensor '.*': shape \[.*\], architecture expects"),
    "num_parameters wrong": (edit_entry("atd", num_parameters=1), r"num_parameters 1 disagrees with the file"),
    "tensors list wrong": (edit_entry("atd", tensors={}), r"'tensors' list disagrees with the file header"),
    "entry lacks sha256": (drop_sha256, r"component 'atd': manifest entry lacks \['sha256'\]"),
    "bad format": (set_manifest(format="other"), r"format is 'other', expected 'mimood-checkpoint'"),
    "bad format_version": (set_manifest(format_version=1), r"unsupported format_version 1 \(this reader knows 2\)"),
    "no components": (set_manifest(components={}), r"'components' must be a non-empty object"),
    "manifest not JSON": (lambda d: (d / "model.json").write_text("{"), r"model.json: not UTF-8 JSON"),
    "manifest not an object": (lambda d: (d / "model.json").write_text("[]"), r"model.json: not a JSON object"),
    "manifest missing": (lambda d: (d / "model.json").unlink(), r"no model.json"),
    "unknown method": (set_manifest(inference={"method": "magic"}), r"unknown inference method 'magic'"),
}


@pytest.mark.parametrize("corrupt, message", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corruption_is_refused(ckpt, corrupt, message):
    corrupt(ckpt)
    with pytest.raises(CheckpointError, match=message):
        verify_checkpoint(ckpt)


def test_verify_refuses_a_method_without_its_components(ckpt):
    manifest = read_manifest(ckpt)
    del manifest["components"]["critic"]
    write_manifest(ckpt, {**manifest, "inference": {**manifest["inference"], "method": "mvtm-critic"}})
    with pytest.raises(CheckpointError, match=r"'mvtm-critic' needs component\(s\) \['critic'\]"):
        verify_checkpoint(ckpt)


# ---------------------------------------------------------------- command line

def test_verify_cli(ckpt, capsys):
    assert main(["verify", str(ckpt)]) == 0
    assert "ok: tiny" in capsys.readouterr().out
    flip_byte(ckpt)
    assert main(["verify", str(ckpt)]) == 1
    assert "invalid checkpoint: component 'mvtm', file mvtm.safetensors: SHA-256 mismatch" in capsys.readouterr().err


def save_run(run_dir: Path, component: str, model: torch.nn.Module, log_lines: list[str]) -> Path:
    """A run directory as train.train leaves it: model.pt, config.json, log.jsonl."""
    run_dir.mkdir()
    torch.save({"component": component, "config": dataclasses.asdict(model.cfg), "state_dict": model.state_dict()},
               run_dir / "model.pt")
    (run_dir / "config.json").write_text(json.dumps({"component": component, "total_steps": 20,
                                                     "model": dataclasses.asdict(model.cfg), "train": {}}))
    (run_dir / "log.jsonl").write_text("".join(line + "\n" for line in log_lines))
    return run_dir


def test_export_cli_round_trip(models, tmp_path, capsys):
    vqvae_run = save_run(tmp_path / "vqvae_run", "vqvae", models["vqvae"], [
        json.dumps({"step": 10, "loss": 0.5, "lr": 1e-3, "grad_norm": 1.0, "time": 1.0, "mae": 0.2}),
        json.dumps({"step": 20, "loss": 0.25, "lr": 1e-4, "grad_norm": 0.5, "time": 2.0, "mae": 0.1}),
        '{"step": 30, "loss":'])   # cut short by a killed run: skipped
    ar_run = save_run(tmp_path / "ar_run", "ar", models["ar"], [])
    (tmp_path / "prov.json").write_text(json.dumps({"data": "synthetic v1"}))
    out = tmp_path / "out" / "ckpt"

    assert main(["export", "--out", str(out), "--name", "cli", "--component", f"vqvae={vqvae_run}",
                 "--component", f"ar={ar_run / 'model.pt'}", "--inference", '{"method": "ar", "lambda_nll": 5.0}',
                 "--provenance", str(tmp_path / "prov.json")]) == 0
    assert "ok: cli" in capsys.readouterr().out

    loaded = load_checkpoint(out)
    for component in ("vqvae", "ar"):
        for key, value in models[component].state_dict().items():
            assert torch.equal(loaded.models[component].state_dict()[key], value)
    manifest = loaded.manifest
    assert manifest["inference"]["method"] == "ar" and manifest["inference"]["lambda_nll"] == 5.0
    provenance = manifest["provenance"]
    assert provenance["data"] == "synthetic v1"
    assert provenance["runs"]["vqvae"] == {"run": str(vqvae_run.resolve()), "weights": "model.pt", "total_steps": 20,
                                           "steps_trained": 20, "final_metrics": {"loss": 0.25, "mae": 0.1}}
    assert provenance["runs"]["ar"] == {"run": str(ar_run.resolve()), "weights": "model.pt", "total_steps": 20}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(checkpoint.__file__).parent, capture_output=True, text=True)
    if head.returncode == 0:
        assert provenance["git_commit"] == head.stdout.strip()


def test_export_cli_refuses_bad_arguments(models, tmp_path, capsys):
    ar_run = save_run(tmp_path / "ar_run", "ar", models["ar"], [])
    out = str(tmp_path / "ckpt")
    # the run holds an AR, not a VQ-VAE
    assert main(["export", "--out", out, "--name", "x", "--component", f"vqvae={ar_run}",
                 "--inference", '{"method": "ar"}']) == 1
    assert "export failed: component 'vqvae': cannot load run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--out", out, "--name", "x", "--component", f"decoder={ar_run}"])
    with pytest.raises(SystemExit):
        main(["export", "--out", out, "--name", "x", "--component", f"ar={ar_run}", "--inference", "[1]"])
    assert not (tmp_path / "ckpt").exists()


# ---------------------------------------------------------------- the optional prior component

def tiny_prior() -> TokenPrior:
    grids = np.random.default_rng(0).integers(0, VQVAE_CONFIG.n_embed, size=(20, 4, 4))
    return build_prior(grids, n_codes=VQVAE_CONFIG.n_embed, alpha=0.5, sigma=1.0)


def test_prior_is_exported_as_an_optional_component(models, tmp_path):
    prior = tiny_prior()
    out = export_checkpoint(tmp_path / "ckpt", {**models, "prior": prior}, name="with-prior", created="2024-01-01T00:00:00Z")
    manifest = read_manifest(out)
    assert list(manifest["components"]) == [*COMPONENTS, "prior"]
    entry = manifest["components"]["prior"]
    assert entry["file"] == "prior.safetensors"
    assert entry["architecture"] == {"kind": "token_prior", "n_positions": 16, "n_codes": 16, "alpha": 0.5, "sigma": 1.0}
    assert entry["tensors"] == {"log_prob": {"dtype": "F32", "shape": [16, 16]}} and entry["num_parameters"] == 256
    loaded = verify_checkpoint(out)
    assert torch.equal(loaded.models["prior"].log_prob, prior.log_prob)


def test_prior_that_does_not_fit_the_vqvae_is_refused(models, tmp_path):
    grids = np.zeros((2, 4, 4), dtype=np.int16)
    out = export_checkpoint(tmp_path / "ckpt", {**models, "prior": build_prior(grids, n_codes=8)}, name="x")
    with pytest.raises(CheckpointError, match=r"'prior' has n_positions 16 and n_codes 8; the VQ-VAE \(4×4 tokens, K = 16\) needs 16 and 16"):
        verify_checkpoint(out)


def test_prior_kind_must_match_its_component(models, tmp_path):
    out = export_checkpoint(tmp_path / "ckpt", {**models, "prior": tiny_prior()}, name="x")
    manifest = read_manifest(out)
    prior_architecture = manifest["components"]["prior"]["architecture"]
    manifest["components"]["prior"]["architecture"] = manifest["components"]["atd"]["architecture"]
    write_manifest(out, manifest)
    with pytest.raises(CheckpointError, match="component 'prior' needs kind 'token_prior', not 'token_transformer'"):
        verify_checkpoint(out)
    manifest["components"]["prior"]["architecture"] = prior_architecture
    manifest["components"]["atd"]["architecture"] = prior_architecture
    write_manifest(out, manifest)
    with pytest.raises(CheckpointError, match="component 'atd' needs kind 'vqvae' or 'token_transformer', not 'token_prior'"):
        verify_checkpoint(out)


def test_export_cli_takes_the_prior_file(models, tmp_path, capsys):
    vqvae_run = save_run(tmp_path / "vqvae_run", "vqvae", models["vqvae"], [])
    ar_run = save_run(tmp_path / "ar_run", "ar", models["ar"], [])
    save_prior(tiny_prior(), tmp_path / "prior.pt", {"tokens": "tokens.npy", "grids": 20})
    out = tmp_path / "ckpt"
    assert main(["export", "--out", str(out), "--name", "cli", "--component", f"vqvae={vqvae_run}",
                 "--component", f"ar={ar_run}", "--component", f"prior={tmp_path / 'prior.pt'}",
                 "--inference", '{"method": "ar"}']) == 0
    assert "prior" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest["provenance"]["runs"]["prior"] == {"file": str((tmp_path / "prior.pt").resolve()), "tokens": "tokens.npy", "grids": 20}
    # A network's run given as the prior is refused with the path named.
    assert main(["export", "--out", str(tmp_path / "bad"), "--name", "x", "--component", f"ar={ar_run}",
                 "--component", f"prior={ar_run / 'model.pt'}", "--inference", '{"method": "ar"}']) == 1
    assert "export failed: component 'prior': cannot load the prior" in capsys.readouterr().err
