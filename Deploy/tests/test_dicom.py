"""DICOM input on the real server (issue 16, phase A): a series written by Training/tools/dicom_series.py
from a volume, sent as multipart/related (shuffled), as a ZIP and as one Enhanced MR multi-frame object,
in every transfer syntax read, gives the map of the same volume sent as NIfTI; pydicom's bundled test
files each give a map or a clear 4xx; broken series get their specific 4xx; the server stays up, and no
patient attribute reaches a response or the log."""
from __future__ import annotations

import gzip
import http.client
import io
import json
import random
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from conftest import ROOT, parity_slice

sys.path.insert(0, str(ROOT / "Training/tools"))
import dicom_series  # noqa: E402

FAST = "?restorations=1&steps=1&seed=3"
# Oblique, 1.2 × 1.0 × 2.0 mm: turned 10° about z and 5° about x, so that LPS → RAS and the sort are tested.
TURN_Z, TURN_X = np.radians(10), np.radians(5)
ROTATION = (np.array([[np.cos(TURN_Z), -np.sin(TURN_Z), 0], [np.sin(TURN_Z), np.cos(TURN_Z), 0], [0, 0, 1]])
            @ np.array([[1, 0, 0], [0, np.cos(TURN_X), -np.sin(TURN_X)], [0, np.sin(TURN_X), np.cos(TURN_X)]]))
AFFINE = np.eye(4)
AFFINE[:3, :3] = ROTATION @ np.diag([1.2, 1.0, 2.0])
AFFINE[:3, 3] = [-90, -80, -6]
# NIfTI keeps its affine as float32: the series is written from the same numbers.
AFFINE = AFFINE.astype(np.float32).astype(np.float64)


def volume(slices: int = 3) -> np.ndarray:
    """The parity slice's brain as even integers (exact through a rescale of slope 2, intercept −1000)."""
    values = 2 * np.rint(parity_slice().T * 500)
    return np.repeat(values[:, :, None], slices, axis=2).astype(np.float32)


def post(service, body: bytes, content_type: str, query: str = FAST, accept: str = "application/x-npz"):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=300)
    connection.request("POST", "/detect" + query, body=body, headers={"Content-Type": content_type, "Accept": accept})
    response = connection.getresponse()
    return response.status, response.read()


def anomaly_map(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body))["anomaly_map"]


def nifti_bytes(values: np.ndarray, affine: np.ndarray) -> bytes:
    return nib.Nifti1Image(values, affine).to_bytes()


def series(**options) -> list[bytes]:
    return dicom_series.series(volume(), AFFINE, slope=2, intercept=-1000, **options)


def assert_no_patient_data(service, *bodies: bytes) -> None:
    for text in ["".join(service.log).encode(), *bodies]:
        for marker in (dicom_series.PATIENT_NAME, dicom_series.PATIENT_ID, "Secret"):
            assert marker.encode() not in text, marker


