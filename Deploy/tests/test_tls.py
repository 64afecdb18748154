"""HTTPS on the real `mimood serve` (docs/service.md, "TLS"): certificates made by `openssl req` (conftest's
`pki`), spoken to by curl, `openssl s_client` and Python's ssl module. The handshake rules (TLS 1.2 and 1.3
only, ALPN h2 then http/1.1, the intermediate ciphers), client certificates (none, optional, required), the handshake
timeout, reload on SIGHUP, bad files refused at start, and the HTTP/1.1 raw-socket edge cases over both
transports."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import PARITY, PKI, ROOT, curl, parity_slice, s_client, tls_settings

CLIENT_SUBJECT = "CN=pacs-gateway,O=Radiology"


def handshake_counts(service, pki: PKI) -> dict[str, float]:
    metrics = curl(f"{service.url}/metrics", pki).stderr
    counts = {}
    for line in metrics.splitlines():
        if line.startswith("mimood_tls_handshakes_total{"):
            counts[line.split('result="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return counts


def test_curl_gets_healthz_and_posts_detect_over_https(serve, pki, tmp_path):
    service = serve(*tls_settings(pki))
    assert service.url.startswith("https://")
    health = curl(f"{service.url}/healthz", pki)
    assert health.stdout == "200" and json.loads(health.stderr) == {"status": "alive"}
    assert curl(f"https://localhost:{service.port}/readyz", pki).stdout == "200"

    volume = tmp_path / "slice.npy"
    np.save(volume, parity_slice())
    detected = curl(f"{service.url}/detect?preprocessed=true&steps=1", pki, "--data-binary", f"@{volume}",
                    "-H", "Content-Type: application/x-npy")
    assert detected.stdout == "200", detected.stderr
    assert "anomaly_score" in detected.stderr or "slices" in detected.stderr

    # The port speaks TLS only: a plain request gets no HTTP answer, and the server goes on.
    plain = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://127.0.0.1:{service.port}/healthz"], capture_output=True, text=True)
    assert plain.stdout == "000"
    assert curl(f"{service.url}/healthz", pki).stdout == "200"
    service.events("tls handshake failed")


def test_openssl_s_client_handshake_rules(serve, pki):
    service = serve(*tls_settings(pki))
    for version in ("-tls1", "-tls1_1"):
        status, output = s_client(service.port, version)
        assert status != 0 and "Cipher is (NONE)" in output, output
    for version, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        status, output = s_client(service.port, version, "-alpn", "http/1.1", "-CAfile", pki.ca_pem)
        assert status == 0, output
        assert f"New, {name}, Cipher is" in output and "ALPN protocol: http/1.1" in output, output
        assert "Verify return code: 0 (ok)" in output
    # ALPN prefers h2 (test_http2 speaks it); without HTTP/2, http/1.1 is chosen and an h2-only client is
    # refused (no_application_protocol).
    status, output = s_client(service.port, "-alpn", "h2,http/1.1")
    assert status == 0 and "ALPN protocol: h2" in output, output
    http1_only = serve(*tls_settings(pki, "--http2", "off"))
    status, output = s_client(http1_only.port, "-alpn", "h2,http/1.1")
    assert status == 0 and "ALPN protocol: http/1.1" in output, output
    status, output = s_client(http1_only.port, "-alpn", "h2")
    assert status != 0 and "no application protocol" in output, output
    status, output = s_client(service.port, "-tls1_3")
    assert status == 0 and "No ALPN negotiated" in output, output
    # TLS 1.2 without forward secrecy (RSA key exchange, CBC) is not in the intermediate list.
    status, output = s_client(service.port, "-tls1_2", "-cipher", "AES128-SHA:AES256-GCM-SHA384")
    assert status != 0, output
    status, output = s_client(service.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")
    assert status == 0 and "Cipher is ECDHE-ECDSA-CHACHA20-POLY1305" in output, output
    counts = handshake_counts(service, pki)
    assert counts["refused"] >= 3 and counts["completed"] >= 5, counts


def test_required_client_certificates(serve, pki):
    service = serve(*tls_settings(pki, "--tls-client-ca-file", pki.ca_pem, "--tls-client-auth", "required"))
    good = curl(f"{service.url}/v1/model", pki, "--cert", pki.client_pem, "--key", pki.client_key)
    assert good.stdout == "200", good.stderr
    request = service.events("request", where=lambda event: event["route"] == "/v1/model")
    assert request[-1]["client_subject"] == CLIENT_SUBJECT

    for tls_version in ("--tlsv1.2", "--tlsv1.3"):
        wrong = curl(f"{service.url}/healthz", pki, tls_version, "--cert", pki.stranger_pem, "--key", pki.stranger_key)
        assert wrong.returncode != 0 and wrong.stdout == "000", wrong
        missing = curl(f"{service.url}/healthz", pki, tls_version)
        assert missing.returncode != 0 and missing.stdout == "000", missing
    # s_client sees the same: the handshake fails without a certificate, and with one from another CA.
    status, output = s_client(service.port, "-tls1_2", "-cert", pki.stranger_pem, "-key", pki.stranger_key)
    assert status != 0, output
    service.events("tls handshake failed", where=lambda event: "certificate" in event["reason"])
    assert curl(f"{service.url}/healthz", pki, "--cert", pki.client_pem, "--key", pki.client_key).stdout == "200"


def test_the_pacs_client_verifies_the_server_and_presents_its_certificate(serve, pki, tmp_path):
    import sys
    import nibabel as nib
    service = serve(*tls_settings(pki, "--tls-client-ca-file", pki.ca_pem, "--tls-client-auth", "required"))
    (tmp_path / "in").mkdir()
    volume = np.repeat((parity_slice().T * 1000).astype(np.float32)[:, :, None], 2, axis=2)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "in" / "head.nii.gz")
    client = [sys.executable, str(ROOT / "Deploy/examples/pacs_client.py"), "--url", service.url, "--in", str(tmp_path / "in"),
              "--out", str(tmp_path / "out"), "--param", "restorations=1", "--param", "steps=1"]
    done = subprocess.run(client + ["--cacert", pki.ca_pem, "--cert", pki.client_pem, "--key", pki.client_key],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert nib.load(tmp_path / "out" / "head_anomaly.nii.gz").shape == volume.shape
    assert service.events("request", where=lambda event: event["route"] == "/detect")[-1]["client_subject"] == CLIENT_SUBJECT
    # Without the test CA the client refuses the server, at once: no retry makes a certificate good.
    untrusted = subprocess.run(client + ["--cert", pki.client_pem, "--key", pki.client_key], capture_output=True, text=True, timeout=300)
    assert untrusted.returncode == 1 and "FAILED: TLS with" in untrusted.stderr and "Traceback" not in untrusted.stderr, untrusted.stderr
    # Without a client certificate the server refuses it: TLS 1.3 tells the client on its first read, or the
    # client sees the connection reset while it still sends the body; one attempt either way.
    refused = subprocess.run(client + ["--cacert", pki.ca_pem, "--attempts", "1"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "FAILED" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr


def test_optional_client_certificates(serve, pki):
    service = serve(*tls_settings(pki, "--tls-client-ca-file", pki.ca_pem, "--tls-client-auth", "optional"))
    anonymous = curl(f"{service.url}/v1/model", pki)
    assert anonymous.stdout == "200", anonymous.stderr
    known = curl(f"{service.url}/v1/model", pki, "--cert", pki.client_pem, "--key", pki.client_key)
    assert known.stdout == "200", known.stderr
    requests = service.events("request", where=lambda event: event["route"] == "/v1/model", count=2)
    assert "client_subject" not in requests[0] and requests[1]["client_subject"] == CLIENT_SUBJECT
    # A certificate that is presented must verify.
    stranger = curl(f"{service.url}/v1/model", pki, "--cert", pki.stranger_pem, "--key", pki.stranger_key)
    assert stranger.returncode != 0 and stranger.stdout == "000"


def test_a_client_that_never_finishes_its_handshake_is_closed(serve, pki):
    service = serve(*tls_settings(pki, "--tls-handshake-timeout-seconds", "1"))
    silent = socket.create_connection(("127.0.0.1", service.port))
    partial = socket.create_connection(("127.0.0.1", service.port))
    partial.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))  # the start of a ClientHello
    started = time.monotonic()
    assert curl(f"{service.url}/healthz", pki).stdout == "200"  # served meanwhile
    for stalled in (silent, partial):
        stalled.settimeout(5)
        assert stalled.recv(100) == b""
    assert 0.8 < time.monotonic() - started < 3
    assert handshake_counts(service, pki).get("timed_out") == 2
    assert curl(f"{service.url}/healthz", pki).stdout == "200"


def peer_common_name(port: int, cafile: str) -> str:
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return dict(item[0] for item in tls.getpeercert()["subject"])["commonName"]


def test_sighup_reloads_the_certificate_and_keeps_open_connections(serve, pki, tmp_path):
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pki.server_pem, certificate)
    shutil.copy(pki.server_key, key)
    service = serve("--tls-certificate-file", str(certificate), "--tls-key-file", str(key))
    assert peer_common_name(service.port, pki.ca_pem) == "mimood-first"
    kept = Client(service.port, pki)
    kept.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert kept.response()[0] == 200

    shutil.copy(pki.server2_pem, certificate)
    shutil.copy(pki.server2_key, key)
    service.process.send_signal(signal.SIGHUP)
    service.events("tls reloaded")
    assert peer_common_name(service.port, pki.ca_pem) == "mimood-reloaded"
    kept.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert kept.response()[0] == 200
    assert dict(item[0] for item in kept.socket.getpeercert()["subject"])["commonName"] == "mimood-first"

    # Files that cannot be used leave the current certificate in place.
    key.write_text("not a key\n")
    service.process.send_signal(signal.SIGHUP)
    failure = service.events("tls reload failed")[-1]
    assert failure["setting"] == "tls_key_file"
    assert peer_common_name(service.port, pki.ca_pem) == "mimood-reloaded"
    assert service.process.poll() is None


@pytest.mark.parametrize("settings, setting", [
    (["--tls-certificate-file", "/nonexistent/cert.pem", "--tls-key-file", "KEY"], "tls_certificate_file"),
    (["--tls-certificate-file", "KEY", "--tls-key-file", "KEY"], "tls_certificate_file"),
    (["--tls-certificate-file", "CERT", "--tls-key-file", "CERT"], "tls_key_file"),
    (["--tls-certificate-file", "CERT", "--tls-key-file", "OTHER_KEY"], "tls_key_file"),
    (["--tls-certificate-file", "CERT", "--tls-key-file", "KEY", "--tls-client-auth", "required",
      "--tls-client-ca-file", "/nonexistent/ca.pem"], "tls_client_ca_file"),
    (["--tls-certificate-file", "CERT", "--tls-key-file", "KEY", "--tls-client-auth", "required"], "tls_client_ca_file"),
    (["--tls-certificate-file", "CERT"], "tls_key_file"),
    (["--tls-certificate-file", "CERT", "--tls-key-file", "KEY", "--tls-client-auth", "sometimes"], "tls_client_auth"),
])
def test_bad_tls_files_and_settings_are_refused_at_start(pki, settings, setting):
    names = {"CERT": pki.server_pem, "KEY": pki.server_key, "OTHER_KEY": pki.client_key}
    binary = Path(os.environ.get("MIMOOD_BINARY", ROOT / ".build/debug/mimood"))
    finished = subprocess.run([str(binary), "serve", "--port", "0", "--model", str(PARITY / "checkpoint"),
                               *[names.get(value, value) for value in settings]],
                              capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1, finished  # an error exit, not a crash
    assert setting in finished.stderr, finished.stderr
    assert "listening" not in finished.stdout


class Client:
    """One connection, plain or TLS, for byte-exact requests."""

    def __init__(self, port: int, pki: PKI | None, timeout: float = 10):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if pki is not None:
            context = ssl.create_default_context(cafile=pki.ca_pem)
            raw = context.wrap_socket(raw, server_hostname="localhost")
        self.socket = raw
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def _more(self) -> bytes:
        try:
            return self.socket.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            return b""

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            more = self._more()
            assert more, f"closed before a response: {self.buffer!r}"
            self.buffer += more
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
        length = 0 if status == 100 else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            more = self._more()
            assert more, "closed inside a body"
            self.buffer += more
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed_by_peer(self) -> bool:
        try:
            while self._more():
                pass
            return True
        except (TimeoutError, socket.timeout):
            return False


@pytest.fixture(params=["http", "https"])
def transport(request, serve, pki):
    """Starts the service with the given settings on the parameter's transport; gives it and a client maker."""
    def start(*settings: str):
        service = serve(*(tls_settings(pki) if request.param == "https" else []), *settings)
        return service, lambda **options: Client(service.port, pki if request.param == "https" else None, **options)
    return start


