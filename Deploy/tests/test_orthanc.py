"""The PACS loop of issue 16 against a real Orthanc (Debian's, with its DICOMweb plugin) and the real server: an MR
series made from one of our volumes is uploaded to Orthanc; the series fetched by WADO-RS gives the map of the same
volume posted as NIfTI; Deploy/examples/pacs_client.py's DICOMweb mode fetches it, has it detected and stores the
answer back by STOW-RS, where Orthanc files a Parametric Map and a Segmentation in the source study, on the source
geometry, the map equal to the NIfTI one; a series the server refuses is reported as a failure. No patient attribute
reaches the server's log or the client's output."""
from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import urllib.request

import highdicom
import nibabel as nib
import numpy as np
import pydicom

from conftest import PARITY, ROOT, parity_slice

sys.path.insert(0, str(ROOT / "Training/tools"))
import dicom_series  # noqa: E402

CLIENT = ROOT / "Deploy/examples/pacs_client.py"
FAST = {"restorations": "1", "steps": "1", "seed": "3"}
DICOM_SERIES = 'multipart/related; type="application/dicom"'
PARAMETRIC_MAP, SEGMENTATION = "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.66.4"
# Oblique (12° about z, 8° about y) and left-handed, as a radiological NIfTI is: the slices step against the normal
# of Image Orientation, so that a PACS-side reader sorts them in the reverse of the volume's order.
TURN_Z, TURN_Y = np.radians(12), np.radians(8)
ROTATION = (np.array([[np.cos(TURN_Z), -np.sin(TURN_Z), 0], [np.sin(TURN_Z), np.cos(TURN_Z), 0], [0, 0, 1]])
            @ np.array([[np.cos(TURN_Y), 0, np.sin(TURN_Y)], [0, 1, 0], [-np.sin(TURN_Y), 0, np.cos(TURN_Y)]]))
AFFINE = np.eye(4)
AFFINE[:3, :3] = ROTATION @ np.diag([-0.9, 1.1, 2.5])
AFFINE[:3, 3] = [80, -100, 20]
AFFINE = AFFINE.astype(np.float32).astype(np.float64)   # NIfTI keeps float32: the series is written from the same
LPS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0]) @ AFFINE


def volume(slices: int = 4) -> np.ndarray:
    """The parity slice's brain as even integers (exact through a rescale of slope 2, intercept −1000), moved 6
    voxels along x from one slice to the next, so that each slice has a map of its own."""
    brain = 2 * np.rint(parity_slice().T * 500)
    return np.stack([np.roll(brain, 6 * k, axis=0) for k in range(slices)], axis=2).astype(np.float32)


def upload(orthanc, files: list[bytes]) -> str:
    """Stores the files in Orthanc through its REST API; the Orthanc id of their study."""
    studies = {orthanc.rest("/instances", data)["ParentStudy"] for data in files}
    assert len(studies) == 1, studies
    return studies.pop()


def detect(service, body: bytes, content_type: str, accept: str) -> bytes:
    request = urllib.request.Request(f"{service.url}/detect?" + "&".join(f"{k}={v}" for k, v in FAST.items()),
                                     data=body, headers={"Content-Type": content_type, "Accept": accept})
    with urllib.request.urlopen(request, timeout=300) as response:
        return response.read()


def nifti_answer(service, body: bytes, content_type: str) -> nib.Nifti1Image:
    """The anomaly map as a NIfTI answer: values [i, j, k] on the input's grid, with its affine."""
    return nib.Nifti1Image.from_bytes(gzip.decompress(detect(service, body, content_type, "application/x-nifti")))


def nifti_map(service) -> np.ndarray:
    """The anomaly map of the volume posted as NIfTI, from the .npz answer: [i, j, k] on the NIfTI grid."""
    answer = detect(service, nib.Nifti1Image(volume(), AFFINE).to_bytes(), "application/x-nifti", "application/x-npz")
    return np.load(io.BytesIO(answer))["anomaly_map"]


def run_client(service, orthanc, *selection: str, out=None) -> subprocess.CompletedProcess:
    params = [argument for name, value in FAST.items() for argument in ("--param", f"{name}={value}")]
    return subprocess.run([sys.executable, str(CLIENT), "--url", service.url, "--dicomweb", orthanc.dicomweb,
                           *selection, *params, *(["--out", str(out)] if out else [])],
                          capture_output=True, text=True, timeout=600)


def assert_no_patient_data(*texts: str) -> None:
    for text in texts:
        for marker in (dicom_series.PATIENT_NAME, dicom_series.PATIENT_ID, "Secret"):
            assert marker not in text, marker


def frame_item(ds: pydicom.Dataset, frame: int, group: str) -> pydicom.Dataset:
    """A functional group's item for one frame: the frame's own, else the shared one."""
    own = ds.PerFrameFunctionalGroupsSequence[frame]
    return (own if group in own else ds.SharedFunctionalGroupsSequence[0])[group][0]


