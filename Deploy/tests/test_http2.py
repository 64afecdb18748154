"""HTTP/2 on the real `mimood serve` (docs/service.md, "HTTP/2"): over TLS chosen by ALPN, and in cleartext by
prior knowledge, spoken to by curl, nghttp, h2load, httpx and `openssl s_client`; the answers equal HTTP/1.1's
(resets and the drain are in HTTPServerTests' HTTP2ServerTests, with handlers that wait for them); and the
known floods (rapid reset, CONTINUATION, SETTINGS, PING, HPACK bomb), each sent on a raw socket as hand-made
frames, end that connection while the server goes on serving others."""
from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest
from hpack import Decoder
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame

from conftest import parity_slice, tls_settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types and flags (RFC 9113 §6).
HEADERS, RST_STREAM, SETTINGS, PING, CONTINUATION = 0x1, 0x3, 0x4, 0x6, 0x9
END_STREAM, END_HEADERS = 0x1, 0x4
ENHANCE_YOUR_CALM, CANCEL = 0xB, 0x8


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name: str, value: str | bytes) -> bytes:
    """An HPACK field literal without indexing (RFC 7541 §6.2.2), not Huffman-coded: it leaves the dynamic
    table alone, so that blocks can be sent in any number and order."""
    value = value.encode() if isinstance(value, str) else value
    return b"\x00" + hpack_length(len(name)) + name.encode() + hpack_length(len(value)) + value


def hpack_length(length: int) -> bytes:
    """An HPACK string length (7-bit prefix integer, RFC 7541 §5.1), without Huffman coding."""
    if length < 127:
        return bytes([length])
    encoded, length = [127], length - 127
    while length >= 128:
        encoded.append(length % 128 + 128)
        length //= 128
    return bytes(encoded + [length])


def request_block(path: str = "/healthz", method: str = "GET", port: int = 0) -> bytes:
    fields = [(":method", method), (":scheme", "http"), (":path", path), (":authority", f"127.0.0.1:{port}")]
    return b"".join(literal(name, value) for name, value in fields)


class RawConnection:
    """A cleartext HTTP/2 connection by prior knowledge on which the test writes frames by hand."""

    def __init__(self, port: int, receive_buffer: int | None = None):
        self.socket = socket.socket()
        if receive_buffer:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.socket.settimeout(60)
        self.socket.connect(("127.0.0.1", port))
        self.socket.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.buffer = b""

    def send(self, data: bytes) -> bool:
        """False when the server closed the connection while the test was still sending."""
        try:
            self.socket.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def frames_until_closed(self) -> list[Frame]:
        """Every frame the server sends until it closes the connection (a reset counts as closed)."""
        while True:
            try:
                chunk = self.socket.recv(1 << 16)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            self.buffer += chunk
        return self.parse()

    def frames_until(self, predicate) -> list[Frame]:
        while not any(predicate(received) for received in self.parse()):
            chunk = self.socket.recv(1 << 16)
            assert chunk, f"closed before the expected frame; got {self.parse()}"
            self.buffer += chunk
        return self.parse()

    def parse(self) -> list[Frame]:
        frames, data = [], self.buffer
        while len(data) >= 9:
            received, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            received.parse_body(memoryview(data[9:9 + length]))
            frames.append(received)
            data = data[9 + length:]
        return frames

    def close(self) -> None:
        self.socket.close()


def goaway(frames: list[Frame]) -> GoAwayFrame | None:
    return next((received for received in frames if isinstance(received, GoAwayFrame)), None)


def status_of(frames: list[Frame], stream: int) -> int | None:
    decoder = Decoder()
    for received in frames:
        if isinstance(received, HeadersFrame):
            fields = dict(decoder.decode(received.data))  # every block, in order: the decoder's table stays in step
            if received.stream_id == stream:
                return int(fields[":status"])
    return None


