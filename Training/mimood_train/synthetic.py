"""Synthetic T2-weighted brain MRI from the MNI ICBM152 2009a templates that nilearn ships, with
BraTS-like gliomas in the anomalous splits and, in the test split, lesion kinds no proxy task mimics
(small hyperintense foci, hypointense lesions). The generative model and every parameter range are in
docs/synthetic-data.md.

    python -m mimood_train.synthetic --out data/synthetic --train 300 --val 30 \
        --val-anomalous 30 --test-anomalous 60 --test 30 --seed 0 --workers 2
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm import tqdm

# 2: the healthy `test` split, and lesion kinds drawn per test_anomalous subject. Subjects of the
# other splits, and glioma subjects of test_anomalous, are byte-identical to version 1's.
GENERATOR_VERSION = 2
# A subject's seed holds its split's index here: new splits go at the end, so no existing subject changes.
SPLITS = ("train", "val", "val_anomalous", "test_anomalous", "test")
ANOMALOUS_SPLITS = ("val_anomalous", "test_anomalous")
LESION_KINDS = ("glioma", "foci", "hypointense")
# Appended to a subject's seed entropy for the draw of its lesion kind: a stream of its own leaves the
# subject's draws (and so every glioma subject) as they were before kinds existed.
KIND_STREAM = 1
# Voxels of margin kept around the template's brain when cropping it (the subjects are smaller).
TEMPLATE_MARGIN = 8


def spin_echo_signal(proton_density: float, t1_ms: float, t2_ms: float, tr_ms: float, te_ms: float) -> float:
    return proton_density * (1 - math.exp(-tr_ms / t1_ms)) * math.exp(-te_ms / t2_ms)


# Relaxation times at 3 T (ms) and relative proton density: the T2 contrast's tissue order.
TISSUES = {"wm": (0.69, 830.0, 80.0), "gm": (0.80, 1330.0, 110.0), "csf": (1.00, 4000.0, 2000.0)}
TR_MS, TE_MS = 4000.0, 88.0


def tissue_contrast() -> dict[str, float]:
    """Mean T2-weighted intensity of each tissue relative to white matter (about 1 : 1.5 : 2.6)."""
    signal = {name: spin_echo_signal(*params, TR_MS, TE_MS) for name, params in TISSUES.items()}
    return {name: value / signal["wm"] for name, value in signal.items()}


@dataclass(frozen=True)
class Template:
    """Tissue probability maps on the cropped 1 mm template grid."""
    wm: np.ndarray
    gm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray            # float32 0/1
    edge_distance: np.ndarray    # mm from each brain voxel to the outside of the brain
    affine: np.ndarray


@lru_cache(maxsize=2)
def load_template(zoom: float = 1.0) -> Template:
    """The MNI152 2009a 1 mm T1/GM/WM templates (shipped inside the nilearn wheel), cropped to the brain.
    `zoom` < 1 shrinks the grid (voxel size 1/zoom mm) for fast tests."""
    from nilearn import datasets

    t1_image = datasets.load_mni152_template(resolution=1)
    t1 = np.asarray(t1_image.dataobj, dtype=np.float32)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    brain = ndimage.binary_fill_holes(t1 > 0)
    present = np.argwhere(brain)
    low = np.maximum(present.min(0) - TEMPLATE_MARGIN, 0)
    high = np.minimum(present.max(0) + TEMPLATE_MARGIN + 1, brain.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    affine = t1_image.affine.copy()                   # the template's affine lives in the sform
    affine[:3, 3] += affine[:3, :3] @ low
    maps = [brain[box].astype(np.float32), gm[box], wm[box]]
    if zoom != 1.0:
        maps = [np.clip(ndimage.zoom(m, zoom, order=1), 0, 1) for m in maps]
        affine[:3, :3] /= zoom
    brain, gm, wm = maps
    brain = (brain >= 0.5).astype(np.float32)
    gm, wm = gm * brain, wm * brain
    csf = np.clip(1 - gm - wm, 0, 1) * brain
    edge_distance = ndimage.distance_transform_edt(brain > 0) / zoom
    return Template(wm, gm, csf, brain, edge_distance.astype(np.float32), affine)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], control_points: int) -> np.ndarray:
    """A smooth random field of unit standard deviation: Gaussian noise on a coarse grid, cubic upsampling."""
    coarse = rng.standard_normal([control_points] * len(shape))
    field = ndimage.zoom(coarse, [s / control_points for s in shape], order=3, mode="reflect")
    field = field[tuple(slice(0, s) for s in shape)]
    return ((field - field.mean()) / (field.std() + 1e-8)).astype(np.float32)


@dataclass
class SubjectParameters:
    contrast: dict[str, float]   # tissue intensity relative to WM after the per-subject ±10 % jitter
    gain: float                  # WM intensity in the written file
    scale: list[float]
    rotation_deg: list[float]    # about x (pitch), y (roll), z (yaw)
    flip_left_right: bool
    translation_mm: list[float]
    elastic_mm: float
    bias_amplitude: float
    blur_sigma_vox: float
    noise_fraction: float        # noise σ as a fraction of the CSF intensity (BrainWeb convention)


@dataclass
class GliomaParameters:
    centre_vox: list[int]        # template voxel
    core_radius_mm: float
    oedema_extent_mm: float      # beyond the core surface, reached in pure white matter
    necrosis_fraction: float     # of the core radius; 0 = solid tumour
    rim_contrast: float          # × WM
    oedema_contrast: float       # × WM
    mass_effect_mm: float
    subtle: bool
    visibility: float            # 1 = full contrast; subtle lesions blend towards the tissue


def draw_subject(rng: np.random.Generator) -> SubjectParameters:
    base = tissue_contrast()
    contrast = {"wm": 1.0, **{k: v * rng.uniform(0.9, 1.1) for k, v in base.items() if k != "wm"}}
    return SubjectParameters(
        contrast=contrast, gain=float(rng.uniform(700, 1300)),
        # MNI space is larger than most brains: 0.84–0.94 brings its 181 mm to a typical 152–170 mm.
        scale=list(rng.uniform(0.84, 0.94) * rng.uniform(0.97, 1.03, size=3)),
        rotation_deg=[rng.uniform(-10, 10), rng.uniform(-6, 6), rng.uniform(-8, 8)],
        flip_left_right=bool(rng.random() < 0.5), translation_mm=list(rng.uniform(-4, 4, size=3)),
        elastic_mm=float(rng.uniform(1.5, 3.5)), bias_amplitude=float(rng.uniform(0.05, 0.2)),
        blur_sigma_vox=float(rng.uniform(0.3, 0.7)), noise_fraction=float(rng.uniform(0.01, 0.03)))


def draw_glioma(rng: np.random.Generator, template: Template) -> GliomaParameters:
    subtle = bool(rng.random() < 0.25)
    if subtle:
        core, oedema, mass, visibility = rng.uniform(3, 6), rng.uniform(1, 6), rng.uniform(0, 2), rng.uniform(0.4, 0.7)
    else:
        core = rng.uniform(5, 25)
        oedema = rng.uniform(min(5.0, 30 - core), 30 - core)    # whole lesion 10–60 mm across
        mass, visibility = min(rng.uniform(2, 8), 0.8 * core), 1.0
    candidates = np.argwhere((template.wm > 0.5) & (template.edge_distance > core + 4))
    if len(candidates) == 0:
        candidates = np.argwhere(template.edge_distance >= template.edge_distance.max() * 0.8)
    centre = candidates[rng.integers(len(candidates))]
    return GliomaParameters(
        centre_vox=[int(c) for c in centre], core_radius_mm=float(core), oedema_extent_mm=float(oedema),
        necrosis_fraction=float(rng.uniform(0.3, 0.7)) if rng.random() < 0.7 else 0.0,
        rim_contrast=float(rng.uniform(1.5, 1.9)), oedema_contrast=float(rng.uniform(2.0, 2.5)),
        mass_effect_mm=float(mass), subtle=subtle, visibility=float(visibility))


@dataclass
class FociParameters:
    """Small hyperintense white-matter foci, as MS plaques or small-vessel lesions look on T2."""
    centres_vox: list[list[int]]   # template voxels
    diameters_mm: list[float]
    contrasts: list[float]         # × WM


@dataclass
class HypointenseParameters:
    """One lesion darker than every tissue, as haemorrhage or calcification looks on T2."""
    centre_vox: list[int]
    diameter_mm: float
    contrast: float                # × WM


def draw_foci(rng: np.random.Generator, template: Template) -> FociParameters:
    count = int(rng.integers(3, 11))
    diameters = rng.uniform(2, 6, size=count)
    centres = []
    for diameter in diameters:
        candidates = np.argwhere((template.wm > 0.5) & (template.edge_distance > diameter / 2 + 3))
        centres.append([int(c) for c in candidates[rng.integers(len(candidates))]])
    return FociParameters(centres_vox=centres, diameters_mm=[float(d) for d in diameters],
                          contrasts=[float(c) for c in rng.uniform(1.6, 2.2, size=count)])


def draw_hypointense(rng: np.random.Generator, template: Template) -> HypointenseParameters:
    diameter = rng.uniform(5, 20)
    # In grey or white matter, not in CSF, where a dark lesion would have no tissue to stand out from.
    candidates = np.argwhere((template.wm + template.gm > 0.8) & (template.edge_distance > diameter / 2 + 4))
    centre = candidates[rng.integers(len(candidates))]
    return HypointenseParameters(centre_vox=[int(c) for c in centre], diameter_mm=float(diameter),
                                 contrast=float(rng.uniform(0.3, 0.6)))


def lesion_kind_of(seed: int, split: str, index: int, kinds: tuple[str, ...]) -> str:
    """The lesion kind of an anomalous subject, drawn uniformly from `kinds` on its own stream."""
    rng = np.random.default_rng(np.random.SeedSequence([*subject_seed(seed, split, index), KIND_STREAM]))
    return kinds[int(rng.integers(len(kinds)))]


def soft_step(signed_distance_mm: np.ndarray, width_mm: float) -> np.ndarray:
    """1 inside (positive distance), 0 outside, with a logistic edge about `width_mm` wide."""
    return (1 / (1 + np.exp(np.clip(-signed_distance_mm / width_mm, -50, 50)))).astype(np.float32)


def anatomy_image(template: Template, subject: SubjectParameters, box=np.s_[:, :, :]) -> np.ndarray:
    c = subject.contrast
    return (template.wm[box] * c["wm"] + template.gm[box] * c["gm"] + template.csf[box] * c["csf"]).astype(np.float32)


@dataclass
class LocalGrid:
    """The template voxels within `reach_mm` of a centre: their box, offsets (mm) and distance (mm)."""
    box: tuple[slice, ...]
    low: np.ndarray
    offsets: np.ndarray      # [3, *shape]
    radius: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.radius.shape


def local_grid(template: Template, centre_vox: list[int], reach_mm: float) -> LocalGrid:
    voxel_mm = abs(float(template.affine[0, 0]))
    reach = int(math.ceil(reach_mm / voxel_mm))
    centre = np.array(centre_vox)
    low, high = np.maximum(centre - reach, 0), np.minimum(centre + reach + 1, template.brain.shape)
    offsets = np.stack(np.meshgrid(*[np.arange(a, b) - c for a, b, c in zip(low, high, centre)],
                                   indexing="ij")).astype(np.float32) * voxel_mm
    return LocalGrid(tuple(slice(a, b) for a, b in zip(low, high)), low, offsets, np.sqrt((offsets ** 2).sum(0)) + 1e-6)


def paint_glioma(template: Template, subject: SubjectParameters, glioma: GliomaParameters,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Template-space T2 image (WM = 1) with the glioma, and its whole-tumour weight in [0, 1]. Mass
    effect first pushes the tissue radially outward, then core and oedema are painted over it."""
    voxel_mm = abs(float(template.affine[0, 0]))
    image = anatomy_image(template, subject)
    weight = np.zeros_like(image)
    # Far enough for the oedema and for the mass effect to fall below ~1 mm.
    reach_mm = max(glioma.core_radius_mm + glioma.oedema_extent_mm + 8, 3 * glioma.core_radius_mm) + 4
    grid = local_grid(template, glioma.centre_vox, reach_mm)
    box, shape, offsets, radius = grid.box, grid.shape, grid.offsets, grid.radius
    centre, low = np.array(glioma.centre_vox), grid.low

    # Mass effect: displacement m at the core surface, compressing the inside, decaying as (R/r)² outside.
    core_r, mass = glioma.core_radius_mm, glioma.mass_effect_mm
    falloff = np.where(radius < core_r, radius / core_r, (core_r / radius) ** 2)
    source = (offsets - offsets / radius * mass * falloff) / voxel_mm + (centre - low).reshape(3, 1, 1, 1)
    tissues = {}
    for name in ("wm", "gm", "csf"):
        tissues[name] = ndimage.map_coordinates(getattr(template, name)[box], source, order=1, mode="nearest")
    c = subject.contrast
    anatomy = tissues["wm"] * c["wm"] + tissues["gm"] * c["gm"] + tissues["csf"] * c["csf"]

    core_edge = core_r * (1 + 0.25 * np.clip(smooth_noise(rng, shape, 5), -2, 2))
    core_weight = soft_step(core_edge - radius, 1.0)
    texture = 1 + 0.08 * smooth_noise(rng, shape, 8)
    core_intensity = glioma.rim_contrast * texture
    if glioma.necrosis_fraction > 0:
        necrosis = soft_step(glioma.necrosis_fraction * core_edge - radius, 1.5)
        necrotic_intensity = c["csf"] * rng.uniform(0.85, 1.0) * texture
        core_intensity = core_intensity * (1 - necrosis) + necrotic_intensity * necrosis
    # Oedema spreads along white matter: its reach shrinks to 35 % in grey matter and is absent in CSF.
    spread = glioma.oedema_extent_mm * (0.35 + 0.65 * tissues["wm"]) * (1 + 0.3 * smooth_noise(rng, shape, 6))
    oedema_weight = soft_step(spread - np.maximum(radius - core_edge, 0), 1.5) * (1 - tissues["csf"])
    oedema_intensity = glioma.oedema_contrast * texture

    lesion = anatomy + oedema_weight * (oedema_intensity - anatomy)
    lesion = lesion + core_weight * (core_intensity - lesion)
    lesion = anatomy + glioma.visibility * (lesion - anatomy)
    brain = template.brain[box]
    image[box] = lesion * brain
    weight[box] = np.maximum(core_weight, oedema_weight) * brain
    return image, weight


