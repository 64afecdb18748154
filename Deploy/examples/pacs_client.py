#!/usr/bin/env python3
"""Send volumes to a MIM-OOD server and keep what it finds: a folder of NIfTI volumes, or series of a PACS
over DICOMweb, whose results go back into the PACS.

Folder mode: for each `<name>.nii` or `<name>.nii.gz` in IN, POSTs it to URL/detect asking for
`application/x-nifti` and writes `<name>_anomaly.nii.gz` (on the input's grid, with its affine) to OUT.

    python3 pacs_client.py --url http://mimood.example:8080 --in /data/incoming --out /data/maps \\
        [--workers 2] [--api-key KEY] [--param restorations=4 --param steps=8]

DICOMweb mode: for every MR series of each `--study UID` (found by QIDO-RS, `studies/UID/series?Modality=MR`)
and each `--series STUDY/SERIES`, fetches the whole series by WADO-RS as
`multipart/related; type="application/dicom"`, posts that body unchanged to URL/detect asking for the same
type, and stores the answer by STOW-RS to DICOMWEB/studies: a Parametric Map (the float anomaly map) and a
Segmentation (the anomalies at the model's threshold), on the source geometry, filed in the source study, so
that a viewer shows them next to the series. A series counts as done when the PACS answers 200 with every
object stored. `--out DIR` also writes them as DIR/<series UID>/parametric-map.dcm and segmentation.dcm.

    python3 pacs_client.py --url http://mimood.example:8080 --dicomweb http://pacs.example:8042/dicom-web \\
        --study 1.2.826.0.1.3680043.8.498.1 [--series STUDY/SERIES ...] [--out /data/results]

Over HTTPS (`--url https://…`), `--cacert FILE` verifies the server (and an https PACS) against that CA
bundle instead of the system's, and `--cert FILE --key FILE` presents a client certificate where the
server requires one (mutual TLS, `tls_client_auth`).

In both modes a 503 (queue full, server warming up or draining) is retried after the server's Retry-After,
and connection failures, to the server or the PACS, are retried with backoff. Patient data is never
printed: a series is named by its UIDs. The exit status is 1 when any volume or series failed. Standard
library only, Python 3.9+.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import email.message
import json
import ssl
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

DICOM_SERIES = 'multipart/related; type="application/dicom"'
# The objects /detect returns for a DICOM series, by SOP Class UID, and their names under --out.
OBJECT_NAMES = {"1.2.840.10008.5.1.4.1.1.30": "parametric-map.dcm", "1.2.840.10008.5.1.4.1.1.66.4": "segmentation.dcm"}
TIMEOUT_SECONDS = 900
# Value representations whose explicit-VR element has a 4-byte length (after 2 reserved bytes).
LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def call(request: urllib.request.Request, what: str, attempts: int, log) -> tuple[int, email.message.Message, bytes]:
    """The status, headers and body of a 2xx answer. A 503 is retried after its Retry-After and a connection
    failure with backoff; a TLS failure and any other error raise RuntimeError with what went wrong."""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            if error.code == 503 and attempt < attempts:
                wait = float(error.headers.get("Retry-After", "5"))
                log(f"503 from {what}, retrying in {wait:g} s")
                time.sleep(wait)
                continue
            raise RuntimeError(f"HTTP {error.code} from {what}: {detail}") from None
        except (urllib.error.URLError, ssl.SSLError, ConnectionError, TimeoutError) as error:
            # A certificate either side refuses does not get better by retrying (TLS 1.3 reports the
            # server's refusal of ours on the first read, not in the handshake).
            reason = getattr(error, "reason", error)
            if isinstance(reason, ssl.SSLError):
                raise RuntimeError(f"TLS with {what} at {request.full_url} failed: {reason}") from None
            if attempt == attempts:
                raise RuntimeError(f"cannot reach {what} at {request.full_url}: {error}") from None
            wait = min(60.0, 2.0 ** attempt)
            log(f"{what}: {error}; retrying in {wait:g} s")
            time.sleep(wait)
    raise RuntimeError("no attempt left")


def detect(url: str, body: bytes, content_type: str, accept: str, params: dict[str, str], api_key: str | None,
           attempts: int, log) -> tuple[email.message.Message, bytes]:
    """The server's answer to one input, as `accept`; raises RuntimeError with the server's problem detail."""
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    request_id = f"pacs-{uuid.uuid4().hex[:16]}"
    headers = {"Content-Type": content_type, "Accept": accept, "X-Request-ID": request_id}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url.rstrip("/") + "/detect" + query, data=body, headers=headers, method="POST")
    _, answer_headers, answer = call(request, f"/detect ({request_id})", attempts, log)
    return answer_headers, answer


def media_type(content_type: str) -> email.message.Message:
    """A Content-Type header parsed, for its type and parameters (quoted or not)."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    return header


