"""MIM-OOD checkpoint: a directory with `model.json` and one safetensors file per component.

The format is specified in docs/checkpoint-format.md; the Swift server reads it with its own code, so
this module parses the safetensors container itself (rather than trusting the library) and refuses
anything the specification does not allow, with a message naming the component, file and tensor.

    python -m mimood_train.checkpoint export --out DIR --name NAME --component vqvae=RUN_DIR \
        --component atd=RUN_DIR ... [--component prior=PRIOR.pt] [--inference '{"lambda": 0.3}'] [--provenance FILE.json]
    python -m mimood_train.checkpoint verify DIR
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from .config import COMPONENTS, TransformerConfig, VQVAEConfig
from .models import VQVAE, TokenTransformer
from .loading import load_model
from .token_prior import TokenPrior, TokenPriorConfig, load_prior

FORMAT = "mimood-checkpoint"
FORMAT_VERSION = 2
MANIFEST = "model.json"
# The five networks, then the optional positional code-frequency prior (a baseline token scorer, no network).
CHECKPOINT_COMPONENTS = (*COMPONENTS, "prior")

# Components an inference method cannot run without.
REQUIRED_COMPONENTS = {
    "mim-ood": ("vqvae", "atd", "mvtm"),
    "ar": ("vqvae", "ar"),
    "mvtm-critic": ("vqvae", "mvtm", "critic"),
}

# architecture["kind"] -> (config dataclass, model class)
ARCHITECTURES = {
    "vqvae": (VQVAEConfig, VQVAE),
    "token_transformer": (TransformerConfig, TokenTransformer),
    "token_prior": (TokenPriorConfig, TokenPrior),
}

DEFAULT_PREPROCESSING = {
    "image_size": 160,
    "downsampling_factor": 8,
    "token_grid": [20, 20],
    "spacing_mm": 1.0,
    "clip_percentile": 98.0,
    "output_range": [0.0, 1.0],
    "reference": "docs/preprocessing.md",
}

DEFAULT_INFERENCE = {
    "method": "mim-ood",
    "lambda": 0.5,                  # ATD threshold; replace by the calibrated value
    "steps": 8,                     # T
    "restorations": 4,              # R
    "combine": "softmax-weighted",  # or "mean"
    "temperature": 3.0,
    "smoothing": {"min_pool": 3, "avg_pool": 7},
    "lambda_nll": 6.0,              # AR baseline
    "critic_threshold": 0.5,        # MVTM + Token-Critic baseline
    "seed": 0,
}

# Only float32 is written; a reader must refuse anything else (docs/checkpoint-format.md).
SAFETENSORS_DTYPES = {"F32": np.dtype("<f4")}


class CheckpointError(Exception):
    """A checkpoint that does not follow docs/checkpoint-format.md."""


@dataclass
class LoadedCheckpoint:
    directory: Path
    manifest: dict
    models: dict[str, nn.Module]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def architecture_of(module: nn.Module) -> dict:
    """The module's config dataclass as a dict, plus the `kind` that picks the model class."""
    for kind, (config_class, model_class) in ARCHITECTURES.items():
        if isinstance(module, model_class):
            return {"kind": kind, **dataclasses.asdict(module.cfg)}
    raise CheckpointError(f"no checkpoint architecture for module type {type(module).__name__}")


def build_model(architecture: dict, where: str) -> nn.Module:
    kind = architecture.get("kind") if isinstance(architecture, dict) else None
    if not isinstance(kind, str) or kind not in ARCHITECTURES:
        raise CheckpointError(f"{where}: unknown architecture kind {kind!r} (known: {sorted(ARCHITECTURES)})")
    config_class, model_class = ARCHITECTURES[kind]
    fields = {key: value for key, value in architecture.items() if key != "kind"}
    # Every field is required: a reader in another language has no Python defaults to fall back on.
    expected = {field.name for field in dataclasses.fields(config_class)}
    if set(fields) != expected:
        raise CheckpointError(f"{where}: architecture fields do not match {config_class.__name__}: "
                              f"missing {sorted(expected - set(fields))}, unknown {sorted(set(fields) - expected)}")
    try:
        return model_class(config_class(**fields))
    except (TypeError, ValueError, AssertionError) as error:   # values the model cannot be built with
        raise CheckpointError(f"{where}: architecture does not fit {config_class.__name__}: {error}") from None


# ---------------------------------------------------------------- safetensors container

def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    # json.loads would keep the last of two equal names silently; other JSON parsers may not.
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate name(s) {duplicates}")
    return dict(pairs)


