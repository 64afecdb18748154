#!/usr/bin/env python3
"""Send every NIfTI volume in a folder to a MIM-OOD server and write the anomaly maps it returns.

For each `<name>.nii` or `<name>.nii.gz` in IN, POSTs it to URL/detect asking for `application/x-nifti`
and writes `<name>_anomaly.nii.gz` (on the input's grid, with its affine) to OUT. A 503 (queue full,
server warming up or draining) is retried after the server's Retry-After; connection failures are
retried with backoff. Standard library only, Python 3.9+.

    python3 pacs_client.py --url http://mimood.example:8080 --in /data/incoming --out /data/maps \\
        [--workers 2] [--api-key KEY] [--param restorations=4 --param steps=8]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path


def stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def detect(url: str, volume: Path, params: dict[str, str], api_key: str | None, attempts: int,
           log) -> bytes:
    """The .nii.gz anomaly map of one volume; raises RuntimeError with the server's problem detail."""
    body = volume.read_bytes()
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    request_id = f"pacs-{uuid.uuid4().hex[:16]}"
    headers = {"Content-Type": "application/x-nifti", "Accept": "application/x-nifti", "X-Request-ID": request_id}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url.rstrip("/") + "/detect" + query, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=900) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            if error.code == 503 and attempt < attempts:
                wait = float(error.headers.get("Retry-After", "5"))
                log(f"{volume.name}: 503 ({request_id}), retrying in {wait:g} s")
                time.sleep(wait)
                continue
            raise RuntimeError(f"HTTP {error.code} ({request_id}): {detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if attempt == attempts:
                raise RuntimeError(f"cannot reach {url}: {error}") from None
            wait = min(60.0, 2.0 ** attempt)
            log(f"{volume.name}: {error}; retrying in {wait:g} s")
            time.sleep(wait)
    raise RuntimeError("no attempt left")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="The server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--in", dest="inputs", type=Path, required=True, help="Folder of .nii / .nii.gz volumes")
    parser.add_argument("--out", type=Path, required=True, help="Folder for the <name>_anomaly.nii.gz maps")
    parser.add_argument("--workers", type=int, default=2, help="Volumes in flight at once (default 2)")
    parser.add_argument("--api-key", help="Sent as 'Authorization: Bearer KEY' when the server needs one")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="A /detect query parameter (restorations, steps, threshold, seed, method)")
    parser.add_argument("--attempts", type=int, default=10, help="Tries per volume (default 10)")
    arguments = parser.parse_args(argv)

    params = dict(item.split("=", 1) for item in arguments.param)
    volumes = sorted(p for p in arguments.inputs.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    if not volumes:
        print(f"no .nii or .nii.gz files in {arguments.inputs}", file=sys.stderr)
        return 1
    arguments.out.mkdir(parents=True, exist_ok=True)

    def log(message: str):
        print(message, file=sys.stderr, flush=True)

    def one(volume: Path) -> str:
        started = time.monotonic()
        anomaly_map = detect(arguments.url, volume, params, arguments.api_key, arguments.attempts, log)
        target = arguments.out / f"{stem(volume)}_anomaly.nii.gz"
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(anomaly_map)
        partial.replace(target)  # never a half-written map under the final name
        return f"{volume.name} -> {target.name} ({time.monotonic() - started:.1f} s)"

    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=arguments.workers) as pool:
        futures = {pool.submit(one, volume): volume for volume in volumes}
        for future in concurrent.futures.as_completed(futures):
            try:
                log(future.result())
            except RuntimeError as error:
                failures += 1
                log(f"{futures[future].name}: FAILED: {error}")
    log(f"{len(volumes) - failures} of {len(volumes)} volumes done")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