def slice_index(ds: pydicom.Dataset, frame: int) -> int:
    """The source volume's slice k that a frame lies on (its origin must be voxel (0, 0, k))."""
    position = [float(v) for v in frame_item(ds, frame, "PlanePositionSequence").ImagePositionPatient]
    voxel = np.linalg.solve(LPS_AFFINE, [*position, 1.0])[:3]
    np.testing.assert_allclose(voxel, [0, 0, np.rint(voxel[2])], atol=1e-3, err_msg=f"frame {frame} at {position}")
    return int(np.rint(voxel[2]))


def assert_on_the_source_geometry(ds: pydicom.Dataset, source: list[pydicom.Dataset]) -> list[int]:
    """Every frame has the source's orientation and spacing, lies on a source slice and derives from that slice's
    instance; the frames go along the normal. Their slice indices in the volume."""
    slices = [slice_index(ds, frame) for frame in range(int(ds.NumberOfFrames))]
    for frame, k in enumerate(slices):
        orientation = frame_item(ds, frame, "PlaneOrientationSequence").ImageOrientationPatient
        spacing = frame_item(ds, frame, "PixelMeasuresSequence").PixelSpacing
        np.testing.assert_allclose([float(v) for v in orientation],
                                   [float(v) for v in source[0].ImageOrientationPatient], atol=1e-6)
        np.testing.assert_allclose([float(v) for v in spacing], [float(v) for v in source[0].PixelSpacing], atol=1e-6)
        derived_from = frame_item(ds, frame, "DerivationImageSequence").SourceImageSequence[0]
        assert derived_from.ReferencedSOPInstanceUID == source[k].SOPInstanceUID, (frame, k)
    # The volume's slices step against the normal (a left-handed affine): along the normal, k goes down.
    assert slices == sorted(slices, reverse=True), slices
    assert (ds.Rows, ds.Columns) == (source[0].Rows, source[0].Columns)
    assert ds.FrameOfReferenceUID == source[0].FrameOfReferenceUID
    assert ds.StudyInstanceUID == source[0].StudyInstanceUID
    assert ds.SeriesInstanceUID != source[0].SeriesInstanceUID
    assert ds.SeriesInstanceUID.startswith("2.25.") and ds.SOPInstanceUID.startswith("2.25."), ds.SOPInstanceUID
    referenced = list(ds.ReferencedSeriesSequence)
    assert [item.SeriesInstanceUID for item in referenced] == [source[0].SeriesInstanceUID]
    assert {item.ReferencedSOPInstanceUID for item in referenced[0].ReferencedInstanceSequence} \
        == {slice_.SOPInstanceUID for slice_ in source}
    return slices


def test_a_series_fetched_by_wado_rs_gives_the_map_of_the_same_volume_as_nifti(serve, orthanc):
    service = serve()
    files = dicom_series.series(volume(), AFFINE, slope=2, intercept=-1000)
    upload(orthanc, files)
    study_uid = pydicom.dcmread(io.BytesIO(files[0])).StudyInstanceUID
    series_uid = pydicom.dcmread(io.BytesIO(files[0])).SeriesInstanceUID
    # Orthanc's own multipart: its boundary, and a Content-Length in each part.
    request = urllib.request.Request(f"{orthanc.dicomweb}/studies/{study_uid}/series/{series_uid}",
                                     headers={"Accept": DICOM_SERIES})
    with urllib.request.urlopen(request, timeout=60) as response:
        content_type, body = response.headers["Content-Type"], response.read()
    assert content_type.startswith("multipart/related") and "boundary=" in content_type, content_type
    expected = nifti_map(service)
    assert expected.shape == (160, 160, 4) and expected.max() > 0
    # The series is sorted along the normal, against the volume's k: its grid is the volume's with k reversed.
    from_pacs = nifti_answer(service, body, content_type)
    reversed_k = AFFINE @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 3], [0, 0, 0, 1]])
    np.testing.assert_allclose(from_pacs.affine, reversed_k, atol=1e-4)
    np.testing.assert_allclose(np.asarray(from_pacs.dataobj), expected[:, :, ::-1], atol=1e-5, rtol=0)
    assert_no_patient_data("".join(service.log))
    assert service.stop() == 0


