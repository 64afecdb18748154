"""Slice caches: every volume of a split preprocessed once (docs/preprocessing.md) into one `.npz`.

    python -m mimood_train.data --dataset data/synthetic --split train --out data/cache/train.npz

A cache holds `slices` [N, 160, 160] float16 (intensities in [0, 1]; float16 keeps 11 significant
bits, an error below 5e-4), `brain` and, for splits with lesion masks, `lesion` [N, 160, 160] uint8,
plus `subject` (index into `subjects`) and `slice_index` (axial index in the preprocessed volume).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .preprocessing import preprocess_file

# Slices with less brain than this (pixels at 1 mm², about 6 % of the slice) carry little anatomy
# and are left out of training caches; inference keeps every slice.
MIN_BRAIN_PIXELS = 1500


def split_volumes(dataset_dir: Path, split: str) -> list[tuple[str, Path, Path | None, Path | None]]:
    """(id, image, brain mask, lesion mask) for every `{id}_t2.nii[.gz]` in a split folder or its
    sub-folders (BraTS keeps one folder per subject); masks are `{id}_brainmask` and `{id}_seg` beside
    the image when present."""
    folder = Path(dataset_dir) / split
    volumes = []
    for image in sorted(folder.rglob("*_t2.nii*")):
        stem = image.name.split("_t2.nii")[0]
        suffix = image.name[len(stem) + len("_t2"):]
        masks = [image.parent / f"{stem}_{kind}{suffix}" for kind in ("brainmask", "seg")]
        volumes.append((stem, image, *[m if m.exists() else None for m in masks]))
    if not volumes:
        raise FileNotFoundError(f"no *_t2.nii or *_t2.nii.gz volume in {folder}")
    return volumes


def build_slice_cache(dataset_dir, split: str, out_path, *, min_brain_pixels: int = MIN_BRAIN_PIXELS,
                      slice_stride: int = 1, progress: bool = True) -> dict:
    """Preprocesses a split and writes its slice cache; returns a summary."""
    slices, brains, lesions, subjects, slice_indices = [], [], [], [], []
    volumes = split_volumes(Path(dataset_dir), split)
    has_lesions = all(lesion is not None for *_, lesion in volumes)
    for number, (stem, image, brain, lesion) in enumerate(tqdm(volumes, desc=f"caching {split}", disable=not progress)):
        volume = preprocess_file(image, brain, lesion if has_lesions else None)
        keep = np.flatnonzero(volume.brain.sum(axis=(1, 2)) >= min_brain_pixels)[::slice_stride]
        slices.append(volume.slices[keep].astype(np.float16))
        brains.append(volume.brain[keep].astype(np.uint8))
        if has_lesions:
            lesions.append(volume.lesion[keep].astype(np.uint8))
        subjects.append(np.full(len(keep), number, dtype=np.int32))
        slice_indices.append(keep.astype(np.int32))
    arrays = {"slices": np.concatenate(slices), "brain": np.concatenate(brains),
              "subject": np.concatenate(subjects), "slice_index": np.concatenate(slice_indices),
              "subjects": np.array([stem for stem, *_ in volumes])}
    if has_lesions:
        arrays["lesion"] = np.concatenate(lesions)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_path.with_name(out_path.name + ".partial.npz")
    np.savez(temporary, **arrays)
    temporary.replace(out_path)
    summary = {"split": split, "volumes": len(volumes), "slices": int(len(arrays["slices"])),
               "min_brain_pixels": min_brain_pixels, "slice_stride": slice_stride, "lesion_masks": has_lesions}
    if has_lesions:
        summary["slices_with_lesion"] = int((arrays["lesion"].reshape(len(arrays["lesion"]), -1).any(1)).sum())
    return summary


class SliceDataset(Dataset):
    """A slice cache in memory; item i is the float32 slice [1, 160, 160] (`with_masks`: a dict with
    `image`, `brain` and, where the cache has them, `lesion`)."""

    def __init__(self, cache_path, with_masks: bool = False):
        with np.load(cache_path) as cache:
            self.slices = torch.from_numpy(cache["slices"])
            self.brain = torch.from_numpy(cache["brain"]) if with_masks else None
            self.lesion = torch.from_numpy(cache["lesion"]) if with_masks and "lesion" in cache else None
            self.subject = cache["subject"]
            self.slice_index = cache["slice_index"]
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int):
        image = self.slices[index].float().unsqueeze(0)
        if not self.with_masks:
            return image
        item = {"image": image, "brain": self.brain[index].bool().unsqueeze(0)}
        if self.lesion is not None:
            item["lesion"] = self.lesion[index].bool().unsqueeze(0)
        return item


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimood_train.data", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, type=Path, help="folder with one sub-folder per split")
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--min-brain-pixels", type=int, default=MIN_BRAIN_PIXELS)
    parser.add_argument("--slice-stride", type=int, default=1)
    args = parser.parse_args(argv)
    summary = build_slice_cache(args.dataset, args.split, args.out, min_brain_pixels=args.min_brain_pixels,
                                slice_stride=args.slice_stride)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