def test_a_series_as_multipart_zip_or_multiframe_gives_the_map_of_the_same_volume_as_nifti(serve):
    service = serve()
    status, body = post(service, nifti_bytes(volume(), AFFINE), "application/x-nifti")
    assert status == 200, body
    expected = anomaly_map(body)
    assert expected.shape == (160, 160, 3) and expected.max() > 0
    files = series()
    random.Random(7).shuffle(files)   # the sort along the normal puts them back
    multipart, multipart_type = dicom_series.multipart(files)
    bodies = {
        "multipart, shuffled": (multipart, multipart_type),
        "zip": (dicom_series.zipped(files), "application/zip"),
        "zip, stored": (dicom_series.zipped(files, zipfile.ZIP_STORED), "application/zip"),
        "multi-frame": (series(multiframe=True)[0], "application/dicom"),
        "multi-frame, implicit VR": (series(multiframe=True, transfer_syntax=ImplicitVRLittleEndian)[0], "application/dicom"),
        "deflated": dicom_series.multipart(series(transfer_syntax=DeflatedExplicitVRLittleEndian)),
        "RLE lossless, multi-frame": (series(multiframe=True, transfer_syntax=RLELossless)[0], "application/dicom"),
        "told by its bytes": (series(multiframe=True)[0], "application/octet-stream"),
    }
    answers = []
    for name, (data, content_type) in bodies.items():
        status, body = post(service, data, content_type)
        assert status == 200, (name, body[:500])
        np.testing.assert_allclose(anomaly_map(body), expected, atol=1e-5, rtol=0, err_msg=name)
        answers.append(body)
    # The NIfTI answer of a DICOM input carries the series' affine.
    status, body = post(service, multipart, multipart_type, accept="application/x-nifti")
    assert status == 200, body
    image = nib.Nifti1Image.from_bytes(gzip.decompress(body))
    assert image.shape == (160, 160, 3)
    np.testing.assert_allclose(image.affine, AFFINE, atol=1e-4)
    assert_no_patient_data(service, *answers, body)
    assert service.stop() == 0


@pytest.mark.skipif(shutil.which("dcmcjpeg") is None, reason="needs dcmcjpeg (Debian: dcmtk), which scripts/test installs")
def test_jpeg_lossless_series_give_the_same_map(serve, tmp_path):
    service = serve()
    expected = anomaly_map(post(service, nifti_bytes(volume(), AFFINE), "application/x-nifti")[1])
    for option, syntax in (("+e1", "1.2.840.10008.1.2.4.70"), ("+el", "1.2.840.10008.1.2.4.57")):
        files = []
        for index, data in enumerate(series()):
            source, target = tmp_path / f"{index}.dcm", tmp_path / f"{index}{option}.dcm"
            source.write_bytes(data)
            subprocess.run(["dcmcjpeg", option, str(source), str(target)], check=True)
            encoded = target.read_bytes()
            assert syntax.encode() in encoded[:400], option
            files.append(encoded)
        status, body = post(service, *dicom_series.multipart(files))
        assert status == 200, (option, body[:500])
        np.testing.assert_allclose(anomaly_map(body), expected, atol=1e-5, rtol=0, err_msg=option)
    assert service.stop() == 0


# pydicom's bundled files (not downloaded ones): what each must give. 200 only where the file is an MR
# image this service can place in space; the MR_small family (64 × 64 at 0.31 mm, one slice) is one.
PYDICOM_FILES = {
    "MR_small.dcm": (200, ""),
    "MR_small_implicit.dcm": (200, ""),
    "MR_small_RLE.dcm": (200, ""),
    "MR_small_padded.dcm": (200, ""),
    "MR_small_bigendian.dcm": (415, "1.2.840.10008.1.2.2"),
    "MR_small_expb.dcm": (415, "1.2.840.10008.1.2.2"),
    "MR_small_jpeg_ls_lossless.dcm": (415, "1.2.840.10008.1.2.4.80"),
    "MR_small_jp2klossless.dcm": (415, "1.2.840.10008.1.2.4.90"),
    "JPGExtended.dcm": (415, "1.2.840.10008.1.2.4.51"),
    "JPEG2000.dcm": (415, "1.2.840.10008.1.2.4.91"),
    "CT_small.dcm": (422, "not MR"),
    "image_dfl.dcm": (422, "no Image Position"),   # deflated; a secondary capture without geometry
    "SC_rgb_rle.dcm": (422, "grayscale"),
    "rtplan.dcm": (422, "not an image"),
    "MR_truncated.dcm": (400, "not valid DICOM"),
    "no_meta.dcm": (400, ""),
}


