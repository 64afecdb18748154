"""A real nginx with Deploy/nginx/mimood.conf in front of the real server: a large volume, concurrent
slices and a keep-alive sequence all pass through, and X-Request-ID survives the round trip. The test
changes only what must differ on a test machine: the listen port, the upstream's address, and the paths
of nginx's own files."""
from __future__ import annotations

import concurrent.futures
import gzip
import http.client
import io
import os
import shutil
import socket
import subprocess
import time

import nibabel as nib
import numpy as np
import pytest

from conftest import ROOT, parity_slice, write_volume


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def nginx(tmp_path, serve):
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed (scripts/lib/setup.sh installs it)")
    service = serve()
    port = free_port()
    site = (ROOT / "Deploy/nginx/mimood.conf").read_text()
    assert "listen 80;" in site
    upstream = (ROOT / "Deploy/nginx/upstream.conf").read_text()
    assert "server mimood:8080;" in upstream
    (tmp_path / "mimood.conf").write_text(site.replace("listen 80;", f"listen 127.0.0.1:{port};"))
    (tmp_path / "upstream.conf").write_text(upstream.replace("server mimood:8080;", f"server 127.0.0.1:{service.port};"))
    # As root, nginx's workers would switch to an unprivileged user that cannot write its temp files here.
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(f"""
        {user}
        daemon off;
        worker_processes 1;
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/error.log;
        events {{ worker_connections 256; }}
        http {{
            access_log {tmp_path}/access.log;
            client_body_temp_path {tmp_path}/client_body;
            proxy_temp_path {tmp_path}/proxy;
            fastcgi_temp_path {tmp_path}/fastcgi;
            uwsgi_temp_path {tmp_path}/uwsgi;
            scgi_temp_path {tmp_path}/scgi;
            include {tmp_path}/upstream.conf;
            include {tmp_path}/mimood.conf;
        }}""")
    process = subprocess.Popen(["nginx", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
    yield port, service
    process.terminate()
    process.wait(timeout=10)


def post(connection: http.client.HTTPConnection, body: bytes, content_type: str, query: str = "",
         headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    connection.request("POST", "/detect" + query, body=body,
                       headers={"Content-Type": content_type, **(headers or {})})
    return connection.getresponse()


def test_a_large_volume_goes_through_and_comes_back_on_its_grid(nginx, tmp_path):
    port, _ = nginx
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-80, -80, -30]
    # 60 slices at 1 mm with noise (so that gzip cannot shrink it): a .nii.gz of several megabytes.
    path = write_volume(tmp_path / "large.nii.gz", 60, affine)
    image = nib.load(path)
    noisy = image.get_fdata().astype(np.float32) + np.random.default_rng(0).normal(0, 5, image.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(noisy, affine), path)
    body = path.read_bytes()
    assert len(body) > 5_000_000
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    response = post(connection, body, "application/x-nifti", "?restorations=1&steps=1",
                    {"Accept": "application/x-nifti", "X-Request-ID": "large-volume-1"})
    payload = response.read()
    assert response.status == 200, payload[:500]
    assert response.getheader("X-Request-ID") == "large-volume-1"
    result = nib.Nifti1Image.from_bytes(gzip.decompress(payload))
    assert result.shape == image.shape
    assert np.allclose(result.affine, affine)


def test_concurrent_slices_all_succeed_with_their_own_request_ids(nginx):
    port, service = nginx
    buffer = io.BytesIO()
    np.save(buffer, parity_slice())
    body = buffer.getvalue()

    def one(index: int) -> tuple[int, str | None]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        response = post(connection, body, "application/x-npy", f"?preprocessed=true&steps=1&seed={index}",
                        {"X-Request-ID": f"slice-{index}"})
        response.read()
        return response.status, response.getheader("X-Request-ID")

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(8)))
    assert answers == [(200, f"slice-{index}") for index in range(8)]
    # The ids reached the service too: it logs them.
    for index in range(8):
        assert any(f'"request_id":"slice-{index}"' in line for line in service.log)


def test_a_keep_alive_sequence_uses_one_client_connection(nginx):
    port, _ = nginx
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    buffer = io.BytesIO()
    np.save(buffer, parity_slice())
    for index in range(4):
        response = post(connection, buffer.getvalue(), "application/x-npy", "?preprocessed=true&steps=1")
        response.read()
        assert response.status == 200
        connection.request("GET", "/healthz")
        health = connection.getresponse()
        health.read()
        assert health.status == 200
    # nginx made up an id for requests that came without one, and the service echoed it.
    connection.request("GET", "/readyz")
    ready = connection.getresponse()
    ready.read()
    assert ready.status == 200 and len(ready.getheader("X-Request-ID") or "") == 32
    assert connection.sock is not None, "nginx closed the keep-alive connection"


def test_a_problem_from_the_service_reaches_the_client_unchanged(nginx):
    port, _ = nginx
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    response = post(connection, b"not an image at all", "text/plain")
    body = response.read()
    assert response.status == 415
    assert response.getheader("Content-Type") == "application/problem+json"
    assert b"Content-Type" in body
