"""The paper's preprocessing of a NIfTI volume into 160×160 axial slices in [0, 1].

Every step is specified in docs/preprocessing.md so that the Swift engine can re-implement it exactly:
reorient to RAS → resample to 1 mm (separable linear) → brain mask → clip at the 98th percentile of
brain voxels and scale to [0, 1] → crop/pad in-plane to 160×160 around the brain's bounding box →
axial slices in radiological display order. `slices_to_volume` maps slice results back to the input grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

SLICE_SIZE = 160
TARGET_SPACING_MM = 1.0
CLIP_PERCENTILE = 98.0
# Masks are resampled linearly and kept where the interpolated value reaches this.
MASK_THRESHOLD = 0.5


class PreprocessingError(ValueError):
    """The volume cannot be preprocessed (wrong dimensionality, degenerate affine, no brain)."""


def best_affine(header: nib.Nifti1Header) -> np.ndarray:
    """Voxel → world (RAS mm): the sform when its code is set, else the qform, else pixdim scaling."""
    if int(header["sform_code"]) > 0:
        return header.get_sform()
    if int(header["qform_code"]) > 0:
        return header.get_qform()
    affine = np.eye(4)
    affine[:3, :3] = np.diag(np.abs(header["pixdim"][1:4]).astype(np.float64))
    return affine


def load_nifti(path) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D volume (scl_slope/scl_inter applied) as float32 and its voxel → RAS affine."""
    image = nib.load(str(path))
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise PreprocessingError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    return data, best_affine(image.header)


@dataclass(frozen=True)
class Orientation:
    """How the input's voxel axes map onto RAS: RAS axis `i` is input axis `axes[i]`, reversed when
    `flips[i]`."""
    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]


def orientation_of(affine: np.ndarray) -> Orientation:
    """Closest RAS axis for each voxel axis: repeatedly take the largest |direction cosine| left in the
    3×3 matrix, assign that voxel axis to that world axis, and strike its row and column."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0, keepdims=True)
    if not np.all(np.isfinite(directions)):
        raise PreprocessingError("the affine has a zero-length voxel axis")
    remaining = np.abs(directions)
    axes, flips = [0, 0, 0], [False, False, False]
    for _ in range(3):
        world, voxel = np.unravel_index(int(np.argmax(remaining)), remaining.shape)
        axes[world], flips[world] = int(voxel), bool(directions[world, voxel] < 0)
        remaining[world, :] = -1
        remaining[:, voxel] = -1
    return Orientation(tuple(axes), tuple(flips))


def to_ras(volume: np.ndarray, orientation: Orientation) -> np.ndarray:
    out = np.transpose(volume, orientation.axes)
    for axis, flip in enumerate(orientation.flips):
        if flip:
            out = np.flip(out, axis)
    return np.ascontiguousarray(out)


def from_ras(volume: np.ndarray, orientation: Orientation) -> np.ndarray:
    for axis, flip in enumerate(orientation.flips):
        if flip:
            volume = np.flip(volume, axis)
    return np.ascontiguousarray(np.transpose(volume, np.argsort(orientation.axes)))


def resampled_length(n: int, spacing: float) -> int:
    """Output samples along an axis of `n` voxels `spacing` mm apart: 1 mm steps from the first voxel
    centre that stay within the last one."""
    return int(np.floor((n - 1) * spacing / TARGET_SPACING_MM + 1e-6)) + 1


def resample_axis(volume: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation along one axis at fractional voxel `positions` (clamped to the axis)."""
    n = volume.shape[axis]
    positions = np.clip(positions, 0, n - 1)
    lower = np.minimum(np.floor(positions).astype(np.int64), n - 1)
    upper = np.minimum(lower + 1, n - 1)
    weight = (positions - lower).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = -1
    weight = weight.reshape(shape)
    return np.take(volume, lower, axis) * (1 - weight) + np.take(volume, upper, axis) * weight