def memory_kib(service) -> int:
    status = open(f"/proc/{service.process.pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


def assert_still_serving(service) -> None:
    """A normal request on another connection, over HTTP/2."""
    with httpx.Client(http1=False, http2=True, timeout=60) as client:
        response = client.get(f"{service.url}/healthz")
    assert response.status_code == 200 and response.http_version == "HTTP/2"


@contextlib.contextmanager
def flood_going_on(port: int, flood: bytes):
    """Sends `flood` from another thread again and again, each time on a new connection once the server has
    ended the last, while the block runs; yields the count of floods the server has ended so far."""
    stop, ended = threading.Event(), []

    def repeat():
        while not stop.is_set():
            connection = RawConnection(port)
            connection.send(flood)
            connection.frames_until_closed()
            connection.close()
            ended.append(True)

    thread = threading.Thread(target=repeat, daemon=True)
    thread.start()
    try:
        while not ended:  # one flood ended: the next is under way
            time.sleep(0.01)
        yield ended
    finally:
        stop.set()
        thread.join(timeout=120)


def trusting(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.ca_pem)


def curl(*arguments: str) -> subprocess.CompletedProcess:
    """curl; stdout is what -w writes."""
    return subprocess.run(["curl", "-sS", "--max-time", "60", "-o", "/dev/stderr", *arguments],
                          capture_output=True, text=True)


# --- Real clients ---


def test_curl_chooses_h2_by_alpn_over_tls_and_openssl_sees_it(serve, pki):
    service = serve(*tls_settings(pki))
    answer = curl("--http2", "--cacert", pki.ca_pem, "-w", "%{http_version} %{http_code}", f"{service.url}/healthz")
    assert answer.stdout == "2 200" and json.loads(answer.stderr) == {"status": "alive"}, answer
    # A client that offers only HTTP/1.1 is still served HTTP/1.1.
    answer = curl("--http1.1", "--cacert", pki.ca_pem, "-w", "%{http_version} %{http_code}", f"{service.url}/healthz")
    assert answer.stdout == "1.1 200", answer
    finished = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{service.port}", "-alpn", "h2,http/1.1",
                               "-CAfile", pki.ca_pem], stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=30)
    assert finished.returncode == 0 and "ALPN protocol: h2" in finished.stdout, finished.stdout + finished.stderr


def test_curl_speaks_h2c_by_prior_knowledge_and_http1_stays_on_the_same_port(serve):
    service = serve()
    answer = curl("--http2-prior-knowledge", "-w", "%{http_version} %{http_code}", f"{service.url}/healthz")
    assert answer.stdout == "2 200" and json.loads(answer.stderr) == {"status": "alive"}, answer
    answer = curl("-w", "%{http_version} %{http_code}", f"{service.url}/healthz")
    assert answer.stdout == "1.1 200", answer
    # Our own answers are the same problem+json, with the request id echoed.
    answer = curl("--http2-prior-knowledge", "-w", "%{http_code} %{content_type}", "-H", "X-Request-ID: abc-123",
                  "-D", "/dev/stdout", f"{service.url}/nope")
    assert answer.stdout.endswith("404 application/problem+json"), answer
    assert "x-request-id: abc-123" in answer.stdout.lower()
    assert json.loads(answer.stderr)["status"] == 404


def nghttp(url: str, *arguments: str) -> str:
    finished = subprocess.run(["nghttp", "-nv", *arguments, url], capture_output=True, text=True, timeout=60)
    return finished.stdout + finished.stderr


def test_nghttp_shows_the_settings_and_carries_many_streams_on_one_connection(serve):
    service = serve()
    output = nghttp(f"{service.url}/healthz", "-m", "40")
    assert "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]" in output, output
    assert "[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):32768]" in output
    assert "[SETTINGS_INITIAL_WINDOW_SIZE(0x04):1048576]" in output
    assert output.count(":status: 200") == 40 and output.count("Connected") == 1, output
    # nghttp sends its 40 requests before it reads the server's SETTINGS: past the limit, streams are refused.
    limited = serve("--http2-max-concurrent-streams", "16")
    output = nghttp(f"{limited.url}/healthz", "-m", "40")
    assert "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):16]" in output
    assert output.count(":status: 200") == 16 and output.count("error_code=REFUSED_STREAM") == 24, output


def test_h2load_requests_all_succeed(serve):
    service = serve()
    finished = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "16", f"{service.url}/healthz"],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed, 0 errored" in finished.stdout, finished.stdout
    assert "status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx" in finished.stdout, finished.stdout
    assert "Application protocol: h2c" in finished.stdout


def test_httpx_detects_over_h2_with_the_answers_of_http1(serve, pki, tmp_path):
    service = serve(*tls_settings(pki))
    volume = tmp_path / "slice.npy"
    np.save(volume, parity_slice())
    body = volume.read_bytes()
    url = f"{service.url}/detect?preprocessed=true&steps=1&seed=7"
    npy = {"Content-Type": "application/x-npy", "X-Request-ID": "same-for-both"}
    answers = {}
    for version in ("HTTP/1.1", "HTTP/2"):
        with httpx.Client(http1=version == "HTTP/1.1", http2=version == "HTTP/2", verify=trusting(pki), timeout=120) as client:
            detected = client.post(url, content=body, headers=npy)
            bad = client.post(url, content=b"not an image", headers=npy)
            metrics = client.get(f"{service.url}/metrics", headers={"Accept-Encoding": "gzip"})
        assert detected.http_version == bad.http_version == version
        assert detected.status_code == 200, detected.text
        assert bad.headers["content-type"] == "application/problem+json"
        assert metrics.status_code == 200 and metrics.headers["content-encoding"] == "gzip"
        result = detected.json()
        del result["timings"]  # how long each stage took: the only part that may differ
        answers[version] = (result, bad.status_code, bad.json())
    assert answers["HTTP/2"] == answers["HTTP/1.1"]
    assert 400 <= answers["HTTP/2"][1] < 500

    metrics = httpx.get(f"{service.url}/metrics", verify=trusting(pki)).text
    assert 'route="/detect",method="POST",status="200",protocol="h2"} 1' in metrics, metrics
    assert 'route="/detect",method="POST",status="200",protocol="http/1.1"} 1' in metrics, metrics