def test_pydicoms_test_files_each_give_a_map_or_a_clear_4xx(serve):
    service = serve()
    small_map = None
    for name, (expected, phrase) in PYDICOM_FILES.items():
        data = open(get_testdata_file(name), "rb").read()
        status, body = post(service, data, "application/dicom", accept="application/json")
        assert status == expected, (name, body[:500])
        if status == 200:
            mapped = json.loads(body)["anomaly_map"]
            assert mapped["shape"] == [64, 64, 1], (name, mapped["shape"])
            small_map = small_map or mapped["data"]
            assert mapped["data"] == small_map, f"{name} decodes to other values than MR_small.dcm"
        else:
            problem = json.loads(body)
            assert problem["status"] == expected and phrase in problem["detail"], (name, problem)
        assert post(service, b"", "application/x-npy")[0] == 400   # still serving
    # force=true runs a CT anyway.
    status, body = post(service, open(get_testdata_file("CT_small.dcm"), "rb").read(), "application/dicom", FAST + "&force=true")
    assert status in (200, 422) and (status == 200 or "not MR" not in json.loads(body)["detail"]), body[:300]
    assert service.stop() == 0


def test_broken_series_get_their_specific_4xx_and_the_server_keeps_serving(serve):
    service = serve("--decode-max-bytes", "8000000")
    files = series()
    sheared = AFFINE.copy()
    sheared[:3, 2] += [0, 0.6, 0]          # each slice steps sideways: gantry tilt
    four = dicom_series.series(volume(4), AFFINE, slope=2, intercept=-1000)
    truncated = files[0][: len(files[0]) // 2]
    corrupt = bytearray(files[0])
    corrupt[140:146] = b"\xff" * 6         # the meta group's first element
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.dcm", bytes(16_000_000))
    wrong_part, _ = dicom_series.multipart(files[:1])
    wrong_part = wrong_part.replace(b"Content-Type: application/dicom", b"Content-Type: image/png")
    cases = [
        ("truncated", truncated, "application/dicom", 400, "not valid DICOM"),
        ("corrupt", bytes(corrupt), "application/dicom", 400, "not valid DICOM"),
        ("mixed series", b"".join([]) or None, None, 422, "mixed series"),
        ("gantry tilt", dicom_series.multipart(dicom_series.series(volume(), sheared))[0], "multipart", 422, "gantry tilt"),
        ("non-uniform spacing", dicom_series.multipart(four[:2] + four[3:])[0], "multipart", 422, "uniformly spaced"),
        ("one slice twice", dicom_series.multipart([files[0], files[0]])[0], "multipart", 422, "same position"),
        ("big-endian", open(get_testdata_file("MR_small_bigendian.dcm"), "rb").read(), "application/dicom", 415,
         "Big Endian"),
        ("a part of another type", wrong_part, "multipart", 415, "application/dicom"),
        ("no boundary", wrong_part, "multipart/related; type=\"application/dicom\"", 415, "boundary"),
        ("no close delimiter", dicom_series.multipart(files)[0][:-30], "multipart", 400, "delimiter"),
        ("zip bomb", bomb.getvalue(), "application/zip", 413, "decode_max_bytes"),
        ("not a zip of DICOM", dicom_series.zipped([b"hello"]), "application/zip", 400, "not valid DICOM"),
        ("declared preprocessed", files[0], "application/dicom", 422, "preprocessed"),
    ]
    mixed = dicom_series.multipart(files[:2] + series()[2:])[0]
    multipart_type = dicom_series.multipart([])[1]
    answers = []
    for name, data, content_type, expected, phrase in cases:
        if name == "mixed series":
            data, content_type = mixed, multipart_type
        if content_type == "multipart":
            content_type = multipart_type
        query = FAST + ("&preprocessed=true" if name == "declared preprocessed" else "")
        status, body = post(service, data, content_type, query)
        answers.append(body)
        assert status == expected, (name, body[:500])
        problem = json.loads(body)
        assert phrase in problem["detail"], (name, problem)
        assert post(service, b"", "application/x-npy")[0] == 400, f"not serving after {name}"
    assert_no_patient_data(service, *answers)
    assert service.stop() == 0


def test_dicom_file_and_frame_limits_are_settings_named_in_their_413(serve):
    service = serve("--decode-max-dicom-files", "2", "--decode-max-dicom-frames", "2")
    files = series()   # three slices
    multipart, multipart_type = dicom_series.multipart(files)
    cases = [
        ("multipart, three parts", multipart, multipart_type, "decode_max_dicom_files: 2"),
        ("zip, three members", dicom_series.zipped(files), "application/zip", "decode_max_dicom_files: 2"),
        ("multi-frame, three frames", series(multiframe=True)[0], "application/dicom", "decode_max_dicom_frames: 2"),
        ("two files, three frames", dicom_series.multipart(files[:1] + series(multiframe=True)[:1])[0], multipart_type,
         "decode_max_dicom_frames: 2"),
    ]
    for name, data, content_type, phrase in cases:
        status, body = post(service, data, content_type)
        assert status == 413, (name, body[:500])
        problem = json.loads(body)
        assert problem["status"] == 413 and phrase in problem["detail"], (name, problem)
    # Within both limits: two slices.
    status, body = post(service, dicom_series.multipart(dicom_series.series(volume(2), AFFINE))[0], multipart_type)
    assert status == 200, body[:500]
    assert_no_patient_data(service)
    assert service.stop() == 0


def peak_rss(pid: int) -> int:
    """The process's peak resident set since the last reset (VmHWM), in bytes."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def hostile_burst(service, clients: int, copies: int, size: int) -> tuple[list[int], int, int]:
    """`clients` requests at once, each one series file of size × size pixels sent `copies` times — half as a
    deflated ZIP (a small body whose members inflate to the limits), half as multipart — so that every file is
    inflated and parsed before the copies are refused as two slices at one position. Returns the statuses, the
    server's peak RSS before the burst and during it."""
    one = dicom_series.series(np.zeros((size, size, 1), np.float32), np.eye(4))[0]
    bodies = [(dicom_series.zipped([one] * copies), "application/zip"), dicom_series.multipart([one] * copies)]
    baseline = peak_rss(service.process.pid)
    with open(f"/proc/{service.process.pid}/clear_refs", "w") as reset:
        reset.write("5")   # VmHWM := VmRSS
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(lambda index: post(service, *bodies[index % 2])[0], range(clients)))
    return statuses, baseline, peak_rss(service.process.pid)


