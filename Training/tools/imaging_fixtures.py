"""Fixtures for the Swift Imaging module: files written by numpy, nibabel and ImageMagick (independent
implementations of each format) with the values they must decode to, and preprocessing parity cases
computed by `preprocessing.py` from small synthetic volumes.

    cd Training && python tools/imaging_fixtures.py --out ../Tests/Fixtures/imaging

Needs ImageMagick 6 (`apt-get install imagemagick`, used as /usr/bin/convert) for the PNGs. Arrays are
stored as gzip-compressed .npy (mtime 0) so the files regenerate byte for byte and stay small.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import struct
import subprocess
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from mimood_train.preprocessing import best_affine, load_nifti, preprocess_volume, slices_to_volume

SEED = 20240521
CONVERT = "/usr/bin/convert"


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def save_npy_gz(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    path.write_bytes(gzip_bytes(buffer.getvalue()))


def save_nifti(path: Path, image: nib.Nifti1Image, patch=None) -> None:
    """nibabel's bytes, optionally patched (fields nibabel would recompute on save), gzip-compressed for
    a `.gz` name."""
    data = bytearray(image.to_bytes())
    if patch:
        patch(data)
    path.write_bytes(gzip_bytes(bytes(data)) if path.suffix == ".gz" else bytes(data))


def float_list(array: np.ndarray) -> list[float]:
    """Float32 values as JSON numbers that parse back to the same float32 (Python floats are exact)."""
    return [float(v) for v in np.asarray(array, dtype=np.float32).ravel()]


# ---------------------------------------------------------------------------------------------- NPY

def npy_fixtures(out: Path) -> dict:
    rng = np.random.default_rng(SEED)
    base = rng.uniform(-100, 100, size=(3, 4)).round(2)
    arrays = {
        "f4_le": base.astype("<f4"),
        "f4_be": base.astype(">f4"),
        "f8_le": base.astype("<f8"),
        "f8_be": base.astype(">f8"),
        "f2_le": base.astype("<f2"),
        "i1": base.astype("i1"),
        "u1": np.abs(base).astype("u1"),
        "i2_be": (base * 100).astype(">i2"),
        "u2_le": (np.abs(base) * 600).astype("<u2"),
        "i4_le": (base * 1e6).astype("<i4"),
        "u4_be": (np.abs(base) * 4e7).astype(">u4"),
        "i8_le": (base * 1e15).astype("<i8"),
        "u8_be": (np.abs(base) * 1e17).astype(">u8"),
        "b1": base > 0,
        "fortran_3d": np.asfortranarray(rng.uniform(0, 1, size=(2, 3, 4)).astype("<f4")),
        "scalar": np.array(2.5, dtype="<f4"),
        "vector": np.arange(5, dtype="<f4"),
        "empty": np.zeros((0, 3), dtype="<f4"),
    }
    index = {}
    for name, array in arrays.items():
        np.save(out / f"{name}.npy", array)
        index[f"{name}.npy"] = {"shape": list(array.shape), "values": float_list(array.astype(np.float32))}
    for version in ((2, 0), (3, 0)):
        name = f"v{version[0]}.npy"
        with open(out / name, "wb") as handle:
            np.lib.format.write_array(handle, base.astype("<f4"), version=version)
        index[name] = {"shape": list(base.shape), "values": float_list(base)}
    refused = {
        "complex.npy": np.array([1 + 2j, 3 - 1j], dtype="<c8"),
        "object.npy": np.array([{"a": 1}, None], dtype=object),
        "structured.npy": np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]),
        "unicode.npy": np.array(["brain", "scan"]),
    }
    for name, array in refused.items():
        np.save(out / name, array, allow_pickle=True)
    return {"readable": index, "refused": sorted(refused)}


# -------------------------------------------------------------------------------------------- NIfTI

def oblique_affine(spacing, degrees, translation, permutation, flips) -> np.ndarray:
    """Voxel → RAS: voxel axis v steps `spacing[v]` mm along world axis `permutation[v]` (negated where
    flipped), then rotated by small angles about z and x (obliquity under 45°, so orientation is clear)."""
    base = np.zeros((3, 3))
    for voxel, (world, flip) in enumerate(zip(permutation, flips)):
        base[world, voxel] = -spacing[voxel] if flip else spacing[voxel]
    about_z, about_x = np.radians(degrees)
    rz = np.array([[np.cos(about_z), -np.sin(about_z), 0], [np.sin(about_z), np.cos(about_z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(about_x), -np.sin(about_x)], [0, np.sin(about_x), np.cos(about_x)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ base
    affine[:3, 3] = translation
    return affine


def nifti_fixtures(out: Path) -> dict:
    rng = np.random.default_rng(SEED + 1)
    shape = (4, 3, 2)
    signed = rng.integers(-100, 100, size=shape)
    unsigned = rng.integers(0, 200, size=shape)
    affine = oblique_affine((1.5, 2.0, 3.0), (10, -5), (-20.5, 11.0, 7.25), (0, 1, 2), (True, False, False))
    index = {}

    def add(name, data, header=None, affine=affine, patch=None):
        image = nib.Nifti1Image(data, affine, header=header, dtype=data.dtype)
        save_nifti(out / name, image, patch)
        loaded = nib.load(out / name)
        assert loaded.header.endianness == (header.endianness if header else "<"), name
        values = np.asarray(loaded.dataobj, dtype=np.float32)
        index[name] = {"shape": list(values.shape), "values": float_list(values.ravel(order="F")),
                       "affine": best_affine(loaded.header).tolist(),
                       "datatype": int(loaded.header["datatype"])}

    for dtype, data in [("uint8", unsigned), ("int8", signed), ("int16", signed * 300), ("uint16", unsigned * 300),
                        ("int32", signed * 70000), ("uint32", unsigned * 2**24), ("int64", signed * 2**40),
                        ("uint64", unsigned * 2**56), ("float64", signed / 7)]:
        add(f"{dtype}.nii", data.astype(dtype))
    add("float32.nii.gz", (signed / 3).astype(np.float32))
    big_endian = nib.Nifti1Header(endianness=">")
    add("int16_big_endian.nii.gz", (signed * 300).astype(np.int16), header=big_endian)
    add("float32_big_endian.nii", (signed / 3).astype(np.float32), header=nib.Nifti1Header(endianness=">"))

    def scaling(slope, inter):
        return lambda data: struct.pack_into(("<" if data[0] == 0x5C else ">") + "ff", data, 112, slope, inter)
    add("int16_scaled.nii.gz", (signed * 300).astype(np.int16), patch=scaling(0.37, -12.5))
    add("uint8_scaled.nii", unsigned.astype(np.uint8), patch=scaling(2.5, 1.0))
    add("float32_scaled_big_endian.nii", (signed / 3).astype(np.float32), header=nib.Nifti1Header(endianness=">"),
        patch=scaling(1.75, 0.5))

    # The qform alone (sform_code 0), with a rotation and a reflection (qfac −1).
    def qform_only(name, qform_affine):
        image = nib.Nifti1Image((signed * 10).astype(np.int16), None)
        image.header.set_qform(qform_affine, code=1)
        image.header.set_sform(np.eye(4), code=0)
        save_nifti(out / name, image)
        loaded = nib.load(out / name)
        index[name] = {"shape": list(shape), "values": float_list(np.asarray(loaded.dataobj, np.float32).ravel(order="F")),
                       "affine": best_affine(loaded.header).tolist(), "datatype": 4}
    qform_only("qform_only.nii", oblique_affine((0.9, 1.1, 2.2), (25, 12), (1, 2, 3), (1, 0, 2), (False, True, True)))
    # A 180° turn about z: the quaternion's a is 0, b = c = 0, d = 1.
    qform_only("qform_half_turn.nii", np.diag([-1.0, -1.0, 1.0, 1.0]))

    # Neither form: pixdim scaling only.
    image = nib.Nifti1Image(unsigned.astype(np.uint8), None)
    image.header.set_qform(None, code=0)
    image.header.set_sform(None, code=0)
    image.header.set_zooms((0.8, 1.2, 2.0))
    save_nifti(out / "no_forms.nii", image)
    index["no_forms.nii"] = {"shape": list(shape), "values": float_list(unsigned.ravel(order="F")),
                             "affine": best_affine(nib.load(out / "no_forms.nii").header).tolist(), "datatype": 2}

    add("image_2d.nii", unsigned[:, :, 0].astype(np.int16))
    add("one_time_point.nii.gz", signed[..., None].astype(np.float32))

    # With an extension: the data starts after it (vox_offset > 352).
    image = nib.Nifti1Image(signed.astype(np.int16), affine)
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"synthetic fixture for the Swift reader"))
    save_nifti(out / "with_extension.nii", image)
    loaded = nib.load(out / "with_extension.nii")
    # As stored: nibabel's in-memory header no longer carries the offset it read.
    vox_offset = struct.unpack_from("<f", (out / "with_extension.nii").read_bytes(), 108)[0]
    index["with_extension.nii"] = {"shape": list(shape), "values": float_list(signed.ravel(order="F")),
                                   "affine": best_affine(loaded.header).tolist(), "datatype": 4,
                                   "vox_offset": int(vox_offset)}

    refused = {}
    image = nib.Nifti1Image(rng.integers(0, 9, size=(4, 3, 2, 3)).astype(np.int16), affine)
    save_nifti(out / "three_time_points.nii", image)
    refused["three_time_points.nii"] = "badDimensions"
    image = nib.Nifti1Image((signed + 1j * unsigned).astype(np.complex64), affine)
    save_nifti(out / "complex64.nii", image)
    refused["complex64.nii"] = "unsupportedDataType"
    rgb = np.zeros(shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    image = nib.Nifti1Image(rgb, affine)
    save_nifti(out / "rgb24.nii", image)
    refused["rgb24.nii"] = "unsupportedDataType"
    return {"readable": index, "refused": refused}


# ---------------------------------------------------------------------------------------------- PNG

def convert_to_png(pixels: np.ndarray, path: Path, *options: str) -> None:
    """Through ImageMagick from a PGM/PPM/PAM source, without dated chunks (reproducible)."""
    height, width = pixels.shape[:2]
    maximum = 65535 if pixels.dtype == np.uint16 else 255
    if pixels.ndim == 2:
        header = f"P5 {width} {height} {maximum}\n".encode()
        source, suffix = header + pixels.astype(">u2" if maximum > 255 else "u1").tobytes(), "pgm"
    elif pixels.shape[2] == 3:
        header = f"P6 {width} {height} {maximum}\n".encode()
        source, suffix = header + pixels.astype(">u2" if maximum > 255 else "u1").tobytes(), "ppm"
    else:
        header = f"P7\nWIDTH {width}\nHEIGHT {height}\nDEPTH 4\nMAXVAL {maximum}\nTUPLTYPE RGB_ALPHA\nENDHDR\n".encode()
        source, suffix = header + pixels.astype(">u2" if maximum > 255 else "u1").tobytes(), "pam"
    subprocess.run([CONVERT, f"{suffix}:-", "-strip", "-define", "png:exclude-chunks=date,time", *options, f"png:{path}"],
                   input=source, check=True)


def png_chunks(data: bytes):
    position = 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        yield kind.decode(), data[position + 8:position + 8 + length]
        position += 12 + length


def filtered_png(pixels: np.ndarray, filter_type: int) -> bytes:
    """A grayscale PNG (8 or 16 bits) whose every row uses `filter_type` (PNG spec, section 9)."""
    height, width = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.astype(">u2" if depth == 16 else "u1").view(np.uint8).reshape(height, -1).astype(np.int64)
    step = depth // 8                                  # bytes per pixel
    filtered, previous = [], np.zeros(rows.shape[1], dtype=np.int64)
    for row in rows:
        left = np.concatenate([np.zeros(step, np.int64), row[:-step]])
        upper_left = np.concatenate([np.zeros(step, np.int64), previous[:-step]])
        if filter_type == 0:
            predicted = np.zeros_like(row)
        elif filter_type == 1:
            predicted = left
        elif filter_type == 2:
            predicted = previous
        elif filter_type == 3:
            predicted = (left + previous) // 2
        else:
            estimate = left + previous - upper_left
            to_left, to_up, to_upper_left = abs(estimate - left), abs(estimate - previous), abs(estimate - upper_left)
            predicted = np.where((to_left <= to_up) & (to_left <= to_upper_left), left,
                                 np.where(to_up <= to_upper_left, previous, upper_left))
        filtered.append(bytes([filter_type]) + bytes(((row - predicted) % 256).astype(np.uint8)))
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(filtered), 9))
            + chunk(b"IEND", b""))


def png_fixtures(out: Path) -> dict:
    rng = np.random.default_rng(SEED + 2)
    height, width = 11, 13           # odd sizes: partial Adam7 blocks
    row, column = np.mgrid[0:height, 0:width]
    smooth = (40 + 12 * row + 7 * column + rng.integers(0, 20, size=(height, width))).clip(0, 255).astype(np.uint8)
    index = {}

    def add(name, pixels, expected_gray, *options, interlaced=False, ihdr=None):
        path = out / name
        convert_to_png(pixels, path, *options)
        data = path.read_bytes()
        chunks = dict(png_chunks(data))
        header = chunks["IHDR"]
        assert header[12] == (1 if interlaced else 0), name
        if ihdr:
            assert (header[8], header[9]) == ihdr, (name, header[8], header[9])
        # Pillow, a third implementation, must read back the pixels ImageMagick was given.
        with Image.open(path) as image:
            decoded = np.asarray(image if pixels.ndim == 2 else image.convert("RGB" if pixels.shape[2] == 3 else "RGBA"))
        np.testing.assert_array_equal(decoded, pixels, err_msg=name)
        if expected_gray is not None:
            index[name] = {"width": int(header[0:4].hex(), 16), "height": int(header[4:8].hex(), 16),
                           "gray": float_list(expected_gray)}

    maximum8 = np.float32(255)
    # ImageMagick 6 writes only filter 0 or its adaptive mix of 1 and 4, so one file per filter type is
    # built here from the spec's filter equations, and Pillow checks that it decodes to the pixels.
    wide = (smooth.astype(np.uint16) * 257 + rng.integers(0, 256, size=smooth.shape)).astype(np.uint16)
    for filter_type in range(5):
        for name, pixels, expected in [(f"gray8_filter{filter_type}.png", smooth, smooth / maximum8),
                                       (f"gray16_filter{filter_type}.png", wide, wide / np.float32(65535))]:
            (out / name).write_bytes(filtered_png(pixels, filter_type))
            with Image.open(out / name) as image:
                np.testing.assert_array_equal(np.asarray(image), pixels, err_msg=name)
            index[name] = {"width": width, "height": height, "gray": float_list(expected)}
    add("gray8_adaptive.png", smooth, smooth / maximum8, "-quality", "95", "-define", "png:color-type=0",
        "-depth", "8", ihdr=(8, 0))
    add("gray8_adam7.png", smooth, smooth / maximum8, "-interlace", "PNG", "-define", "png:color-type=0",
        "-depth", "8", interlaced=True, ihdr=(8, 0))
    add("gray16_adaptive.png", wide, wide / np.float32(65535), "-quality", "95", "-define", "png:color-type=0", "-depth", "16", ihdr=(16, 0))
    add("gray16_adam7.png", wide, wide / np.float32(65535), "-interlace", "PNG", "-define", "png:color-type=0",
        "-depth", "16", interlaced=True, ihdr=(16, 0))
    levels = (smooth // 17).astype(np.uint8)          # 16 gray levels
    add("gray4_adam7.png", levels * 17, levels / np.float32(15), "-interlace", "PNG", "-define", "png:color-type=0",
        "-define", "png:bit-depth=4", interlaced=True, ihdr=(4, 0))
    tiny = np.array([[0, 128, 255], [64, 192, 32]], dtype=np.uint8)      # Adam7 with empty passes
    add("tiny_adam7.png", tiny, tiny / maximum8, "-interlace", "PNG", "-define", "png:color-type=0", "-depth", "8",
        interlaced=True, ihdr=(8, 0))
    gray_rgb = np.repeat(smooth[:, :, None], 3, axis=2)
    add("gray_as_rgb.png", gray_rgb, smooth / maximum8, "-define", "png:color-type=2", ihdr=(8, 2))
    palette_levels = (smooth // 32 * 32).astype(np.uint8)      # 8 levels: ImageMagick packs 4-bit indices
    add("gray_as_palette.png", np.repeat(palette_levels[:, :, None], 3, axis=2), palette_levels / maximum8,
        "-define", "png:color-type=3", ihdr=(4, 3))
    alpha = np.where(column < 4, 0, np.where(column < 8, 128, 255)).astype(np.uint8)
    rgba = np.concatenate([gray_rgb, alpha[:, :, None]], axis=2)
    composited = (smooth / maximum8) * (alpha / maximum8)
    add("gray_rgba_translucent.png", rgba, composited.astype(np.float32), "-define", "png:color-type=6", ihdr=(8, 6))
    colour = gray_rgb.copy()
    colour[5, 7] = (200, 30, 30)
    add("colour_rgb.png", colour, None, "-define", "png:color-type=2", ihdr=(8, 2))
    return {"readable": index, "refused": {"colour_rgb.png": {"row": 5, "column": 7}}}


# ------------------------------------------------------------------------------------ preprocessing

def synthetic_brain(shape, spacing, rng, centre_fraction=(0.5, 0.5, 0.5), radii_mm=(30, 38, 40)):
    """A textured ellipsoid of 'tissue' with a bright core, on the voxel grid `shape` of `spacing` mm."""
    grids = np.meshgrid(*[(np.arange(n) - c * (n - 1)) * s for n, s, c in zip(shape, spacing, centre_fraction)],
                        indexing="ij")
    distance = sum((g / r) ** 2 for g, r in zip(grids, radii_mm))
    inside = distance < 1
    texture = 300 + 120 * np.cos(grids[0] / 6) * np.sin(grids[1] / 9) + 80 * np.cos(grids[2] / 5)
    core = np.where(distance < 0.15, 350, 0)
    values = (texture + core + rng.normal(0, 25, shape)) * inside
    return values, inside


def anomaly_slices(count: int) -> np.ndarray:
    """A map with exact float32 values the Swift test rebuilds from the same integer formula."""
    z, row, column = np.mgrid[0:count, 0:160, 0:160]
    return (((row * 7 + column * 3 + z * 11) % 64) / 64).astype(np.float32)


def preprocessing_case(out: Path, name: str, image_path: Path, brain_path=None, lesion_path=None) -> dict:
    image, affine = load_nifti(image_path)
    brain = load_nifti(brain_path)[0] if brain_path else None
    lesion = load_nifti(lesion_path)[0] if lesion_path else None
    result = preprocess_volume(image, affine, brain, lesion)
    save_npy_gz(out / f"{name}_slices.npy.gz", result.slices)
    save_npy_gz(out / f"{name}_brain.npy.gz", result.brain)
    if result.lesion is not None:
        save_npy_gz(out / f"{name}_lesion.npy.gz", result.lesion)
    back = slices_to_volume(anomaly_slices(result.slices.shape[0]), result.geometry)
    save_npy_gz(out / f"{name}_back.npy.gz", back.astype(np.float32))
    geometry = result.geometry
    return {"image": image_path.name, "brain": brain_path.name if brain_path else None,
            "lesion": lesion_path.name if lesion_path else None, "clip_value": result.clip_value,
            "input_shape": list(geometry.input_shape), "axes": list(geometry.orientation.axes),
            "flips": list(geometry.orientation.flips), "spacing": list(geometry.spacing),
            "resampled_shape": list(geometry.resampled_shape), "crop_start": list(geometry.crop_start)}


def preprocessing_fixtures(out: Path) -> dict:
    rng = np.random.default_rng(SEED + 3)
    cases = {}

    # 1. Oblique, permuted, flipped and anisotropic; int16 with scl_slope/scl_inter (background becomes
    #    2.0, left out by the brain mask); sform (code 2) preferred over a different qform; lesion mask.
    #    Voxel axes (i, j, k) → world (y flipped, z, x) at 1.3, 2.5 and 0.9 mm.
    shape, spacing = (34, 12, 40), (1.3, 2.5, 0.9)
    values, inside = synthetic_brain(shape, spacing, rng, radii_mm=(21, 14, 17))
    affine = oblique_affine(spacing, (8, -6), (-20, 15, -30), (1, 2, 0), (True, False, False))
    image = nib.Nifti1Image(np.round(values / 0.75).astype(np.int16), affine)
    image.header.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    image.header.set_sform(affine, code=2)
    save_nifti(out / "oblique.nii.gz", image,
               patch=lambda data: struct.pack_into("<ff", data, 112, 0.75, 2.0))
    save_nifti(out / "oblique_brain.nii.gz", nib.Nifti1Image(inside.astype(np.uint8), affine))
    lesion = np.zeros(shape, dtype=np.uint8)
    lesion[14:20, 5:8, 18:25] = 1
    save_nifti(out / "oblique_lesion.nii.gz", nib.Nifti1Image(lesion, affine))
    cases["oblique"] = preprocessing_case(out, "oblique", out / "oblique.nii.gz", out / "oblique_brain.nii.gz",
                                          out / "oblique_lesion.nii.gz")

    # 2. qform only: a 180° turn about z (LPS-like storage) with qfac −1, float32 with NaN and ±inf
    #    voxels, no masks (brain = intensity > 0), a brain 20 mm wide and 180 mm long: the window pads x
    #    and crops y.
    shape, spacing = (20, 180, 6), (1.0, 1.0, 1.5)
    values, inside = synthetic_brain(shape, spacing, rng, centre_fraction=(0.5, 0.45, 0.5), radii_mm=(10.5, 91, 30))
    values = values.astype(np.float32)
    values[3, 50, 2], values[10, 90, 3], values[12, 100, 1] = np.nan, np.inf, -np.inf
    values[15, 60, 4] = -40.0
    image = nib.Nifti1Image(values, None)
    qform = np.diag([-1.0, -1.0, -1.5, 1.0])
    qform[:3, 3] = (10, 80, 4)
    image.header.set_qform(qform, code=1)
    image.header.set_sform(np.eye(4), code=0)
    save_nifti(out / "qform_long.nii", image)
    cases["qform_long"] = preprocessing_case(out, "qform_long", out / "qform_long.nii")

    # 3. A 2-D image of another size than 160×160: one slice at 1 mm in display orientation (the Swift
    #    rule), i.e. the volume image.T[:, :, None] with the affine diag(−1, −1, 1).
    height, width = 150, 200
    row, column = np.mgrid[0:height, 0:width]
    inside = ((row - 70) / 62) ** 2 + ((column - 105) / 85) ** 2 < 1
    gray = np.where(inside, 60 + 40 * np.sin(row / 9) * np.cos(column / 13) + rng.integers(0, 120, (height, width)), 0)
    gray = gray.clip(0, 255).astype(np.uint8)
    Image.fromarray(gray).save(out / "slice_200x150.png")
    intensities = (gray / np.float32(255)).astype(np.float32)
    result = preprocess_volume(intensities.T[:, :, None], np.diag([-1.0, -1.0, 1.0, 1.0]))
    save_npy_gz(out / "slice_200x150_slices.npy.gz", result.slices)
    back = slices_to_volume(anomaly_slices(1), result.geometry)[:, :, 0].T
    save_npy_gz(out / "slice_200x150_back.npy.gz", np.ascontiguousarray(back, dtype=np.float32))
    cases["slice_200x150"] = {"image": "slice_200x150.png", "clip_value": result.clip_value,
                              "crop_start": list(result.geometry.crop_start)}

    # 4. The percentile formula on both interpolation branches (fractional index 0.12 and 0.62).
    percentiles = {}
    for count in (12_345, 12_370):
        values = np.random.default_rng(count).gamma(2.0, 300.0, count).astype(np.float32)
        np.save(out / f"percentile_{count}.npy", values)
        percentiles[f"percentile_{count}.npy"] = preprocess_volume(values.reshape(5, -1, 1), np.eye(4)).clip_value
    return {"cases": cases, "percentiles": percentiles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    index = {}
    for name, build in [("npy", npy_fixtures), ("nifti", nifti_fixtures), ("png", png_fixtures),
                        ("preprocessing", preprocessing_fixtures)]:
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        index[name] = build(folder)
    (args.out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