def parse_safetensors(data: bytes, where: str) -> dict[str, np.ndarray]:
    """Checks the container byte by byte and returns name -> float32 array (a copy)."""
    if len(data) < 8:
        raise CheckpointError(f"{where}: truncated file ({len(data)} bytes), shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise CheckpointError(f"{where}: header length {header_len} is larger than the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8: 8 + header_len].decode("utf-8"), object_pairs_hook=_refuse_duplicate_keys)
    except ValueError as error:   # also UnicodeDecodeError and JSONDecodeError
        raise CheckpointError(f"{where}: header is not UTF-8 JSON: {error}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{where}: __metadata__ must map strings to strings")

    buffer = memoryview(data)[8 + header_len:]
    spans = []
    for name, entry in header.items():
        at = f"{where}, tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{at}: entry must have exactly dtype, shape, data_offsets")
        if entry["dtype"] not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{at}: unsupported dtype {entry['dtype']!r} (only F32 is allowed)")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
            raise CheckpointError(f"{at}: shape {shape!r} is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(f"{at}: data_offsets {offsets!r} is not [begin, end] with 0 <= begin <= end")
        itemsize = SAFETENSORS_DTYPES[entry["dtype"]].itemsize
        if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise CheckpointError(f"{at}: data_offsets {offsets} span {offsets[1] - offsets[0]} bytes, "
                                  f"shape {shape} needs {math.prod(shape) * itemsize}")
        spans.append((offsets[0], offsets[1], name))

    # The tensors must tile the buffer exactly: no overlap, no gap, nothing after the last one.
    position, previous = 0, None
    for begin, end, name in sorted(spans):
        if begin < position:
            raise CheckpointError(f"{where}: data_offsets of tensors {previous!r} and {name!r} overlap")
        if begin > position:
            raise CheckpointError(f"{where}: gap of {begin - position} bytes before tensor {name!r}")
        position, previous = end, name
    if position != len(buffer):
        raise CheckpointError(f"{where}: data buffer is {len(buffer)} bytes, tensors cover {position}")

    return {name: np.frombuffer(buffer[header[name]["data_offsets"][0]: header[name]["data_offsets"][1]],
                                dtype=SAFETENSORS_DTYPES[header[name]["dtype"]])
            .reshape(header[name]["shape"]).copy()
            for name in header}


# ---------------------------------------------------------------- export

def export_checkpoint(out_dir: str | Path, components: dict[str, nn.Module], *, name: str,
                      preprocessing: dict | None = None, inference: dict | None = None,
                      provenance: dict | None = None, created: str | None = None) -> Path:
    """Writes the checkpoint directory. It is built in a temporary sibling directory and renamed
    into place, so a reader never sees a half-written checkpoint; an existing one is replaced.
    `created` defaults to the current UTC time (fix it for reproducible output)."""
    out = Path(out_dir)
    unknown = set(components) - set(CHECKPOINT_COMPONENTS)
    if unknown or not components:
        raise CheckpointError(f"components must be a non-empty subset of {CHECKPOINT_COMPONENTS}, got {sorted(components)}")
    inference = {**DEFAULT_INFERENCE, **(inference or {})}
    _check_method(inference.get("method"), components, where=str(out))   # refuse what verify would refuse
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)   # mkdtemp makes it owner-only; the server may run as another user
    try:
        manifest_components = {}
        for component in CHECKPOINT_COMPONENTS:   # fixed order keeps model.json stable
            if component not in components:
                continue
            module = components[component]
            state = {key: value.detach().to("cpu", torch.float32).contiguous()
                     for key, value in module.state_dict().items()}
            file_name = f"{component}.safetensors"
            save_file(state, str(staging / file_name))
            (staging / file_name).chmod(0o644)   # safetensors writes owner-only files
            manifest_components[component] = {
                "file": file_name,
                "sha256": sha256_of(staging / file_name),
                "architecture": architecture_of(module),
                "num_parameters": sum(value.numel() for value in state.values()),
                "tensors": {key: {"dtype": "F32", "shape": list(state[key].shape)} for key in sorted(state)},
            }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "created": created or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "components": manifest_components,
            "preprocessing": {**DEFAULT_PREPROCESSING, **(preprocessing or {})},
            "inference": inference,
            "provenance": {"torch_version": torch.__version__, **(provenance or {})},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            retired = out.with_name(f".{out.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(out, retired)
            os.replace(staging, out)
            shutil.rmtree(retired)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


# ---------------------------------------------------------------- load and verify

def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not UTF-8 JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported format_version {manifest.get('format_version')!r} "
                              f"(this reader knows {FORMAT_VERSION})")
    declared = manifest.get("components")
    if not isinstance(declared, dict) or not declared:
        raise CheckpointError(f"{path}: 'components' must be a non-empty object")
    for component in declared:
        if component not in CHECKPOINT_COMPONENTS:
            raise CheckpointError(f"{path}: unknown component {component!r} (known: {CHECKPOINT_COMPONENTS})")
    return manifest