def multipart_parts(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of a multipart/related answer's parts."""
    boundary = media_type(content_type).get_param("boundary")
    if not boundary:
        raise RuntimeError(f"no boundary in '{content_type}'")
    # Every delimiter follows a CRLF, the first one's belonging to the (empty) preamble.
    pieces = (b"\r\n" + body).split(b"\r\n--" + boundary.encode())
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):   # the close delimiter
            return parts
        headers_end = piece.find(b"\r\n\r\n")
        if headers_end < 0:
            raise RuntimeError("a multipart part without a header end")
        parts.append(piece[headers_end + 4:])
    raise RuntimeError("a multipart body without its close delimiter")


def sop_class_uid(dicom_file: bytes) -> str | None:
    """The Media Storage SOP Class UID of a DICOM file's meta header (always explicit VR little endian)."""
    if dicom_file[128:132] != b"DICM":
        return None
    offset = 132
    while offset + 8 <= len(dicom_file):
        group, element = struct.unpack_from("<HH", dicom_file, offset)
        if group != 0x0002:
            return None
        if dicom_file[offset + 4:offset + 6] in LONG_LENGTH_VRS:
            length, value_at = struct.unpack_from("<I", dicom_file, offset + 8)[0], offset + 12
        else:
            length, value_at = struct.unpack_from("<H", dicom_file, offset + 6)[0], offset + 8
        if element == 0x0002:
            return dicom_file[value_at:value_at + length].rstrip(b"\0 ").decode("ascii", "replace")
        offset = value_at + length
    return None


def write_atomically(target: Path, data: bytes) -> None:
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)  # never a half-written file under the final name


def mr_series(dicomweb: str, study: str, attempts: int, log) -> list[str]:
    """The Series Instance UIDs of a study's MR series, by QIDO-RS."""
    request = urllib.request.Request(f"{dicomweb}/studies/{urllib.parse.quote(study)}/series?Modality=MR",
                                     headers={"Accept": "application/dicom+json"})
    _, _, body = call(request, "QIDO-RS", attempts, log)
    try:
        matches = json.loads(body) if body.strip() else []   # no match: 204 without a body
        return [match["0020000E"]["Value"][0] for match in matches]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise RuntimeError(f"QIDO-RS answered no list of series with their UIDs ({error!r})") from None


def stored_count(status: int, body: bytes, expected: int) -> int:
    """How many objects a STOW-RS answer says were stored; RuntimeError unless all `expected` were."""
    try:
        answer = json.loads(body) if body.strip() else {}
        failed = answer.get("00081198", {}).get("Value", [])             # Failed SOP Sequence
        referenced = answer.get("00081199", {}).get("Value", [])         # Referenced SOP Sequence
        reasons = [item["00081197"]["Value"][0] for item in failed + referenced
                   if item.get("00081197", {}).get("Value")]               # Failure Reason
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise RuntimeError(f"STOW-RS answered {status} without a readable DICOM JSON report ({error!r})") from None
    stored = len(referenced) - sum(1 for item in referenced if "00081197" in item)
    if status != 200 or failed or reasons or stored != expected:
        raise RuntimeError(f"STOW-RS answered {status}: {stored} of {expected} objects stored, "
                           f"{len(failed)} failed (failure reasons: {reasons or 'none given'})")
    return stored