def test_a_body_over_the_limit_and_an_unknown_method_get_the_http1_answers_per_stream(serve):
    service = serve("--max-body-bytes", "1000")
    with httpx.Client(http1=False, http2=True, timeout=60) as client:
        too_large = client.post(f"{service.url}/detect", content=b"x" * 5000, headers={"Content-Type": "application/x-npy"})
        not_allowed = client.post(f"{service.url}/healthz", content=b"{}")
        healthy = client.get(f"{service.url}/healthz")
    assert too_large.status_code == 413 and too_large.json()["detail"] == "the body exceeds 1000 bytes"
    assert not_allowed.status_code == 405 and not_allowed.headers["allow"] == "GET, HEAD"
    assert healthy.status_code == 200


# --- Floods: each ends its connection, and the server goes on serving ---


def test_rapid_reset_flood_ends_the_connection_with_enhance_your_calm(serve):
    service = serve()
    before = memory_kib(service)
    connection = RawConnection(service.port)
    block = request_block("/healthz", port=service.port)
    flood = b"".join(frame(HEADERS, END_HEADERS | END_STREAM, stream, block) + frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL))
                     for stream in range(1, 2 * 3000, 2))
    connection.send(flood)
    received = connection.frames_until_closed()
    assert goaway(received) is not None and goaway(received).error_code == ENHANCE_YOUR_CALM, received[-3:]
    with flood_going_on(service.port, flood):
        assert_still_serving(service)
    assert_still_serving(service)
    assert memory_kib(service) - before < 64 * 1024


def test_continuation_flood_ends_the_connection(serve):
    service = serve()
    connection = RawConnection(service.port)
    block = request_block("/healthz", port=service.port)
    # A header block that never ends: each CONTINUATION adds another field.
    flood = frame(HEADERS, 0, 1, block) + b"".join(
        frame(CONTINUATION, 0, 1, literal(f"x-filler-{index}", "y" * 100)) for index in range(2000))
    connection.send(flood)
    received = connection.frames_until_closed()
    assert goaway(received) is not None and goaway(received).error_code != 0, received[-3:]
    assert status_of(received, 1) is None
    with flood_going_on(service.port, flood):
        assert_still_serving(service)
    assert_still_serving(service)


@pytest.mark.parametrize("kind", ["SETTINGS", "PING"])
def test_a_control_frame_flood_from_a_client_that_does_not_read_ends_the_connection(serve, kind):
    service = serve()
    before = memory_kib(service)
    # The client's receive buffer is small and never read: the acknowledgements pile up on the server's side.
    connection = RawConnection(service.port, receive_buffer=4096)
    one = frame(SETTINGS, 0, 0, struct.pack(">HI", 0x3, 100)) if kind == "SETTINGS" else frame(PING, 0, 0, b"12345678")
    finished = threading.Event()
    closed = []

    def flood():
        for _ in range(200):
            if not connection.send(one * 10_000):
                closed.append(True)
                break
        finished.set()

    threading.Thread(target=flood, daemon=True).start()
    assert_still_serving(service)  # while the flood goes on
    assert finished.wait(timeout=300)
    if not closed:  # every byte went out: the end shows when reading
        connection.frames_until_closed()
    assert_still_serving(service)
    assert memory_kib(service) - before < 64 * 1024


def test_an_hpack_bomb_is_refused_with_431_and_the_connection_goes_on(serve):
    service = serve()
    connection = RawConnection(service.port)
    # One 4000-byte field goes into the dynamic table, then is referenced by its one-byte index 2000 times:
    # 20 KiB of header block that would decode to 8 MB.
    name, value = b"x-bomb", b"z" * 4000
    insert = bytes([0x40, len(name)]) + name + hpack_length(len(value)) + value  # literal with incremental indexing
    block = request_block("/healthz", port=service.port) + insert + bytes([0x80 | 62]) * 2000
    # The block in a HEADERS and a CONTINUATION frame (16 KiB is the largest frame before SETTINGS say more).
    connection.send(frame(HEADERS, END_STREAM, 1, block[:16_000]) + frame(CONTINUATION, END_HEADERS, 1, block[16_000:]))
    received = connection.frames_until(lambda received: received.stream_id == 1 and "END_STREAM" in received.flags)
    assert status_of(received, 1) == 431
    # The same connection still serves: the decoder's table stayed in step.
    connection.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, request_block("/healthz", port=service.port)))
    received = connection.frames_until(lambda received: received.stream_id == 3 and "END_STREAM" in received.flags)
    assert status_of(received, 3) == 200
    assert_still_serving(service)

