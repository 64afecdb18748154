"""Fairness and memory of `mimood serve` under heavy and hostile clients (docs/service.md, "Performance").

In one run, on the default model and the shipped settings:
  1. a one-slice request's latency alone, and while the costliest request allowed (request_max_slices
     preprocessed slices at the model's R and T, = request_max_cost) runs; target: at most 3x alone; and
     the throughput of 4 concurrent 8-slice requests (slices/s); with --batch-max-costs 64,32, the same
     for each of those batch_max_cost values beside the shipped settings;
  2. the server's peak RSS (VmHWM, reset through /proc/PID/clear_refs before each kind) under 4 concurrent
     clients of each hostile kind, and under 4 concurrent whole volumes; target: under memory_budget_bytes.

Usage: scripts/bench-hardening [--binary PATH] [--json FILE] [--batch-max-costs N,M] [--skip-memory]   (builds the release binary unless --binary)
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import io
import json
import socket
import statistics
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import ROOT, Server  # noqa: E402

MIB = 1 << 20


def rss(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"no {field} for {pid}")


def post(port: int, body: bytes, content_type: str, query: str = "") -> tuple[int, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    started = time.perf_counter()
    connection.request("POST", "/detect" + query, body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, time.perf_counter() - started


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32))
    return buffer.getvalue()


def slices(count: int) -> np.ndarray:
    """Preprocessed slices: a bright disc with texture, in [0, 1]."""
    y, x = np.mgrid[:160, :160]
    disc = ((x - 80) ** 2 + (y - 80) ** 2 < 60 ** 2) * (0.5 + 0.2 * np.sin(x / 5.0) * np.cos(y / 7.0))
    return np.repeat(disc[None].astype(np.float32), count, axis=0)


def volume_nifti() -> bytes:
    """A whole head-sized volume (182 x 218 x 182 at 1 mm, int16, gzip): an ellipsoid with texture."""
    z, y, x = np.mgrid[:182, :218, :182].astype(np.float32)
    inside = ((x - 91) / 70) ** 2 + ((y - 109) / 85) ** 2 + ((z - 91) / 65) ** 2 < 1
    data = (inside * (600 + 200 * np.sin(x / 6) * np.cos(y / 9))).astype(np.int16).transpose(2, 1, 0)
    image = nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0]))
    return gzip.compress(image.to_bytes(), compresslevel=6)


def nifti_bomb(dimensions=(2048, 2048, 1024)) -> bytes:
    """A NIfTI-1 header for dimensions of uint8 voxels (4 GiB), its zeros gzip-compressed to a few MB."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape(dimensions)
    header.set_qform(np.eye(4), code=1)
    header["vox_offset"] = 352
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(header.binaryblock + b"\0" * 4)]
    zeros = b"\0" * (16 * MIB)
    for _ in range(int(np.prod(dimensions)) // len(zeros)):
        parts.append(compressor.compress(zeros))
    parts.append(compressor.flush())
    return b"".join(parts)


def concurrently(count: int, work) -> list:
    results = [None] * count
    def run(index):
        results[index] = work(index)
    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def trickle(port: int, seconds: float) -> str:
    """A head declaring 256 MiB, then a byte a second; what the server answered, if anything."""
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\nContent-Length: 268435456\r\n\r\n")
    client.settimeout(1)
    answer = b""
    ended = time.monotonic() + seconds
    while time.monotonic() < ended:
        try:
            client.sendall(b"\x93")
            answer += client.recv(4096)
            if answer:
                break
        except socket.timeout:
            continue
        except OSError:
            break
    client.close()
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "no answer"


def fairness(binary: Path, settings: list[str], samples: int) -> dict:
    """A one-slice request's latency alone and beside the costliest request allowed (512 slices at R = 4,
    T = 8), and the throughput of 4 concurrent 8-slice requests, on a server started with `settings`."""
    server = Server(binary, settings)
    port = server.port
    one = npy(slices(1)[0])
    try:
        post(port, one, "application/x-npy", "?preprocessed=true")  # first-touch
        alone = [post(port, one, "application/x-npy", "?preprocessed=true")[1] for _ in range(samples)]
        largest = npy(slices(512))
        large_connection = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
        large_connection.request("POST", "/detect?preprocessed=true", body=largest, headers={"Content-Type": "application/x-npy"})
        time.sleep(5)  # decoded and running
        loaded = [post(port, one, "application/x-npy", "?preprocessed=true")[1] for _ in range(samples)]
        large_connection.sock.shutdown(socket.SHUT_RDWR)
        large_connection.close()  # the client leaves: its remaining slices are dropped
        time.sleep(5)
        eight = npy(slices(8))
        started = time.perf_counter()
        statuses = concurrently(4, lambda _: post(port, eight, "application/x-npy", "?preprocessed=true")[0])
        wall = time.perf_counter() - started
    finally:
        server.stop()
    result = {"settings": settings, "latency_alone_s": statistics.median(alone), "latency_beside_largest_s": statistics.median(loaded),
              "throughput_slices_per_s": 32 / wall, "throughput_statuses": sorted(statuses)}
    result["latency_ratio"] = result["latency_beside_largest_s"] / result["latency_alone_s"]
    print(f"{' '.join(settings) or 'shipped settings'}: one slice alone {result['latency_alone_s']:.2f} s; beside the costliest "
          f"allowed request {result['latency_beside_largest_s']:.2f} s ({result['latency_ratio']:.1f}x); 4 x 8 slices at once: "
          f"{result['throughput_slices_per_s']:.2f} slices/s {sorted(statuses)}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(ROOT / ".build/release/mimood"))
    parser.add_argument("--samples", type=int, default=5, help="one-slice requests per latency figure")
    parser.add_argument("--batch-max-costs", default="",
                        help="comma-separated batch_max_cost values whose fairness is measured beside the shipped one")
    parser.add_argument("--skip-memory", action="store_true", help="measure the fairness only")
    parser.add_argument("--json")
    arguments = parser.parse_args()
    binary = Path(arguments.binary)

    # 1. Latency alone, then beside the costliest request allowed; throughput; per batch_max_cost.
    results: dict = {"fairness": [fairness(binary, [], arguments.samples)]}
    for cost in filter(None, arguments.batch_max_costs.split(",")):
        results["fairness"].append(fairness(binary, ["--batch-max-cost", cost.strip()], arguments.samples))
    if arguments.skip_memory:
        if arguments.json:
            Path(arguments.json).write_text(json.dumps(results, indent=2))
        return

    server = Server(binary, [])
    pid, port = server.process.pid, server.port
    results["baseline_rss_bytes"] = rss(pid, "VmRSS")
    one = npy(slices(1)[0])
    try:
        # 2. Peak RSS under 4 concurrent clients of each kind.
        kinds = {
            "nii.gz inflating to 4 GiB": lambda: (nifti_bomb(), "application/x-nifti", ""),
            "legal 128 MB .npy": lambda: (npy(np.random.default_rng(0).random((256, 256, 512), dtype=np.float32)), "application/x-npy", ""),
            "whole volumes (.nii.gz, R = 1, T = 1)": lambda: (volume_nifti(), "application/x-nifti", "?restorations=1&steps=1"),
        }
        peaks = {}
        for kind, make in kinds.items():
            body, content_type, query = make()
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            statuses = concurrently(4, lambda _: post(port, body, content_type, query)[0])
            peaks[kind] = (rss(pid, "VmHWM"), sorted(statuses), len(body))
            print(f"{kind} ({len(body) / MIB:.1f} MiB bodies): statuses {sorted(statuses)}, peak RSS {peaks[kind][0] / MIB:.0f} MiB", flush=True)
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        answers = concurrently(4, lambda _: trickle(port, 90))
        peaks["tricklers (Content-Length 256 MiB, a byte a second)"] = (rss(pid, "VmHWM"), answers, 0)
        print(f"tricklers: answered {answers}, peak RSS {rss(pid, 'VmHWM') / MIB:.0f} MiB", flush=True)
        results["peak_rss_bytes"] = {kind: {"peak": value[0], "statuses": value[1]} for kind, value in peaks.items()}
        status, _ = post(port, one, "application/x-npy", "?preprocessed=true")
        results["normal_request_after"] = status
        print(f"a normal request afterwards: {status}; baseline RSS {results['baseline_rss_bytes'] / MIB:.0f} MiB; "
              f"budget 1024 MiB", flush=True)
    finally:
        server.stop()
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