def _load_component(directory: Path, component: str, entry: dict) -> nn.Module:
    if not isinstance(entry, dict):
        raise CheckpointError(f"component {component!r}: manifest entry is not an object")
    lacking = [key for key in ("file", "sha256", "architecture", "num_parameters", "tensors") if key not in entry]
    if lacking:
        raise CheckpointError(f"component {component!r}: manifest entry lacks {lacking}")
    if not isinstance(entry["file"], str) or Path(entry["file"]).name != entry["file"]:
        raise CheckpointError(f"component {component!r}: file {entry['file']!r} must be a plain file name")
    path = directory / entry["file"]
    where = f"component {component!r}, file {entry['file']}"
    if not path.is_file():
        raise CheckpointError(f"{where}: file is missing")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise CheckpointError(f"{where}: SHA-256 mismatch (manifest {entry['sha256']}, file {digest})")
    arrays = parse_safetensors(data, where)

    model = build_model(entry["architecture"], where)
    if (component == "prior") != isinstance(model, TokenPrior):
        needed = "'token_prior'" if component == "prior" else "'vqvae' or 'token_transformer'"
        raise CheckpointError(f"{where}: component {component!r} needs kind {needed}, not {entry['architecture']['kind']!r}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    if missing:
        raise CheckpointError(f"{where}: missing tensor(s) {missing}")
    if unexpected:
        raise CheckpointError(f"{where}: unexpected tensor(s) {unexpected}")
    for key, value in expected.items():
        if tuple(arrays[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{where}, tensor {key!r}: shape {list(arrays[key].shape)}, "
                                  f"architecture expects {list(value.shape)}")
    if entry["num_parameters"] != sum(array.size for array in arrays.values()):
        raise CheckpointError(f"{where}: num_parameters {entry['num_parameters']} disagrees with the file")
    if entry["tensors"] != {key: {"dtype": "F32", "shape": list(arrays[key].shape)} for key in sorted(arrays)}:
        raise CheckpointError(f"{where}: the manifest's 'tensors' list disagrees with the file header")
    model.load_state_dict({key: torch.from_numpy(array) for key, array in arrays.items()}, strict=True)
    return model.eval()


def load_checkpoint(directory: str | Path, components: list[str] | None = None,
                    map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Loads and verifies the requested components (default: all declared), models in eval mode."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    wanted = list(manifest["components"]) if components is None else list(components)
    absent = [component for component in wanted if component not in manifest["components"]]
    if absent:
        raise CheckpointError(f"{directory}: component(s) {absent} not declared in {MANIFEST} "
                              f"(declared: {list(manifest['components'])})")
    models = {component: _load_component(directory, component, manifest["components"][component]).to(map_location)
              for component in wanted}
    return LoadedCheckpoint(directory=directory, manifest=manifest, models=models)


def verify_checkpoint(directory: str | Path) -> LoadedCheckpoint:
    """Full check: every declared component loads, and the default inference method has what it needs."""
    loaded = load_checkpoint(directory)
    inference = loaded.manifest.get("inference")
    _check_method(inference.get("method") if isinstance(inference, dict) else None, loaded.models, where=str(directory))
    _check_prior_fits(loaded.models, where=str(directory))
    return loaded


def _check_prior_fits(components, where: str) -> None:
    """The prior scores the VQ-VAE's tokens: one row per grid position, one column per code."""
    if "prior" not in components or "vqvae" not in components:
        return
    prior, vqvae = components["prior"].cfg, components["vqvae"].cfg
    grid = vqvae.resolution // 2 ** (len(vqvae.ch_mult) - 1)
    if (prior.n_positions, prior.n_codes) != (grid * grid, vqvae.n_embed):
        raise CheckpointError(f"{where}: component 'prior' has n_positions {prior.n_positions} and n_codes {prior.n_codes}; "
                              f"the VQ-VAE ({grid}×{grid} tokens, K = {vqvae.n_embed}) needs {grid * grid} and {vqvae.n_embed}")


def _check_method(method, components, where: str) -> None:
    if not isinstance(method, str) or method not in REQUIRED_COMPONENTS:
        raise CheckpointError(f"{where}: unknown inference method {method!r} (known: {sorted(REQUIRED_COMPONENTS)})")
    lacking = [c for c in REQUIRED_COMPONENTS[method] if c not in components]
    if lacking:
        raise CheckpointError(f"{where}: inference method {method!r} needs component(s) {lacking}")


# ---------------------------------------------------------------- command line

def run_provenance(path: Path) -> dict:
    """What a training run directory says about itself: steps trained and the last logged losses.
    Runs may be unfinished or hand-copied, so anything unreadable is left out rather than fatal."""
    run_dir = path if path.is_dir() else path.parent
    weights = path if path.is_file() else (run_dir / "model.pt" if (run_dir / "model.pt").exists() else run_dir / "state.pt")
    info: dict = {"run": str(run_dir.resolve()), "weights": weights.name}
    try:
        info["total_steps"] = json.loads((run_dir / "config.json").read_text())["total_steps"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    records = []
    try:
        for line in (run_dir / "log.jsonl").read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:   # a line cut short by a killed run
                continue
    except OSError:
        pass
    records = [r for r in records if isinstance(r, dict) and isinstance(r.get("step"), int)]
    if records:
        last = max(records, key=lambda r: r["step"])
        info["steps_trained"] = last["step"]
        info["final_metrics"] = {key: value for key, value in last.items()
                                 if key not in ("step", "lr", "grad_norm", "time") and isinstance(value, (int, float))}
    return info


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def export_from_runs(out: Path, name: str, runs: dict[str, Path], inference: dict | None = None,
                     provenance: dict | None = None) -> LoadedCheckpoint:
    """Loads each component's run (train.load_model; the prior from token_prior's file), exports the
    checkpoint and verifies it."""
    models, collected = {}, {"runs": {}}
    for component, path in runs.items():
        try:
            if component == "prior":
                models[component], source = load_prior(path)
                collected["runs"][component] = {"file": str(path.resolve()), **source}
            else:
                models[component] = load_model(path, component)
                collected["runs"][component] = run_provenance(path)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
            what = "the prior" if component == "prior" else "run"
            raise CheckpointError(f"component {component!r}: cannot load {what} {path}: {error}") from None
    commit = git_commit()
    if commit:
        collected["git_commit"] = commit
    export_checkpoint(out, models, name=name, inference=inference, provenance={**collected, **(provenance or {})})
    return verify_checkpoint(out)


def _print_summary(loaded: LoadedCheckpoint) -> None:
    for component, entry in loaded.manifest["components"].items():
        print(f"{component:7s} {entry['file']:22s} {entry['num_parameters']:>12,d} parameters  sha256 {entry['sha256'][:16]}…")
    print(f"ok: {loaded.manifest['name']} in {loaded.directory} "
          f"(format {FORMAT} v{FORMAT_VERSION}, method {loaded.manifest['inference']['method']})")


def _json_object(text: str, what: str, parser: argparse.ArgumentParser) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        parser.error(f"{what} is not JSON: {error}")
    if not isinstance(value, dict):
        parser.error(f"{what} must be a JSON object")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimood_train.checkpoint")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="build a checkpoint directory from training runs")
    export.add_argument("--out", required=True, help="checkpoint directory (replaced if it exists)")
    export.add_argument("--name", required=True)
    export.add_argument("--component", action="append", required=True, metavar="COMPONENT=RUN_DIR",
                        help=f"a trained run (directory or model.pt), or prior=PRIOR.pt (mimood_train.token_prior); "
                             f"repeat per component {CHECKPOINT_COMPONENTS}")
    export.add_argument("--inference", help="JSON object overriding inference defaults")
    export.add_argument("--provenance", help="JSON file merged into the collected provenance")
    verify = commands.add_parser("verify", help="check a checkpoint directory against the format")
    verify.add_argument("directory")
    args = parser.parse_args(argv)

    try:
        if args.command == "verify":
            loaded = verify_checkpoint(args.directory)
        else:
            runs = {}
            for item in args.component:
                component, sep, path = item.partition("=")
                if not sep or not path or component not in CHECKPOINT_COMPONENTS or component in runs:
                    parser.error(f"--component {item!r}: expected COMPONENT=RUN_DIR, each of {CHECKPOINT_COMPONENTS} at most once")
                runs[component] = Path(path)
            inference = _json_object(args.inference, "--inference", parser) if args.inference else None
            provenance = None
            if args.provenance:
                try:
                    text = Path(args.provenance).read_text(encoding="utf-8")
                except OSError as error:
                    parser.error(f"--provenance: {error}")
                provenance = _json_object(text, "--provenance", parser)
            loaded = export_from_runs(Path(args.out), args.name, runs, inference, provenance)
    except CheckpointError as error:
        print(f"{'invalid checkpoint' if args.command == 'verify' else 'export failed'}: {error}", file=sys.stderr)
        return 1
    _print_summary(loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