def process_series(url: str, dicomweb: str, study: str, series: str, params: dict[str, str], api_key: str | None,
                   attempts: int, out: Path | None, log) -> str:
    """Fetches one series, has the server detect, and stores the returned objects in the PACS."""
    started = time.monotonic()
    location = f"{dicomweb}/studies/{urllib.parse.quote(study)}/series/{urllib.parse.quote(series)}"
    _, source_headers, source = call(urllib.request.Request(location, headers={"Accept": DICOM_SERIES}),
                                     "WADO-RS", attempts, log)
    # The body and its Content-Type, boundary included, go to the server as the PACS sent them.
    answer_headers, answer = detect(url, source, source_headers["Content-Type"], DICOM_SERIES, params, api_key,
                                    attempts, log)
    answer_type = answer_headers.get("Content-Type", "")
    if media_type(answer_type).get_content_type() != "multipart/related":
        raise RuntimeError(f"/detect answered '{answer_type}', not {DICOM_SERIES}")
    objects = multipart_parts(answer, answer_type)
    if out:
        folder = out / series
        folder.mkdir(parents=True, exist_ok=True)
        for index, dicom_file in enumerate(objects):
            write_atomically(folder / OBJECT_NAMES.get(sop_class_uid(dicom_file), f"object-{index}.dcm"), dicom_file)
    store = urllib.request.Request(f"{dicomweb}/studies", data=answer, method="POST",
                                   headers={"Content-Type": answer_type, "Accept": "application/dicom+json"})
    status, _, stow_answer = call(store, "STOW-RS", attempts, log)
    stored = stored_count(status, stow_answer, len(objects))
    return f"{stored} object{'' if stored == 1 else 's'} stored ({time.monotonic() - started:.1f} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="The server, e.g. http://127.0.0.1:8080")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--in", dest="inputs", type=Path, help="Folder of .nii / .nii.gz volumes")
    source.add_argument("--dicomweb", metavar="ROOT", help="A PACS's DICOMweb root, e.g. http://pacs:8042/dicom-web")
    parser.add_argument("--study", action="append", default=[], metavar="UID",
                        help="With --dicomweb: every MR series of this study (repeatable)")
    parser.add_argument("--series", action="append", default=[], metavar="STUDY/SERIES",
                        help="With --dicomweb: this series, by its Study and Series Instance UIDs (repeatable)")
    parser.add_argument("--out", type=Path, help="Folder for the <name>_anomaly.nii.gz maps (needed with --in); "
                        "with --dicomweb, where to write the stored objects as well")
    parser.add_argument("--workers", type=int, default=2, help="Volumes or series in flight at once (default 2)")
    parser.add_argument("--api-key", help="Sent as 'Authorization: Bearer KEY' when the server needs one")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="A /detect query parameter (restorations, steps, threshold, seed, method)")
    parser.add_argument("--attempts", type=int, default=10, help="Tries per request (default 10)")
    parser.add_argument("--cacert", type=Path, help="CA bundle (PEM) that https servers are verified against")
    parser.add_argument("--cert", type=Path, help="Client certificate (PEM) for servers that require one")
    parser.add_argument("--key", type=Path, help="The client certificate's private key (PEM), if not in --cert")
    arguments = parser.parse_args(argv)
    if arguments.key and not arguments.cert:
        parser.error("--key goes with --cert")
    if arguments.cacert or arguments.cert:
        context = ssl.create_default_context(cafile=arguments.cacert)
        try:
            if arguments.cert:
                context.load_cert_chain(arguments.cert, arguments.key)
        except (OSError, ssl.SSLError) as error:
            parser.error(f"cannot load the client certificate: {error}")
        # Every request of this process goes through urlopen: one opener carries the TLS settings to all.
        urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)))
    if arguments.inputs and not arguments.out:
        parser.error("--in needs --out")
    if arguments.dicomweb and not (arguments.study or arguments.series):
        parser.error("--dicomweb needs --study or --series")
    if arguments.inputs and (arguments.study or arguments.series):
        parser.error("--study and --series go with --dicomweb")
    if any("/" not in item for item in arguments.series):
        parser.error("--series takes STUDY/SERIES: the Study and the Series Instance UID")
    params = dict(item.split("=", 1) for item in arguments.param)

    def log(message: str):
        print(message, file=sys.stderr, flush=True)

    def labelled(label: str):
        return lambda message: log(f"{label}: {message}")

    unlisted = 0   # studies whose series could not be listed
    jobs = {}      # label → the work that makes its line of the report
    if arguments.inputs:
        volumes = sorted(p for p in arguments.inputs.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        if not volumes:
            log(f"no .nii or .nii.gz files in {arguments.inputs}")
            return 1
        arguments.out.mkdir(parents=True, exist_ok=True)

        def one_volume(volume: Path) -> str:
            started = time.monotonic()
            _, anomaly_map = detect(arguments.url, volume.read_bytes(), "application/x-nifti", "application/x-nifti",
                                    params, arguments.api_key, arguments.attempts, labelled(volume.name))
            target = arguments.out / f"{stem(volume)}_anomaly.nii.gz"
            write_atomically(target, anomaly_map)
            return f"wrote {target.name} ({time.monotonic() - started:.1f} s)"

        for volume in volumes:
            jobs[volume.name] = lambda volume=volume: one_volume(volume)
        unit = "volumes"
    else:
        dicomweb = arguments.dicomweb.rstrip("/")
        wanted = [tuple(item.split("/", 1)) for item in arguments.series]
        for study in arguments.study:
            try:
                found = mr_series(dicomweb, study, arguments.attempts, labelled(f"study {study}"))
            except RuntimeError as error:
                unlisted += 1
                log(f"study {study}: FAILED: {error}")
                continue
            if not found:
                unlisted += 1
                log(f"study {study}: FAILED: no MR series")
            wanted += [(study, series) for series in found if (study, series) not in wanted]
        for study, series in wanted:
            label = f"series {study}/{series}"
            jobs[label] = lambda study=study, series=series, label=label: process_series(
                arguments.url, dicomweb, study, series, params, arguments.api_key, arguments.attempts, arguments.out,
                labelled(label))
        unit = "series"

    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=arguments.workers) as pool:
        futures = {pool.submit(work): label for label, work in jobs.items()}
        for future in concurrent.futures.as_completed(futures):
            try:
                log(f"{futures[future]}: {future.result()}")
            except RuntimeError as error:
                failures += 1
                log(f"{futures[future]}: FAILED: {error}")
    log(f"{len(jobs) - failures} of {len(jobs)} {unit} done")
    return 1 if failures or unlisted or not jobs else 0


if __name__ == "__main__":
    raise SystemExit(main())
