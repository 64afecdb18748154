"""A real nginx with the sites of Deploy/nginx/ in front of the real server. Over HTTP (mimood.conf): a large
volume, concurrent slices and a keep-alive sequence all pass through, and X-Request-ID survives the round
trip. Over HTTPS: nginx terminating TLS with client certificates required (mimood-tls.conf), and opening TLS
again to a server that requires nginx's own certificate (mimood-tls-upstream.conf); certificates from
conftest's `pki`. The test changes only what must differ on a test machine: the listen port, the upstream's
address, and the paths of nginx's own files and of the certificates."""
from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import PKI, ROOT, curl, free_port, parity_slice, s_client, write_volume

NGINX = ROOT / "Deploy/nginx"
# Where the sites and snippets/mimood-tls.conf expect the certificates.
CERTIFICATES = "/etc/nginx/tls/"


@contextlib.contextmanager
def running_nginx(folder: Path, site: str, upstream_port: int, certificates: dict[str, str] | None = None):
    """nginx with upstream.conf, request-id.conf and `site` in its http context, as in Deploy/compose.yaml,
    the upstream at `upstream_port`; `certificates` maps the file names in CERTIFICATES to test files.
    Yields nginx's port."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed (scripts/lib/setup.sh installs it)")
    port = free_port()
    (folder / "tls").mkdir(parents=True)
    for name, source in (certificates or {}).items():
        shutil.copy(source, folder / "tls" / name)

    def place(name: str, text: str) -> None:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text.replace(CERTIFICATES, f"{folder}/tls/"))

    upstream = (NGINX / "upstream.conf").read_text()
    assert "server mimood:8080;" in upstream
    place("upstream.conf", upstream.replace("server mimood:8080;", f"server 127.0.0.1:{upstream_port};"))
    place("request-id.conf", (NGINX / "request-id.conf").read_text())
    for snippet in (NGINX / "snippets").glob("*.conf"):
        place(f"snippets/{snippet.name}", snippet.read_text())
    text, listens = re.subn(r"listen \d+( ssl)?;", rf"listen 127.0.0.1:{port}\1;", (NGINX / site).read_text())
    assert listens == 1, site
    place("site.conf", text)
    # As root, nginx's workers would switch to an unprivileged user that cannot write its temp files here.
    user = "user root;" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(f"""
        {user}
        daemon off;
        worker_processes 1;
        pid {folder}/nginx.pid;
        error_log {folder}/error.log;
        events {{ worker_connections 256; }}
        http {{
            access_log {folder}/access.log;
            client_body_temp_path {folder}/client_body;
            proxy_temp_path {folder}/proxy;
            fastcgi_temp_path {folder}/fastcgi;
            uwsgi_temp_path {folder}/uwsgi;
            scgi_temp_path {folder}/scgi;
            include {folder}/upstream.conf;
            include {folder}/request-id.conf;
            include {folder}/site.conf;
        }}""")
    process = subprocess.Popen(["nginx", "-c", str(folder / "nginx.conf"), "-p", str(folder)],
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
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def nginx(tmp_path, serve):
    service = serve()
    with running_nginx(tmp_path, "mimood.conf", service.port) as port:
        yield port, service


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
        service.events("request", where=lambda event: event.get("request_id") == f"slice-{index}")


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


# --- HTTPS ---

def npy_slice(folder: Path) -> Path:
    path = folder / "slice.npy"
    np.save(path, parity_slice())
    return path


def detect(url: str, pki: PKI, body: Path, *arguments: str) -> subprocess.CompletedProcess:
    return curl(f"{url}/detect?preprocessed=true&steps=1", pki, "--data-binary", f"@{body}",
                "-H", "Content-Type: application/x-npy", *arguments)


def test_nginx_terminates_tls_and_serves_only_clients_with_a_certificate(tmp_path, serve, pki):
    service = serve()
    certificates = {"tls.crt": pki.server_pem, "tls.key": pki.server_key, "client-ca.crt": pki.ca_pem}
    with running_nginx(tmp_path / "nginx", "mimood-tls.conf", service.port, certificates) as port:
        url = f"https://127.0.0.1:{port}"
        client = ("--cert", pki.client_pem, "--key", pki.client_key)
        health = curl(f"{url}/healthz", pki, *client)
        assert health.stdout == "200" and json.loads(health.stderr) == {"status": "alive"}, health
        detected = detect(url, pki, npy_slice(tmp_path), *client, "-H", "X-Request-ID: through-tls-1")
        assert detected.stdout == "200", detected.stderr[:500]
        assert json.loads(detected.stderr)["request_id"] == "through-tls-1"

        # nginx itself refuses clients without a certificate from the CA bundle, with its own error pages.
        missing = curl(f"{url}/healthz", pki)
        assert missing.stdout == "400" and "No required SSL certificate" in missing.stderr, missing
        stranger = curl(f"{url}/healthz", pki, "--cert", pki.stranger_pem, "--key", pki.stranger_key)
        assert stranger.stdout == "400" and "SSL certificate error" in stranger.stderr, stranger

        # TLS 1.2 ciphers: the forward-secret AEADs only.
        status, output = s_client(port, "-tls1_2", "-cipher", "AES128-SHA:AES256-GCM-SHA384")
        assert status != 0, output
        status, output = s_client(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-CAfile", pki.ca_pem)
        assert status == 0 and "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in output, output


def test_nginx_opens_tls_again_to_a_server_requiring_its_certificate(tmp_path, serve, pki):
    service = serve("--tls-certificate-file", pki.server_pem, "--tls-key-file", pki.server_key,
                    "--tls-client-ca-file", pki.ca_pem, "--tls-client-auth", "required")
    certificates = {"tls.crt": pki.server_pem, "tls.key": pki.server_key, "mimood-ca.crt": pki.ca_pem,
                    "proxy.crt": pki.proxy_pem, "proxy.key": pki.proxy_key}
    with running_nginx(tmp_path / "nginx", "mimood-tls-upstream.conf", service.port, certificates) as port:
        url = f"https://127.0.0.1:{port}"
        assert curl(f"{url}/healthz", pki).stdout == "200"
        detected = detect(url, pki, npy_slice(tmp_path))
        assert detected.stdout == "200" and json.loads(detected.stderr)["input"]["slices"] == 1, detected.stderr[:500]
        # The service verified nginx's certificate: its log names nginx, the client it sees.
        service.events("request", where=lambda event: event["route"] == "/detect")
        requests = service.events("request")
        assert {event["client_subject"] for event in requests} == {"CN=nginx-proxy,O=Radiology"}, requests

    # nginx verifies the service: with another CA as the trusted one it refuses to send the request on.
    certificates["mimood-ca.crt"] = pki.other_ca_pem
    with running_nginx(tmp_path / "untrusting", "mimood-tls-upstream.conf", service.port, certificates) as port:
        refused = curl(f"https://127.0.0.1:{port}/healthz", pki)
        assert refused.stdout == "502", refused
        assert "upstream SSL certificate verify error" in (tmp_path / "untrusting/error.log").read_text()
