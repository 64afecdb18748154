"""The health listener (health_port, docs/service.md "TLS") on the real `mimood serve` with client certificates
required on its main port: plain curl gets the probes and the metrics there and nothing else, the main port
still refuses a client without a certificate, and the image's HEALTHCHECK script probes it."""
from __future__ import annotations

import json
import os
import socket
import subprocess

import numpy as np
import pytest

from conftest import ROOT, curl, free_port, parity_slice, serve_command, tls_settings

HEALTHCHECK = ROOT / "scripts/container/healthcheck"


@pytest.fixture
def mutual_tls_service(serve, pki):
    return serve(*tls_settings(pki, "--tls-client-ca-file", pki.ca_pem, "--tls-client-auth", "required",
                               "--health-port", str(free_port())))


def plain_curl(url: str, *arguments: str) -> tuple[str, bytes, dict[str, str]]:
    """curl without TLS options: the status ("000" when there was no HTTP answer), the body and the headers."""
    finished = subprocess.run(["curl", "-sS", "--max-time", "30", "-D", "/dev/stderr",
                               "-w", "\n%{http_code}", *arguments, url], capture_output=True)
    body, _, status = finished.stdout.rpartition(b"\n")
    head = finished.stderr.decode(errors="replace").split("\r\n\r\n")[0].split("\r\n")[1:]
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in head)}
    return status.decode(), body, headers


def test_the_health_port_serves_probes_and_metrics_in_plain_http_and_nothing_else(mutual_tls_service, pki, tmp_path):
    service = mutual_tls_service
    health = f"http://127.0.0.1:{service.health_port}"
    status, body, _ = plain_curl(f"{health}/healthz")
    assert (status, json.loads(body)) == ("200", {"status": "alive"})
    status, body, _ = plain_curl(f"{health}/readyz")   # the fixture waited for the warm-up
    assert (status, json.loads(body)) == ("200", {"status": "ready"})
    status, body, headers = plain_curl(f"{health}/metrics")
    assert status == "200" and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE mimood_http_requests_total counter" in body.decode() and "mimood_ready 1.0" in body.decode()

    # /detect is not there: it cannot be reached without the client certificate the main port requires.
    volume = tmp_path / "slice.npy"
    np.save(volume, parity_slice())
    status, body, headers = plain_curl(f"{health}/detect?preprocessed=true&steps=1", "--data-binary", f"@{volume}",
                                       "-H", "Content-Type: application/x-npy")
    assert status == "404" and headers["content-type"] == "application/problem+json", body
    assert plain_curl(f"{health}/v1/model")[0] == "404"
    # Plain HTTP only: a TLS client gets no answer there.
    assert curl(f"https://127.0.0.1:{service.health_port}/healthz", pki).stdout == "000"

    # The main port is as strict as without a health port.
    assert curl(f"{service.url}/healthz", pki).stdout == "000"
    detected = curl(f"{service.url}/detect?preprocessed=true&steps=1", pki, "--cert", pki.client_pem, "--key", pki.client_key,
                    "--data-binary", f"@{volume}", "-H", "Content-Type: application/x-npy")
    assert detected.stdout == "200", detected.stderr
    assert service.stop() == 0


def healthcheck(**environment: str) -> int:
    """The image's HEALTHCHECK script with these MIMOOD_* variables and no others."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("MIMOOD_")}
    return subprocess.run([str(HEALTHCHECK)], env={**clean, **environment}, timeout=30).returncode


def test_the_container_healthcheck_probes_the_health_port_when_one_is_set(mutual_tls_service, serve):
    main, health = str(mutual_tls_service.port), str(mutual_tls_service.health_port)
    assert healthcheck(MIMOOD_PORT=main, MIMOOD_HEALTH_PORT=health) == 0
    # Without a health port (unset or 0) it speaks plain HTTP to the TLS port, and fails.
    assert healthcheck(MIMOOD_PORT=main) != 0
    assert healthcheck(MIMOOD_PORT=main, MIMOOD_HEALTH_PORT="0") != 0
    # A plain server without a health port is probed on its port, as before.
    plain = serve()
    assert healthcheck(MIMOOD_PORT=str(plain.port)) == 0


def test_a_health_port_in_use_stops_the_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = subprocess.run(serve_command("--health-port", str(port)), capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1, finished   # an error exit, not a crash
    assert f"health listener (health_port {port})" in finished.stderr, finished.stderr
    assert "listening" not in finished.stdout
