"""Deploy/examples/pacs_client.py against the real server on a folder of volumes: every map is written on
its input's grid with its affine, and 503s from a full queue are retried after Retry-After."""
from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np

from conftest import ROOT, write_volume

CLIENT = ROOT / "Deploy/examples/pacs_client.py"


def volumes(folder, count: int) -> dict[str, np.ndarray]:
    folder.mkdir()
    affines = {}
    for index in range(count):
        affine = np.diag([1.0 + 0.1 * index, 1.0, 2.0, 1.0])
        affine[:3, 3] = [-90 + index, -80, -6]
        name = f"subject-{index}.nii" + (".gz" if index % 2 else "")
        write_volume(folder / name, 3, affine)
        affines[name.split(".")[0]] = affine
    return affines


def test_every_volume_of_a_folder_gets_its_map_with_its_affine(serve, tmp_path):
    service = serve()
    affines = volumes(tmp_path / "in", 3)
    (tmp_path / "in" / "notes.txt").write_text("not a volume: skipped")
    run = subprocess.run([sys.executable, str(CLIENT), "--url", service.url, "--in", str(tmp_path / "in"),
                          "--out", str(tmp_path / "out"), "--param", "restorations=1", "--param", "steps=1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "3 of 3 volumes done" in run.stderr
    for name, affine in affines.items():
        result = nib.load(tmp_path / "out" / f"{name}_anomaly.nii.gz")
        source = nib.load(next((tmp_path / "in").glob(f"{name}.nii*")))
        assert result.shape == source.shape
        assert np.allclose(result.affine, affine)
    assert not list((tmp_path / "out").glob("*.part"))


def test_a_full_queue_is_retried_after_retry_after(serve, tmp_path):
    # One slice per batch and room for 5 waiting: two 5-slice volumes at once cannot both be queued.
    service = serve("--batch-max-slices", "1", "--queue-max-slices", "5", "--request-max-slices", "5",
                    "--retry-after-seconds", "1")
    volumes(tmp_path / "in", 3)
    run = subprocess.run([sys.executable, str(CLIENT), "--url", service.url, "--in", str(tmp_path / "in"),
                          "--out", str(tmp_path / "out"), "--workers", "3", "--param", "restorations=4",
                          "--param", "steps=4", "--attempts", "300"],   # a 1 s wait each: a slow machine's volume fits
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "503" in run.stderr and "retrying in 1 s" in run.stderr, run.stderr
    assert "3 of 3 volumes done" in run.stderr
    assert len(list((tmp_path / "out").glob("*_anomaly.nii.gz"))) == 3


def test_a_refused_volume_is_reported_and_the_exit_status_says_so(serve, tmp_path):
    service = serve()
    folder = tmp_path / "in"
    volumes(folder, 1)
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    run = subprocess.run([sys.executable, str(CLIENT), "--url", service.url, "--in", str(folder),
                          "--out", str(tmp_path / "out"), "--param", "steps=1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "broken.nii.gz: FAILED: HTTP 400" in run.stderr
    assert "1 of 2 volumes done" in run.stderr
