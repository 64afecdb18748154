"""Throughput and latency of `mimood serve` (docs/service.md, "Performance").

Single slices at concurrency 1, 4 and 16 on three servers started side by side: the shipped settings
(batching, each batch's slices spread over the cores), batching with each batch run as one engine call
(batch_parallelism = kernels), and no batching (batch_max_slices = 1). The three are measured in
turn, round after round, so that a change in the machine's load falls on all of them; each figure is the
median over the rounds. Client i posts slice i of 16 distinct axial slices of one subject. Then the same
16 slices through the engine offline (`mimood bench --slice`, 16 jobs per call, as the service's batches
at concurrency 16 hold), and the service's rate at concurrency 16 as a share of it; then the time for one
volume of 160 axial slices on the shipped settings. Each client thread keeps one HTTP/1.1 connection
alive and sends its requests one after another; latency is measured at the client, from sending the
request to reading the whole response.

Usage: scripts/bench-serve [--rounds N] [--requests-per-client N] [--json FILE]   (builds the release binary first)
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """`mimood serve` on a loopback port the system picks, until stopped."""

    def __init__(self, binary: Path, settings: list[str]):
        self.process = subprocess.Popen([str(binary), "serve", "--port", "0", *settings], cwd=ROOT,
                                        stdout=subprocess.PIPE, text=True)
        self.port = None
        for line in self.process.stdout:
            event = json.loads(line)
            if event["message"] == "listening":
                self.port = event["port"]
            if event["message"] == "warm":
                break
        if self.port is None:
            raise SystemExit("the server did not start")
        # Drain the log so that the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=120)


def post(connection: http.client.HTTPConnection, body: bytes, content_type: str) -> tuple[float, bytes]:
    """Seconds from sending the request to reading the whole response, and the response body."""
    started = time.perf_counter()
    connection.request("POST", "/detect", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}: {payload[:300]!r}")
    return time.perf_counter() - started, payload


def run_clients(port: int, concurrency: int, requests_per_client: int, bodies: list[bytes], content_type: str) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()

    def client(index: int):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for _ in range(requests_per_client):
            latency, _ = post(connection, bodies[index % len(bodies)], content_type)
            with lock:
                latencies.append(latency)
        connection.close()

    threads = [threading.Thread(target=client, args=(index,)) for index in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": len(latencies), "wall_s": wall,
            "throughput_per_s": len(latencies) / wall,
            "p50_s": float(np.percentile(latencies, 50)), "p99_s": float(np.percentile(latencies, 99))}


def inputs(folder: Path) -> tuple[list[Path], bytes, int]:
    """A synthetic test subject (docs/synthetic-data.md): its 16 middle axial slices, each a 2-D .npy file in
    display orientation, and the volume cut to its central 160 axial slices as .nii.gz."""
    subprocess.run([sys.executable, "-m", "mimood_train.synthetic", "--out", str(folder), "--train", "0", "--val", "0",
                    "--val-anomalous", "0", "--test-anomalous", "1", "--seed", "0"], check=True, cwd=ROOT / "Training",
                   stdout=subprocess.DEVNULL)
    image = nib.load(next((folder / "test_anomalous").glob("*_t2.nii.gz")))
    volume = np.asarray(image.dataobj, dtype=np.float32)
    depth = volume.shape[2]
    start = max(0, (depth - 160) // 2)
    cut = volume[:, :, start:start + 160]
    affine = image.affine.copy()
    affine[:3, 3] += affine[:3, 2] * start
    slices = []
    for offset in range(-8, 8):
        path = folder / f"slice_{offset + 8:02d}.npy"
        np.save(path, np.ascontiguousarray(volume[:, :, depth // 2 + offset].T))
        slices.append(path)
    nib.save(nib.Nifti1Image(cut, affine), folder / "volume.nii.gz")
    return slices, (folder / "volume.nii.gz").read_bytes(), cut.shape[2]


def offline_rate(binary: Path, slices: list[Path], rounds: int) -> float:
    """The engine's slices/s on the same slices, without HTTP and the queue: `mimood bench --slice`."""
    arguments = [str(binary), "bench", "--json", "--batch", str(len(slices)), "--repeats", str(max(rounds, 1))]
    for path in slices:
        arguments += ["--slice", str(path)]
    report = json.loads(subprocess.run(arguments, check=True, cwd=ROOT, capture_output=True, text=True).stdout)
    return report["slices_per_second"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="Rounds over the three servers (default 2).")
    parser.add_argument("--requests-per-client", type=int, default=0,
                        help="Requests each client sends (default: 8 at concurrency 1, 4 at 4, 2 at 16).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--binary", type=Path, default=ROOT / ".build/release/mimood")
    arguments = parser.parse_args()

    scratch = tempfile.TemporaryDirectory()
    slice_files, volume_nii, volume_slices = inputs(Path(scratch.name))
    slice_bodies = [path.read_bytes() for path in slice_files]
    modes = {"on (slices over cores)": [], "on (batch as one call)": ["--batch-parallelism", "kernels"],
             "off": ["--batch-max-slices", "1"]}
    servers = {mode: Server(arguments.binary, settings) for mode, settings in modes.items()}
    results = {"machine": {"cpus": os.cpu_count(), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
                           "load_average_before": os.getloadavg()},
               "rounds": arguments.rounds, "slice": [], "engine_offline": None, "volume": None}
    try:
        for concurrency, default_requests in ((1, 8), (4, 4), (16, 2)):
            runs = {mode: [] for mode in modes}
            for _ in range(arguments.rounds):
                for mode, server in servers.items():
                    runs[mode].append(run_clients(server.port, concurrency,
                                                  arguments.requests_per_client or default_requests,
                                                  slice_bodies, "application/x-npy"))
            for mode, rows in runs.items():
                row = {key: float(np.median([r[key] for r in rows])) for key in ("throughput_per_s", "p50_s", "p99_s")}
                row.update(batching=mode, concurrency=concurrency, requests=sum(r["requests"] for r in rows))
                results["slice"].append(row)
                print(f"batching {mode:24} concurrency {concurrency:2}: {row['throughput_per_s']:.2f} slices/s, "
                      f"p50 {row['p50_s']:.2f} s, p99 {row['p99_s']:.2f} s", file=sys.stderr)
        engine = offline_rate(arguments.binary, slice_files, arguments.rounds)
        served = next(row for row in results["slice"] if row["concurrency"] == 16 and row["batching"] == "on (slices over cores)")
        results["engine_offline"] = {"slices_per_s": engine, "service_share": served["throughput_per_s"] / engine}
        print(f"engine offline, the same 16 slices: {engine:.2f} slices/s; the service at concurrency 16 reaches "
              f"{100 * served['throughput_per_s'] / engine:.0f} % of it", file=sys.stderr)
        connection = http.client.HTTPConnection("127.0.0.1", servers["on (slices over cores)"].port, timeout=3600)
        seconds, payload = post(connection, volume_nii, "application/x-nifti")
        model_slices = json.loads(payload)["input"]["slices"]
        results["volume"] = {"axial_slices": volume_slices, "model_slices": model_slices, "seconds": seconds}
        print(f"one volume of {volume_slices} axial slices ({model_slices} model slices): {seconds:.1f} s", file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
        scratch.cleanup()
    results["machine"]["load_average_after"] = os.getloadavg()

    print("| batching | concurrency | requests | throughput (slices/s) | p50 latency (s) | p99 latency (s) |")
    print("|---|---|---|---|---|---|")
    for row in results["slice"]:
        print(f"| {row['batching']} | {row['concurrency']} | {row['requests']} | {row['throughput_per_s']:.2f} | "
              f"{row['p50_s']:.2f} | {row['p99_s']:.2f} |")
    offline = results["engine_offline"]
    print(f"\nThe engine offline on the same 16 slices (`mimood bench --slice`, 16 per call): {offline['slices_per_s']:.2f} slices/s; "
          f"the service at concurrency 16 with the shipped settings: {100 * offline['service_share']:.0f} % of it.")
    volume = results["volume"]
    print(f"\nOne volume, {volume['axial_slices']} axial slices ({volume['model_slices']} model slices), batching on: "
          f"{volume['seconds']:.1f} s")
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