def test_the_dicomweb_loop_stores_a_parametric_map_and_a_segmentation_in_the_source_study(serve, orthanc, tmp_path):
    service = serve()
    files = dicom_series.series(volume(), AFFINE, slope=2, intercept=-1000)
    source = [pydicom.dcmread(io.BytesIO(data)) for data in files]
    study_uid = source[0].StudyInstanceUID
    # A CT series in the same study: the client's study mode asks only for MR series.
    ct_files = dicom_series.series(volume(1), AFFINE, modality="CT", study_uid=study_uid)
    ct_series_uid = pydicom.dcmread(io.BytesIO(ct_files[0])).SeriesInstanceUID
    study = upload(orthanc, files + ct_files)

    run = run_client(service, orthanc, "--study", study_uid, out=tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert "2 objects stored" in run.stderr and "1 of 1 series done" in run.stderr, run.stderr

    # Orthanc files both new series in the source study, under the source patient: still one study, one patient.
    assert orthanc.rest("/studies") == [study] and len(orthanc.rest("/patients")) == 1
    series = orthanc.rest(f"/studies/{study}/series")
    assert len(series) == 4, [s["MainDicomTags"] for s in series]
    stored = {}
    for entry in series:
        if entry["MainDicomTags"]["SeriesInstanceUID"] in (source[0].SeriesInstanceUID, ct_series_uid):
            continue
        assert len(entry["Instances"]) == 1, entry["MainDicomTags"]
        ds = pydicom.dcmread(io.BytesIO(orthanc.file(entry["Instances"][0])))
        assert entry["MainDicomTags"]["Modality"] == ds.Modality
        stored[ds.SOPClassUID] = ds
    assert set(stored) == {PARAMETRIC_MAP, SEGMENTATION}, set(stored)
    parametric_map, segmentation = stored[PARAMETRIC_MAP], stored[SEGMENTATION]
    assert segmentation.Modality == "SEG"
    assert parametric_map.SeriesInstanceUID != segmentation.SeriesInstanceUID
    # --out wrote the same objects.
    written = tmp_path / "out" / source[0].SeriesInstanceUID
    assert pydicom.dcmread(written / "parametric-map.dcm").SOPInstanceUID == parametric_map.SOPInstanceUID
    assert pydicom.dcmread(written / "segmentation.dcm").SOPInstanceUID == segmentation.SOPInstanceUID

    # The Parametric Map: one float frame per source slice, each the NIfTI map's slice at its position.
    slices = assert_on_the_source_geometry(parametric_map, source)
    assert sorted(slices) == list(range(len(source)))
    expected = nifti_map(service)
    pixels = parametric_map.pixel_array
    assert pixels.dtype == np.float32 and pixels.shape == (len(source), 160, 160)
    mapping = frame_item(parametric_map, 0, "RealWorldValueMappingSequence")   # the stored values are the scores
    assert (float(mapping.RealWorldValueSlope), float(mapping.RealWorldValueIntercept)) == (1.0, 0.0)
    for frame, k in enumerate(slices):
        # Frames are [row][column] = [j][i]; the NIfTI map is [i, j, k].
        np.testing.assert_allclose(pixels[frame], expected[:, :, k].T, atol=1e-5, rtol=0, err_msg=f"frame {frame}")

    # The Segmentation: binary, one segment "anomaly", its frames on source slices, the map above the model's
    # map_threshold (the parity checkpoint's marks part of this map).
    threshold = json.loads((PARITY / "checkpoint/model.json").read_text())["inference"]["map_threshold"]
    assert segmentation.SegmentationType == "BINARY"
    assert [segment.SegmentLabel for segment in segmentation.SegmentSequence] == ["anomaly"]
    mask = np.zeros_like(expected, dtype=bool)
    segmented_frames = segmentation.pixel_array.reshape(-1, 160, 160)
    for frame, k in enumerate(assert_on_the_source_geometry(segmentation, source)):
        assert frame_item(segmentation, frame, "SegmentIdentificationSequence").ReferencedSegmentNumber == 1
        assert set(np.unique(segmented_frames[frame])) <= {0, 1}
        mask[:, :, k] |= segmented_frames[frame].T.astype(bool)
    np.testing.assert_array_equal(mask, expected > threshold)
    assert 0 < mask.sum() < mask.size

    # A reference reader takes both: highdicom puts them on the volume the source series makes.
    source_volume = highdicom.get_volume_from_series(source)
    for kind, ds in ((highdicom.pm.ParametricMap, parametric_map), (highdicom.seg.Segmentation, segmentation)):
        read = kind.from_dataset(ds, copy=True)
        np.testing.assert_allclose(read.get_volume_geometry().affine, source_volume.affine, atol=1e-4)
    assert_no_patient_data("".join(service.log), run.stderr, run.stdout)
    assert service.stop() == 0


def test_a_series_the_server_refuses_is_reported_and_nothing_is_stored(serve, orthanc):
    service = serve()
    files = dicom_series.series(volume(2), AFFINE, modality="CT")
    header = pydicom.dcmread(io.BytesIO(files[0]))
    study = upload(orthanc, files)

    run = run_client(service, orthanc, "--series", f"{header.StudyInstanceUID}/{header.SeriesInstanceUID}")
    assert run.returncode == 1, run.stderr
    assert "FAILED: HTTP 422 from /detect" in run.stderr and "not MR" in run.stderr, run.stderr
    assert "0 of 1 series done" in run.stderr
    # The study mode finds no MR series in it and says so.
    run_study = run_client(service, orthanc, "--study", header.StudyInstanceUID)
    assert run_study.returncode == 1 and "no MR series" in run_study.stderr, run_study.stderr
    assert len(orthanc.rest(f"/studies/{study}/series")) == 1
    assert_no_patient_data("".join(service.log), run.stderr, run_study.stderr)
    assert service.stop() == 0
