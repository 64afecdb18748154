"""MIM-OOD checkpoint: a directory with `model.json` and one safetensors file per component.

The format is specified in docs/checkpoint-format.md; the Swift server reads it with its own code, so
this module parses the safetensors container itself (rather than trusting the library) and refuses
anything the specification does not allow, with a message naming the component, file and tensor.

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

FORMAT = "mimood-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "model.json"

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
    fields = dict(architecture)
    kind = fields.pop("kind", None)
    if kind not in ARCHITECTURES:
        raise CheckpointError(f"{where}: unknown architecture kind {kind!r} (known: {sorted(ARCHITECTURES)})")
    config_class, model_class = ARCHITECTURES[kind]
    try:
        config = config_class(**fields)
    except TypeError as error:
        raise CheckpointError(f"{where}: architecture does not fit {config_class.__name__}: {error}") from None
    return model_class(config)


# ---------------------------------------------------------------- safetensors container

def parse_safetensors(data: bytes, where: str) -> dict[str, np.ndarray]:
    """Checks the container byte by byte and returns name -> float32 array (a copy)."""
    if len(data) < 8:
        raise CheckpointError(f"{where}: truncated file ({len(data)} bytes), shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise CheckpointError(f"{where}: header length {header_len} is larger than the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8: 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
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

def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def export_checkpoint(out_dir: str | Path, components: dict[str, nn.Module], *, name: str,
                      preprocessing: dict | None = None, inference: dict | None = None,
                      provenance: dict | None = None, created: str | None = None) -> Path:
    """Writes the checkpoint directory. It is built in a temporary sibling directory and renamed
    into place, so a reader never sees a half-written checkpoint; an existing one is replaced.
    `created` defaults to the current UTC time (fix it for reproducible output)."""
    out = Path(out_dir)
    unknown = set(components) - set(COMPONENTS)
    if unknown or not components:
        raise CheckpointError(f"components must be a non-empty subset of {COMPONENTS}, got {sorted(components)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest_components = {}
        for component in COMPONENTS:   # fixed order keeps model.json stable
            if component not in components:
                continue
            module = components[component]
            state = {key: value.detach().to("cpu", torch.float32).contiguous()
                     for key, value in module.state_dict().items()}
            file_name = f"{component}.safetensors"
            save_file(state, str(staging / file_name))
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
            "inference": {**DEFAULT_INFERENCE, **(inference or {})},
            "provenance": {"torch_version": torch.__version__, **(provenance or {})},
        }
        _atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
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
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported format_version {manifest.get('format_version')!r} "
                              f"(this reader knows {FORMAT_VERSION})")
    declared = manifest.get("components")
    if not isinstance(declared, dict) or not declared:
        raise CheckpointError(f"{path}: 'components' must be a non-empty object")
    for component in declared:
        if component not in COMPONENTS:
            raise CheckpointError(f"{path}: unknown component {component!r} (known: {COMPONENTS})")
    return manifest


def _load_component(directory: Path, component: str, entry: dict) -> nn.Module:
    lacking = [key for key in ("file", "sha256", "architecture", "num_parameters") if key not in entry]
    if lacking:
        raise CheckpointError(f"component {component!r}: manifest entry lacks {lacking}")
    if Path(entry["file"]).name != entry["file"]:
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
    declared_tensors = entry.get("tensors")
    if declared_tensors is not None and declared_tensors != {
            key: {"dtype": "F32", "shape": list(arrays[key].shape)} for key in sorted(arrays)}:
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
    method = loaded.manifest.get("inference", {}).get("method")
    if method not in REQUIRED_COMPONENTS:
        raise CheckpointError(f"{directory}: unknown inference method {method!r} (known: {sorted(REQUIRED_COMPONENTS)})")
    lacking = [c for c in REQUIRED_COMPONENTS[method] if c not in loaded.models]
    if lacking:
        raise CheckpointError(f"{directory}: inference method {method!r} needs component(s) {lacking}")
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimood_train.checkpoint")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check a checkpoint directory against the format")
    verify.add_argument("directory")
    args = parser.parse_args(argv)
    try:
        loaded = verify_checkpoint(args.directory)
    except CheckpointError as error:
        print(f"invalid checkpoint: {error}", file=sys.stderr)
        return 1
    for component, entry in loaded.manifest["components"].items():
        print(f"{component:7s} {entry['file']:22s} {entry['num_parameters']:>12,d} parameters  sha256 {entry['sha256'][:16]}…")
    print(f"ok: {loaded.manifest['name']} (format {FORMAT} v{FORMAT_VERSION}, method {loaded.manifest['inference']['method']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