def test_pipelined_requests_are_answered_in_order(transport):
    service, connect = transport()
    client = connect()
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert [client.response()[0] for _ in range(3)] == [200, 404, 200]


def test_a_chunked_body_with_100_continue_is_read(transport):
    service, connect = transport()
    buffer = io.BytesIO()
    np.save(buffer, parity_slice())
    body = buffer.getvalue()
    client = connect(timeout=60)
    client.send(b"POST /detect?preprocessed=true&steps=1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-npy\r\n"
                b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    assert client.response()[0] == 100
    for start in range(0, len(body), 40_000):
        piece = body[start:start + 40_000]
        client.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    client.send(b"0\r\n\r\n")
    status, headers, answer = client.response()
    assert status == 200, answer
    assert headers["content-type"] == "application/json"


def test_a_body_over_the_limit_gets_413_and_the_connection_closes(transport):
    service, connect = transport("--max-body-bytes", "100000")
    declared = connect()
    declared.send(b"POST /detect HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-npy\r\nContent-Length: 500000\r\n\r\n")
    status, headers, _ = declared.response()
    assert status == 413 and headers["connection"] == "close"
    assert declared.closed_by_peer()
    chunked = connect()
    chunked.send(b"POST /detect HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-npy\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(4):
        chunked.send(b"8000\r\n" + b"a" * 0x8000 + b"\r\n")
    assert chunked.response()[0] == 413


def test_a_slow_head_gets_408_and_is_closed(transport):
    service, connect = transport("--header-timeout-seconds", "1")
    client = connect()
    started = time.monotonic()
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t")
    status, headers, _ = client.response()
    assert status == 408 and headers["connection"] == "close"
    assert client.closed_by_peer()
    assert time.monotonic() - started < 3
    again = connect()
    again.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert again.response()[0] == 200


class PiecewiseTLSClient:
    """TLS through memory buffers, so that the test chooses how its bytes reach the socket: records cut into
    small pieces sent apart, and records left unfinished."""

    def __init__(self, port: int, pki: PKI, piece: int):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = ssl.create_default_context(cafile=pki.ca_pem)
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.piece = piece
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.receive()
        self.flush()

    def flush(self, up_to: int | None = None) -> None:
        """Sends what TLS has written, `piece` bytes at a time with a pause between, so that the server's
        reads end inside records; `up_to` sends only that many bytes and drops the rest."""
        data = self.outgoing.read()[:up_to]
        for start in range(0, len(data), self.piece):
            self.socket.sendall(data[start:start + self.piece])
            time.sleep(0.002)

    def receive(self) -> bool:
        data = self.socket.recv(65536)
        self.incoming.write(data) if data else self.incoming.write_eof()
        return bool(data)

    def plaintext(self) -> bytes:
        """The next plaintext the server sends; b"" once it has closed."""
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                if not self.receive():
                    return b""

    def response_head(self) -> bytes:
        plain = b""
        while b"\r\n\r\n" not in plain:
            more = self.plaintext()
            assert more, f"closed before a response: {plain!r}"
            plain += more
        return plain.split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize("piece", [1, 7])
def test_records_cut_into_pieces_make_a_handshake_and_a_request(serve, pki, piece):
    service = serve(*tls_settings(pki))
    client = PiecewiseTLSClient(service.port, pki, piece)
    # Two records, both cut: the request line in one, the rest of the head in the next.
    client.tls.write(b"GET /healthz HTTP/1.1\r\n")
    client.tls.write(b"Host: t\r\n\r\n")
    client.flush()
    assert client.response_head().startswith(b"HTTP/1.1 200 ")


def test_an_unfinished_record_counts_against_the_header_timeout(serve, pki):
    service = serve(*tls_settings(pki, "--header-timeout-seconds", "1"))
    client = PiecewiseTLSClient(service.port, pki, 64)
    client.tls.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    client.flush(up_to=20)  # the record's header and part of its payload: no plaintext can come of it
    started = time.monotonic()
    # No byte of a request was read, so the connection closes without an answer, as a silent plain one does.
    assert client.plaintext() == b""
    assert 0.5 < time.monotonic() - started < 5
