"""openapi.yaml is a valid OpenAPI 3.1 document, and the real server's responses — every endpoint, every
error status the contract names — are what it says: a declared status, a declared content type, and a
JSON body valid against the declared schema."""
from __future__ import annotations

import http.client
import io
import json
import socket
import sys
import threading
import time

import jsonschema
import numpy as np
import pytest
import referencing
import yaml
from openapi_spec_validator import validate

from conftest import ROOT, parity_slice, write_volume

SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
REGISTRY = referencing.Registry().with_resource("urn:openapi", referencing.Resource.from_contents(
    SPEC, default_specification=referencing.jsonschema.DRAFT202012))


def test_the_document_is_valid_openapi_3_1():
    validate(SPEC)
    assert SPEC["openapi"].startswith("3.1")


def check(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> None:
    """Fails unless the contract declares this response and its body fits the declared schema."""
    operation = SPEC["paths"][path][method.lower()]
    declared = operation["responses"].get(str(status))
    assert declared is not None, f"{method} {path}: status {status} is not in the contract"
    if "$ref" in declared:
        declared = SPEC["components"]["responses"][declared["$ref"].split("/")[-1]]
    content_type = headers.get("content-type", "").split(";")[0].strip()
    if not body:
        return
    assert content_type in declared.get("content", {}), f"{method} {path} {status}: {content_type} not declared"
    for name, header in declared.get("headers", {}).items():
        header = SPEC["components"]["headers"][header["$ref"].split("/")[-1]] if "$ref" in header else header
        if header.get("required"):
            assert name.lower() in headers, f"{method} {path} {status}: no {name}"
    if content_type.endswith("json"):
        schema = declared["content"][content_type]["schema"]
        validator = jsonschema.Draft202012Validator({"$ref": "urn:openapi#/" + _pointer(schema)} if "$ref" in schema
                                                    else schema, registry=REGISTRY)
        validator.validate(json.loads(body))


def _pointer(schema: dict) -> str:
    return schema["$ref"].removeprefix("#/")


def call(service, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         query: str = "") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=120)
    connection.request(method, path + query, body=body, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    answer = response.status, {k.lower(): v for k, v in response.getheaders()}, payload
    check(method, path, *answer)
    return answer


@pytest.fixture
def slice_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, parity_slice())
    return buffer.getvalue()


def test_every_endpoint_answers_as_the_contract_says(serve, slice_npy, tmp_path):
    service = serve()
    for path in ("/healthz", "/readyz", "/metrics", "/v1/model", "/openapi.yaml"):
        assert call(service, "GET", path)[0] == 200, path
    volume = write_volume(tmp_path / "head.nii.gz", 3, np.diag([1.2, 1.0, 2.0, 1.0])).read_bytes()
    for accept in ("application/json", "application/x-npz", "application/x-nifti", "image/png"):
        status, headers, _ = call(service, "POST", "/detect", volume, {"Content-Type": "application/x-nifti", "Accept": accept},
                                  "?restorations=1&steps=1")
        assert status == 200 and headers["content-type"] == accept
    status, _, body = call(service, "POST", "/detect", slice_npy, {"Content-Type": "application/x-npy"}, "?preprocessed=true&steps=1")
    assert status == 200 and json.loads(body)["input"]["slices"] == 1