def paint_foci(template: Template, subject: SubjectParameters, foci: FociParameters) -> tuple[np.ndarray, np.ndarray]:
    """Template-space T2 image (WM = 1) with each focus a sphere of its contrast (0.5 mm soft edge), and the
    foci's weight in [0, 1]."""
    image = anatomy_image(template, subject)
    weight = np.zeros_like(image)
    for centre, diameter, contrast in zip(foci.centres_vox, foci.diameters_mm, foci.contrasts):
        grid = local_grid(template, centre, diameter / 2 + 3)
        focus = soft_step(diameter / 2 - grid.radius, 0.5) * template.brain[grid.box]
        image[grid.box] += focus * (contrast - image[grid.box])
        weight[grid.box] = np.maximum(weight[grid.box], focus)
    return image, weight


def paint_hypointense(template: Template, subject: SubjectParameters, lesion: HypointenseParameters,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Template-space T2 image (WM = 1) with a dark lesion: an irregular ball (radius modulated ±15 % by a
    smooth field, 1 mm soft edge), textured ±8 %, and its weight in [0, 1]."""
    image = anatomy_image(template, subject)
    weight = np.zeros_like(image)
    radius_mm = lesion.diameter_mm / 2
    grid = local_grid(template, lesion.centre_vox, 1.3 * radius_mm + 4)
    edge = radius_mm * (1 + 0.15 * np.clip(smooth_noise(rng, grid.shape, 4), -2, 2))
    inside = soft_step(edge - grid.radius, 1.0) * template.brain[grid.box]
    texture = 1 + 0.08 * smooth_noise(rng, grid.shape, 6)
    image[grid.box] += inside * (lesion.contrast * texture - image[grid.box])
    weight[grid.box] = inside
    return image, weight


def subject_warp_coordinates(template: Template, subject: SubjectParameters,
                             rng: np.random.Generator) -> np.ndarray:
    """For each voxel of the output grid, where to sample the template: a random affine about the brain's
    centre (scale, rotation, left-right flip, shift) composed with a smooth elastic displacement."""
    shape = template.brain.shape
    voxel_mm = abs(float(template.affine[0, 0]))
    centre = np.array(ndimage.center_of_mass(template.brain), dtype=np.float64)
    rx, ry, rz = np.deg2rad(subject.rotation_deg)
    rot_x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
    rot_y = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
    rot_z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    forward = rot_z @ rot_y @ rot_x @ np.diag(subject.scale)
    if subject.flip_left_right:
        forward = np.diag([-1.0, 1.0, 1.0]) @ forward
    inverse = np.linalg.inv(forward)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    relative = grid.reshape(3, -1) - (centre + np.array(subject.translation_mm) / voxel_mm).reshape(3, 1)
    source = (inverse.astype(np.float32) @ relative).reshape(grid.shape) + centre.reshape(3, 1, 1, 1).astype(np.float32)
    coarse_shape = tuple(max(4, s // 4) for s in shape)
    for axis in range(3):
        displacement = smooth_noise(rng, coarse_shape, 6) * subject.elastic_mm / voxel_mm
        source[axis] += ndimage.zoom(displacement, [s / c for s, c in zip(shape, coarse_shape)], order=1)[
            : shape[0], : shape[1], : shape[2]]
    return source


def generate_subject(template: Template, seed: tuple[int, int, int], anomalous: bool,
                     with_tissue_labels: bool = False, lesion_kind: str = "glioma") -> dict:
    """One pseudo-subject: raw-intensity T2 (int16), brain mask, and for anomalous subjects a lesion of
    `lesion_kind` (LESION_KINDS) and its mask; `with_tissue_labels` adds the dominant tissue per voxel
    (0 outside, 1 CSF, 2 GM, 3 WM) for checks."""
    rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
    subject = draw_subject(rng)
    lesion = None
    if not anomalous:
        image, weight = anatomy_image(template, subject), None
    elif lesion_kind == "glioma":
        lesion = draw_glioma(rng, template)
        image, weight = paint_glioma(template, subject, lesion, rng)
    elif lesion_kind == "foci":
        lesion = draw_foci(rng, template)
        image, weight = paint_foci(template, subject, lesion)
    elif lesion_kind == "hypointense":
        lesion = draw_hypointense(rng, template)
        image, weight = paint_hypointense(template, subject, lesion, rng)
    else:
        raise ValueError(f"unknown lesion kind {lesion_kind!r} (known: {LESION_KINDS})")

    source = subject_warp_coordinates(template, subject, rng)
    brain = ndimage.map_coordinates(template.brain, source, order=1) >= 0.5
    image = ndimage.map_coordinates(image, source, order=1) * brain
    bias = np.exp(subject.bias_amplitude * np.clip(smooth_noise(rng, tuple(max(4, s // 4) for s in image.shape), 4), -2.5, 2.5))
    bias = ndimage.zoom(bias, [s / b for s, b in zip(image.shape, bias.shape)], order=1)[
        : image.shape[0], : image.shape[1], : image.shape[2]]
    image = ndimage.gaussian_filter(image * bias, subject.blur_sigma_vox) * brain
    sigma = subject.noise_fraction * subject.contrast["csf"]
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.sqrt(real ** 2 + imaginary ** 2) * brain          # magnitude images carry Rician noise
    result = {
        "t2": np.clip(np.rint(image * subject.gain), 0, 32767).astype(np.int16),
        "brainmask": brain.astype(np.uint8),
        "subject": asdict(subject),
    }
    if with_tissue_labels:
        dominant = np.argmax(np.stack([template.csf, template.gm, template.wm]), axis=0).astype(np.float32) + 1
        result["tissue"] = (ndimage.map_coordinates(dominant, source, order=0) * brain).astype(np.uint8)
    if lesion is not None:
        seg = (ndimage.map_coordinates(weight, source, order=1) >= 0.5) & brain
        result["seg"] = seg.astype(np.uint8)
        result["lesion_kind"] = lesion_kind
        result[lesion_kind] = asdict(lesion)
        result["lesion_volume_ml"] = float(seg.sum() * abs(np.linalg.det(template.affine[:3, :3])) / 1000)
    return result


def subject_id(split: str, index: int) -> str:
    return f"{split}_{index:04d}"


def write_subject(out_dir: Path, split: str, index: int, subject: dict, affine: np.ndarray) -> None:
    folder = out_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("t2", "brainmask", "seg"):
        if key in subject:
            image = nib.Nifti1Image(subject[key], affine)
            image.set_qform(affine, code=1)
            image.set_sform(affine, code=2)
            nib.save(image, folder / f"{subject_id(split, index)}_{key}.nii.gz")


def subject_seed(seed: int, split: str, index: int) -> tuple[int, int, int]:
    """Entropy of a subject's SeedSequence: any subject can be regenerated alone."""
    return seed, SPLITS.index(split), index


def check_test_kinds(kinds: tuple[str, ...]) -> None:
    if not kinds or not set(kinds) <= set(LESION_KINDS):
        raise ValueError(f"lesion kinds must be a non-empty subset of {LESION_KINDS}, got {list(kinds)}")


def _generate_job(job: tuple[str, int, int, float, tuple[str, ...]]) -> tuple[str, int, dict]:
    split, index, seed, zoom, test_kinds = job
    template = load_template(zoom)
    # val_anomalous stays gliomas only: λ is calibrated on it, and the other kinds are for testing alone.
    kind = lesion_kind_of(seed, split, index, test_kinds) if split == "test_anomalous" else "glioma"
    subject = generate_subject(template, subject_seed(seed, split, index), split in ANOMALOUS_SPLITS, lesion_kind=kind)
    return split, index, subject


def generate_dataset(out_dir: Path, counts: dict[str, int], seed: int, workers: int = 1,
                     zoom: float = 1.0, progress: bool = True, test_kinds: tuple[str, ...] = LESION_KINDS) -> dict:
    """Writes every split as NIfTI files plus `dataset.json`; identical for the same seed, counts and kinds.
    Each test_anomalous subject's lesion kind is drawn from `test_kinds`."""
    check_test_kinds(test_kinds)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    template = load_template(zoom)
    jobs = [(split, i, seed, zoom, tuple(test_kinds)) for split in SPLITS for i in range(counts.get(split, 0))]
    records: dict[str, list] = {split: [] for split in SPLITS}
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) if workers > 1 else _InlinePool() as pool:
        for split, index, subject in tqdm(pool.imap(_generate_job, jobs), total=len(jobs), disable=not progress,
                                          desc="pseudo-subjects", unit="subject"):
            write_subject(out_dir, split, index, subject, template.affine)
            record = {"id": subject_id(split, index), "seed": list(subject_seed(seed, split, index)),
                      "subject": subject["subject"]}
            if "lesion_kind" in subject:
                kind = subject["lesion_kind"]
                record.update({"lesion_kind": kind, kind: subject[kind], "lesion_volume_ml": subject["lesion_volume_ml"]})
            records[split].append(record)
    manifest = {
        "generator": "mimood_train.synthetic", "generator_version": GENERATOR_VERSION, "seed": seed,
        "subject_seed": "numpy.random.SeedSequence([seed, index of split in splits, subject index])",
        "splits": list(SPLITS),
        "template": "MNI ICBM152 2009a (nilearn)", "template_zoom": zoom,
        "tissue_contrast": tissue_contrast(), "counts": {s: counts.get(s, 0) for s in SPLITS},
        "test_lesion_kinds": list(test_kinds),
        "files": "{split}/{id}_t2.nii.gz, {id}_brainmask.nii.gz, {id}_seg.nii.gz (anomalous splits)",
        "subjects": records,
    }
    (out_dir / "dataset.json").write_text(json.dumps(manifest, indent=1))
    return manifest


class _InlinePool:
    """The Pool interface, in this process (one worker)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap(function, jobs):
        return map(function, jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimood_train.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=30)
    parser.add_argument("--val-anomalous", type=int, default=30)
    parser.add_argument("--test-anomalous", type=int, default=60)
    parser.add_argument("--test", type=int, default=30, help="healthy test subjects (the triage's negatives)")
    parser.add_argument("--test-kinds", default=",".join(LESION_KINDS),
                        help=f"lesion kinds drawn per test_anomalous subject, comma-separated, of {','.join(LESION_KINDS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--zoom", type=float, default=1.0, help="template grid zoom (< 1: coarser, for tests)")
    args = parser.parse_args(argv)
    counts = {"train": args.train, "val": args.val, "val_anomalous": args.val_anomalous,
              "test_anomalous": args.test_anomalous, "test": args.test}
    kinds = tuple(kind.strip() for kind in args.test_kinds.split(","))
    try:
        check_test_kinds(kinds)
    except ValueError as error:
        parser.error(f"--test-kinds: {error}")
    generate_dataset(args.out, counts, args.seed, args.workers, args.zoom, test_kinds=kinds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
