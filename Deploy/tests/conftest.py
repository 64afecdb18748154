"""The real `mimood serve` for the deployment tests: the binary `swift build` made, on a loopback port the
system picks, with the parity checkpoint (tiny, so requests take a fraction of a second)."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT / "Tests/Fixtures/parity"


class Service:
    def __init__(self, *settings: str):
        binary = Path(os.environ.get("MIMOOD_BINARY", ROOT / ".build/debug/mimood"))
        if not binary.exists():
            pytest.fail(f"no {binary}: build it with `swift build` first (scripts/test does)")
        self.process = subprocess.Popen(
            [str(binary), "serve", "--port", "0", "--model", str(PARITY / "checkpoint"), *settings],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.port = None
        self.scheme = "http"
        for line in self.process.stdout:
            self.log.append(line)
            event = json.loads(line)
            if event["message"] == "listening":
                self.port = event["port"]
                self.scheme = event.get("scheme", "http")
            if event["message"] == "warm":
                break
        assert self.port, "".join(self.log)
        threading.Thread(target=lambda: self.log.extend(self.process.stdout), daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=60)


@pytest.fixture
def serve():
    started: list[Service] = []

    def start(*settings: str) -> Service:
        started.append(Service(*settings))
        return started[-1]

    yield start
    for service in started:
        if service.process.poll() is None:
            service.stop()


def parity_slice() -> np.ndarray:
    """The parity input's first slice, [160, 160] in [0, 1], rows anterior to posterior."""
    return np.load(PARITY / "input.npy")[0, 0]


def write_volume(path: Path, thickness: int, affine: np.ndarray) -> Path:
    """The parity slice's brain, `thickness` slices thick, as a NIfTI volume with this affine."""
    volume = np.repeat((parity_slice().T * 1000).astype(np.float32)[:, :, None], thickness, axis=2)
    nib.save(nib.Nifti1Image(volume, affine), path)
    return path