def test_every_error_answers_as_the_contract_says(serve, slice_npy):
    service = serve("--max-body-bytes", "200000")
    npy = {"Content-Type": "application/x-npy"}
    cases = [
        (b"\x93NUMPY broken", npy, "", 400),
        (slice_npy, {"Content-Type": "application/x-npy", "Accept": "text/html"}, "", 406),
        (slice_npy, {"Content-Type": "application/x-npy", "Accept": "application/x-nifti"}, "?preprocessed=true", 406),
        (b"\0" * 300_000, npy, "", 413),
        (slice_npy, {"Content-Type": "text/plain"}, "", 415),
        (slice_npy, npy, "?restorations=0", 422),
        (slice_npy, npy, "?bogus=1", 422),
    ]
    for body, headers, query, expected in cases:
        assert call(service, "POST", "/detect", body, headers, query)[0] == expected, (headers, query)
    # 408: a body that stops coming (a raw socket: no client library sends half a body).
    slow = serve("--body-timeout-seconds", "0.3")
    with socket.create_connection(("127.0.0.1", slow.port)) as raw:
        raw.sendall(b"POST /detect HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-npy\r\nContent-Length: 100\r\n\r\n\x93NUMPY")
        answer = http.client.HTTPResponse(raw)
        answer.begin()
        check("POST", "/detect", answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        assert answer.status == 408
    guarded = serve("--api-key", "contract-key")
    assert call(guarded, "POST", "/detect", slice_npy, npy, "?preprocessed=true")[0] == 401
    assert call(guarded, "GET", "/v1/model")[0] == 401
    full = serve("--batch-max-slices", "1", "--queue-max-slices", "1", "--request-max-slices", "1")
    # One slice runs, one waits (the bound): a third is refused from its head.
    heavy = ("POST", "/detect", slice_npy, npy, "?preprocessed=true&restorations=16&steps=32")
    background = [threading.Thread(target=call, args=(full, *heavy)) for _ in range(2)]

    def waiting_slices() -> float:
        metrics = call(full, "GET", "/metrics")[2].decode()
        return float(metrics.split("\nmimood_queue_slices ")[1].split("\n")[0])

    background[0].start()
    time.sleep(0.5)  # its slice is taken into a batch at once and runs for seconds
    background[1].start()
    for _ in range(2000):
        if waiting_slices() == 1:
            break
    else:
        pytest.fail("the queue never held a waiting slice")
    status, headers, _ = call(full, *heavy)
    assert status == 503 and headers["retry-after"] == "5"
    for thread in background:
        thread.join()
    late = serve("--request-timeout-seconds", "0.2", "--batch-max-slices", "1")
    assert call(late, "POST", "/detect", slice_npy, npy, "?preprocessed=true&restorations=8&steps=8")[0] == 504


def test_dicom_answers_and_refusals_are_in_the_contract(serve):
    sys.path.insert(0, str(ROOT / "Training/tools"))
    import dicom_series
    from pydicom.data import get_testdata_file

    service = serve("--decode-max-bytes", "8000000")
    volume = np.repeat((parity_slice().T * 1000).astype(np.float32)[:, :, None], 2, axis=2)
    files = dicom_series.series(volume, np.diag([1.2, 1.0, 2.0, 1.0]))
    multipart, multipart_type = dicom_series.multipart(files)
    ct = open(get_testdata_file("CT_small.dcm"), "rb").read()
    cases = [
        (multipart, multipart_type, 200),
        (dicom_series.zipped(files), "application/zip", 200),
        (open(get_testdata_file("MR_small_bigendian.dcm"), "rb").read(), "application/dicom", 415),
        (multipart, "multipart/related", 415),
        (ct, "application/dicom", 422),
        (dicom_series.multipart(files[:1] + dicom_series.series(volume, np.eye(4))[1:])[0], multipart_type, 422),
        (dicom_series.zipped([bytes(16_000_000)]), "application/zip", 413),
        (files[0][:300], "application/dicom", 400),
    ]
    for body, content_type, expected in cases:
        status, _, answer = call(service, "POST", "/detect", body, {"Content-Type": content_type}, "?restorations=1&steps=1")
        assert status == expected, (content_type, expected, answer[:300])
        if status == 200:
            assert json.loads(answer)["input"]["format"] == "dicom"
    # The DICOM answer, in both packagings, and its 406 for other input (call() checks each against the contract).
    for accept, content_type in (('multipart/related; type="application/dicom"', "multipart/related"), ("application/zip", "application/zip")):
        status, headers, _ = call(service, "POST", "/detect", multipart, {"Content-Type": multipart_type, "Accept": accept},
                                  "?restorations=1&steps=1")
        assert status == 200 and headers["content-type"].startswith(content_type)
        nifti = (ROOT / "Tests/Fixtures/imaging/preprocessing/oblique.nii.gz").read_bytes()
        assert call(service, "POST", "/detect", nifti, {"Content-Type": "application/x-nifti", "Accept": accept})[0] == 406