def resample_to_spacing(volume: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Separable linear resampling (equal to trilinear) of a RAS volume to 1 mm; sample k of an axis
    lies at input voxel k · 1 mm / spacing."""
    out = volume.astype(np.float32)
    for axis in range(3):
        if abs(spacing[axis] - TARGET_SPACING_MM) < 1e-6:
            continue
        count = resampled_length(out.shape[axis], spacing[axis])
        out = resample_axis(out, axis, np.arange(count) * TARGET_SPACING_MM / spacing[axis])
    return out


@dataclass(frozen=True)
class SliceGeometry:
    """What maps the 160×160 slices back onto the input voxel grid."""
    input_shape: tuple[int, int, int]
    orientation: Orientation
    spacing: tuple[float, float, float]          # RAS-ordered input spacing (mm)
    resampled_shape: tuple[int, int, int]        # RAS grid at 1 mm
    crop_start: tuple[int, int]                  # (x, y) of the window's first voxel in the RAS grid


@dataclass
class PreprocessedVolume:
    slices: np.ndarray          # [S, 160, 160] float32 in [0, 1]; S = axial slices, inferior → superior
    brain: np.ndarray           # [S, 160, 160] bool
    lesion: np.ndarray | None   # [S, 160, 160] bool
    geometry: SliceGeometry
    clip_value: float           # the 98th percentile that became 1.0


def crop_window_start(brain_xy: np.ndarray) -> tuple[int, int]:
    """Start of the 160-voxel window along x and y, centred on the brain's bounding box (floor)."""
    starts = []
    for axis in range(2):
        present = np.flatnonzero(brain_xy.any(axis=1 - axis))
        low, high = int(present[0]), int(present[-1])
        starts.append(low + (high - low + 1 - SLICE_SIZE) // 2)
    return starts[0], starts[1]


def crop_or_pad(volume: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """The [160, 160, Z] window at `start` (x, y), zero where it leaves the volume."""
    out = np.zeros((SLICE_SIZE, SLICE_SIZE, volume.shape[2]), dtype=volume.dtype)
    src, dst = [], []
    for axis in range(2):
        begin, end = max(start[axis], 0), min(start[axis] + SLICE_SIZE, volume.shape[axis])
        src.append(slice(begin, max(begin, end)))
        dst.append(slice(begin - start[axis], max(begin, end) - start[axis]))
    out[dst[0], dst[1]] = volume[src[0], src[1]]
    return out


def to_display_slices(window: np.ndarray) -> np.ndarray:
    """[x, y, z] RAS window → [z, row, column] with row 0 anterior and column 0 the patient's right
    (radiological convention)."""
    return np.ascontiguousarray(np.transpose(window[::-1, ::-1, :], (2, 1, 0)))


def from_display_slices(slices: np.ndarray) -> np.ndarray:
    return np.transpose(slices, (2, 1, 0))[::-1, ::-1, :]


def preprocess_volume(image: np.ndarray, affine: np.ndarray, brain_mask: np.ndarray | None = None,
                      lesion_mask: np.ndarray | None = None) -> PreprocessedVolume:
    if image.ndim != 3:
        raise PreprocessingError(f"expected a 3-D volume, got shape {image.shape}")
    for name, mask in (("brain mask", brain_mask), ("lesion mask", lesion_mask)):
        if mask is not None and mask.shape != image.shape:
            raise PreprocessingError(f"{name} shape {mask.shape} differs from the image's {image.shape}")
    orientation = orientation_of(affine)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)[list(orientation.axes)]

    def resampled(volume: np.ndarray) -> np.ndarray:
        return resample_to_spacing(to_ras(volume.astype(np.float32), orientation), spacing)

    ras = resampled(np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0))
    brain = resampled(brain_mask > 0) >= MASK_THRESHOLD if brain_mask is not None else ras > 0
    if not brain.any():
        raise PreprocessingError("the volume has no brain voxel (mask empty, or no intensity above 0)")
    clip_value = float(np.percentile(ras[brain], CLIP_PERCENTILE))
    if clip_value <= 0:
        raise PreprocessingError("the 98th percentile of brain intensities is not positive")
    scaled = np.where(brain, np.clip(ras, 0, clip_value) / clip_value, 0).astype(np.float32)

    start = crop_window_start(brain.any(axis=2))
    lesion = None
    if lesion_mask is not None:
        lesion = to_display_slices(crop_or_pad(resampled(lesion_mask > 0) >= MASK_THRESHOLD, start))
    geometry = SliceGeometry(tuple(image.shape), orientation, tuple(float(s) for s in spacing),
                             tuple(ras.shape), start)
    return PreprocessedVolume(slices=to_display_slices(crop_or_pad(scaled, start)),
                              brain=to_display_slices(crop_or_pad(brain, start)),
                              lesion=lesion, geometry=geometry, clip_value=clip_value)


def slices_to_volume(slices: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """Slice results [S, 160, 160] back onto the input voxel grid: undo display order and crop (zero
    outside the window), resample linearly from 1 mm to the input spacing, undo the reorientation."""
    window = from_display_slices(slices.astype(np.float32))
    ras = np.zeros(geometry.resampled_shape, dtype=np.float32)
    x0, y0 = geometry.crop_start
    nx, ny = ras.shape[0], ras.shape[1]
    xs, ys = slice(max(x0, 0), min(x0 + SLICE_SIZE, nx)), slice(max(y0, 0), min(y0 + SLICE_SIZE, ny))
    ras[xs, ys] = window[xs.start - x0:xs.stop - x0, ys.start - y0:ys.stop - y0]
    ras_input_shape = [geometry.input_shape[a] for a in geometry.orientation.axes]
    for axis in range(3):
        if abs(geometry.spacing[axis] - TARGET_SPACING_MM) < 1e-6:
            continue
        positions = np.arange(ras_input_shape[axis]) * geometry.spacing[axis] / TARGET_SPACING_MM
        ras = resample_axis(ras, axis, positions)
    return from_ras(ras, geometry.orientation)


def preprocess_file(image_path, brain_mask_path=None, lesion_mask_path=None) -> PreprocessedVolume:
    image, affine = load_nifti(image_path)
    brain = load_nifti(brain_mask_path)[0] if brain_mask_path else None
    lesion = load_nifti(lesion_mask_path)[0] if lesion_mask_path else None
    return preprocess_volume(image, affine, brain, lesion)
