"""The real `mimood serve` for the deployment tests: the binary `swift build` made, on a loopback port the
system picks, with the parity checkpoint (tiny, so requests take a fraction of a second); a real PACS,
Debian's Orthanc with its DICOMweb plugin, on loopback ports with its own temporary storage; and test
certificates made by `openssl req` for the TLS tests."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT / "Tests/Fixtures/parity"


def serve_command(*settings: str) -> list[str]:
    """`mimood serve` on a port the system picks, with the parity checkpoint and these settings."""
    binary = Path(os.environ.get("MIMOOD_BINARY", ROOT / ".build/debug/mimood"))
    if not binary.exists():
        pytest.fail(f"no {binary}: build it with `swift build` first (scripts/test does)")
    return [str(binary), "serve", "--port", "0", "--model", str(PARITY / "checkpoint"), *settings]


class Service:
    def __init__(self, *settings: str):
        self.process = subprocess.Popen(
            serve_command(*settings),
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.port = None
        self.scheme = "http"
        self.health_port = None   # the health listener's (health_port), plain HTTP
        for line in self.process.stdout:
            self.log.append(line)
            event = json.loads(line)
            if event["message"] == "listening" and event["listener"] == "health":
                self.health_port = event["port"]
            elif event["message"] == "listening":
                self.port = event["port"]
                self.scheme = event.get("scheme", "http")
            if event["message"] == "warm":
                break
        assert self.port, "".join(self.log)
        threading.Thread(target=lambda: self.log.extend(self.process.stdout), daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def events(self, message: str, where=lambda event: True, count: int = 1, timeout: float = 10) -> list[dict]:
        """The logged events with this message that `where` accepts, once there are `count` of them: the
        service writes a request's line before its answer, but the line still has to pass the pipe and the
        reader thread, which a client holding the answer can outrun (one CI run did)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [event for event in map(json.loads, list(self.log)) if event["message"] == message and where(event)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} '{message}' events in the log:\n{''.join(self.log)}")
            time.sleep(0.05)

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


def openssl(*arguments: str, cwd: Path) -> None:
    subprocess.run(["openssl", *arguments], cwd=cwd, check=True, capture_output=True)


def issue(directory: Path, name: str, subject: str, ca: str, extensions: str = "") -> None:
    """A P-256 key and a certificate for `subject`, signed by the CA `ca` (its .pem and .key)."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject,
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)
    signing = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
               "-days", "2", "-out", f"{name}.pem"]
    if extensions:
        (directory / f"{name}.ext").write_text(extensions + "\n")
        signing += ["-extfile", f"{name}.ext"]
    openssl(*signing, cwd=directory)


@dataclass
class PKI:
    directory: Path

    def __getattr__(self, name: str) -> str:
        """`pki.client_key` is the path of client.key."""
        stem, extension = name.rsplit("_", 1)
        return str(self.directory / f"{stem}.{extension}")


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PKI:
    """Two CAs; server certificates for 127.0.0.1, localhost and mimood (the upstream's name in
    Deploy/nginx/upstream.conf; a second certificate, for the reload); client certificates from the first CA
    (a PACS gateway's and nginx's as a proxy) and one from the other."""
    directory = tmp_path_factory.mktemp("pki")
    for ca, subject in (("ca", "/CN=MIM-OOD Test CA"), ("other_ca", "/CN=Another CA")):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", subject, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=directory)
    san = "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:mimood"
    issue(directory, "server", "/CN=mimood-first", "ca", san)
    issue(directory, "server2", "/CN=mimood-reloaded", "ca", san)
    issue(directory, "client", "/O=Radiology/CN=pacs-gateway", "ca")
    issue(directory, "proxy", "/O=Radiology/CN=nginx-proxy", "ca")
    issue(directory, "stranger", "/O=Elsewhere/CN=stranger", "other_ca")
    return PKI(directory)


def curl(url: str, pki: PKI, *arguments: str) -> subprocess.CompletedProcess:
    """curl trusting the test CA; stdout ends with the status code (000 when there was no response)."""
    return subprocess.run(["curl", "-sS", "--max-time", "60", "--cacert", pki.ca_pem, "-o", "/dev/stderr",
                           "-w", "%{http_code}", *arguments, url], capture_output=True, text=True)


def s_client(port: int, *arguments: str) -> tuple[int, str]:
    """The output is decoded with replacement: after ALPN h2 it may hold the server's first HTTP/2 frames."""
    finished = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *arguments],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=30)
    return finished.returncode, finished.stdout + finished.stderr


def tls_settings(pki: PKI, *more: str) -> list[str]:
    """`mimood serve` settings for HTTPS with the test server certificate."""
    return ["--tls-certificate-file", pki.server_pem, "--tls-key-file", pki.server_key, *more]


ORTHANC = Path("/usr/sbin/Orthanc")
ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Orthanc:
    """Orthanc serving REST and DICOMweb on a loopback port, its database and files in `folder`, no DICOM
    network service, no authentication (nothing but this machine can reach it)."""

    def __init__(self, folder: Path):
        for needed in (ORTHANC, ORTHANC_DICOMWEB_PLUGIN):
            if not needed.exists():
                pytest.fail(f"no {needed}: install Debian's orthanc and orthanc-dicomweb (scripts/test does)")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = {
            "Name": "mimood-test-pacs",
            "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
            "HttpPort": self.port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": False, "SaveJobs": False,
            "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
        self.log_path = folder / "orthanc.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([str(ORTHANC), str(folder / "orthanc.json")], stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"Orthanc exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                self.rest("/system")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"Orthanc did not answer /system in 60 s:\n{self.log_path.read_text()[-3000:]}")
                time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicom-web"

    def rest(self, path: str, body: bytes | None = None, content_type: str = "application/dicom"):
        """GET (or POST `body` to) Orthanc's REST API: the answer as JSON."""
        request = urllib.request.Request(self.url + path, data=body,
                                         headers={"Content-Type": content_type} if body is not None else {})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def file(self, instance: str) -> bytes:
        """An instance's DICOM file as Orthanc stored it."""
        with urllib.request.urlopen(f"{self.url}/instances/{instance}/file", timeout=60) as response:
            return response.read()

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=60)


@pytest.fixture
def orthanc(tmp_path):
    pacs = Orthanc(tmp_path / "orthanc")
    yield pacs
    if pacs.process.poll() is None:
        pacs.stop()


def parity_slice() -> np.ndarray:
    """The parity input's first slice, [160, 160] in [0, 1], rows anterior to posterior."""
    return np.load(PARITY / "input.npy")[0, 0]


def write_volume(path: Path, thickness: int, affine: np.ndarray) -> Path:
    """The parity slice's brain, `thickness` slices thick, as a NIfTI volume with this affine."""
    volume = np.repeat((parity_slice().T * 1000).astype(np.float32)[:, :, None], thickness, axis=2)
    nib.save(nib.Nifti1Image(volume, affine), path)
    return path