def test_a_concurrent_burst_of_hostile_dicom_bodies_stays_within_the_memory_budget(serve):
    budget = 256 << 20
    service = serve("--memory-budget-bytes", str(budget), "--decode-max-bytes", str(16 << 20))
    # 7 files of 512 × 512 16-bit pixels: data sets and stored pixels 7 MiB, within decode_max_bytes / 2.
    statuses, baseline, peak = hostile_burst(service, clients=16, copies=7, size=512)
    assert set(statuses) == {422}, statuses
    # Every byte a DICOM read allocates is reserved from the budget first (the bodies too).
    assert peak <= baseline + budget, (peak >> 20, baseline >> 20)
    assert post(service, b"", "application/x-npy")[0] == 400   # still serving
    assert service.stop() == 0


DICOM_ANSWER = 'multipart/related; type="application/dicom"'
MAP_THRESHOLD = json.loads((ROOT / "Tests/Fixtures/parity/checkpoint/model.json").read_text())["inference"]["map_threshold"]


def multipart_parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The parts of a multipart/related body as (Content-Type, bytes), read as a STOW-RS server would."""
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"').encode()
    assert body.endswith(b"--" + boundary + b"--\r\n")
    parts = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n")
        parts.append((head.decode().split("Content-Type:")[1].strip(), data[:-2]))
    return parts


def test_the_dicom_answer_is_a_parametric_map_and_a_segmentation_on_the_source_geometry(serve):
    import pydicom
    service = serve()
    status, body = post(service, nifti_bytes(volume(), AFFINE), "application/x-nifti")
    assert status == 200, body
    expected = anomaly_map(body)   # [i, j, k] on the volume's grid
    files = series()
    sources = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    multipart_body, content_type = dicom_series.multipart(files)

    status, answer = post(service, multipart_body, content_type, accept=DICOM_ANSWER)
    assert status == 200, answer
    parts = multipart_parts(answer, DICOM_ANSWER + "; boundary=" + answer.split(b"\r\n")[0][2:].decode())
    assert [kind for kind, _ in parts] == ["application/dicom"] * 2
    status, archive = post(service, multipart_body, content_type, accept="application/zip")
    assert status == 200, archive
    members = zipfile.ZipFile(io.BytesIO(archive))
    assert members.namelist() == ["parametric-map.dcm", "segmentation.dcm"]

    for objects in ([data for _, data in parts], [members.read(name) for name in members.namelist()]):
        parametric_map, segmentation = (pydicom.dcmread(io.BytesIO(data)) for data in objects)
        assert parametric_map.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
        assert segmentation.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
        assert segmentation.SegmentationType == "BINARY" and segmentation.SegmentSequence[0].SegmentLabel == "anomaly"
        # Frames [k, j, i]: frame k lies on source slice k, rows j, columns i.
        values = parametric_map.pixel_array.transpose(2, 1, 0)
        np.testing.assert_allclose(values, expected, atol=1e-5)
        mask = segmentation.pixel_array.transpose(2, 1, 0).astype(bool)
        np.testing.assert_array_equal(mask, values > MAP_THRESHOLD)
        assert 0 < mask.sum() < mask.size
        by_position = sorted(sources, key=lambda s: float(np.dot(s.ImagePositionPatient, np.cross(
            s.ImageOrientationPatient[:3], s.ImageOrientationPatient[3:]))))
        for derived in (parametric_map, segmentation):
            assert derived.StudyInstanceUID == sources[0].StudyInstanceUID
            assert derived.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
            assert derived.SeriesInstanceUID != sources[0].SeriesInstanceUID and derived.SeriesInstanceUID.startswith("2.25.")
            assert derived.PatientID == dicom_series.PATIENT_ID   # filed with the source patient
            shared = derived.SharedFunctionalGroupsSequence[0]
            np.testing.assert_allclose([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
                                       [float(v) for v in sources[0].ImageOrientationPatient], atol=1e-9)
            np.testing.assert_allclose([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
                                       [float(v) for v in sources[0].PixelSpacing], atol=1e-9)
            for frame, source in zip(derived.PerFrameFunctionalGroupsSequence, by_position, strict=True):
                np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                                           [float(v) for v in source.ImagePositionPatient], atol=1e-9)
                assert frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
            referenced = derived.ReferencedSeriesSequence[0]
            assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
            assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == {s.SOPInstanceUID for s in sources}
    # The enhanced multi-frame object's frames are referenced by number.
    status, answer = post(service, series(multiframe=True)[0], "application/dicom", accept="application/zip")
    assert status == 200, answer
    frames = pydicom.dcmread(io.BytesIO(zipfile.ZipFile(io.BytesIO(answer)).read("parametric-map.dcm"))).PerFrameFunctionalGroupsSequence
    assert [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber for f in frames] == [1, 2, 3]
    # The patient's data travels in the objects, never to the log.
    assert_no_patient_data(service)


def test_the_dicom_answer_is_refused_for_other_inputs_before_inference(serve):
    service = serve()
    for accept in (DICOM_ANSWER, "application/zip"):
        status, body = post(service, nifti_bytes(volume(), AFFINE), "application/x-nifti", accept=accept)
        assert status == 406 and b"DICOM input only" in body, body
    # A multipart range of another type is not the DICOM answer: nothing else is acceptable.
    status, body = post(service, series()[0], "application/dicom", accept='multipart/related; type="image/jpeg"')
    assert status == 406, body
