"""Writes a NIfTI volume (or any [x, y, z] array with its RAS affine) as a DICOM MR series, for the tests of
the service's DICOM input: single-frame files or one Enhanced MR multi-frame object, in any transfer
syntax pydicom writes (uncompressed, deflated, RLE lossless), and the two ways a series travels in one
request (multipart/related, a ZIP of the folder). The patient attributes are fixed markers, so that a
test can check that none of them reaches a response or a log.

    python Training/tools/dicom_series.py head.nii.gz OUT_DIR [--multiframe]
"""
from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage, RLELossless, generate_uid)

# Markers a test looks for in responses and logs: none may appear there.
PATIENT_NAME = "Secret^Patient"
PATIENT_ID = "PHI-0123456789"
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _number(value: float) -> str:
    """A decimal string (DS) of at most 16 characters."""
    return f"{value:.10g}"[:16]


def _geometry(affine: np.ndarray) -> tuple[list[str], list[str], np.ndarray]:
    """Image Orientation (Patient), Pixel Spacing and the LPS affine of a RAS voxel → world affine."""
    lps = LPS_FROM_RAS @ affine
    row, column = lps[:3, 0], lps[:3, 1]   # along a row: voxel i (columns); down a column: voxel j (rows)
    spacing = [np.linalg.norm(column), np.linalg.norm(row)]
    orientation = list(row / spacing[1]) + list(column / spacing[0])
    return [_number(v) for v in orientation], [_number(v) for v in spacing], lps


def _base(uids: tuple[str, str, str], modality: str, rows: int, columns: int) -> Dataset:
    """The attributes every file of the series shares; `uids`: its study, series and frame of reference."""
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = PATIENT_NAME, PATIENT_ID, "19700101", "O"
    # The study's other Type 2 attributes, present as a scanner writes them, so that derived objects can copy them.
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20260101", "120000", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
    ds.Modality, ds.SeriesNumber = modality, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def _encoded(ds: Dataset, sop_class: str, transfer_syntax: str) -> bytes:
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    if transfer_syntax == RLELossless:
        ds.compress(RLELossless)
    else:
        meta.TransferSyntaxUID = transfer_syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def series(volume: np.ndarray, affine: np.ndarray, *, multiframe: bool = False, modality: str = "MR",
           transfer_syntax: str = ExplicitVRLittleEndian, slope: float = 1.0, intercept: float = 0.0,
           series_uid: str | None = None, study_uid: str | None = None) -> list[bytes]:
    """The volume ([x, y, z], voxel → RAS `affine`) as DICOM files, slice k at k along the normal. Stored values
    are (value − intercept) / slope as uint16: choose them so that this is exact for exact round trips."""
    stored = np.rint((np.asarray(volume, np.float64) - intercept) / slope)
    assert stored.min() >= 0 and stored.max() <= 65535, "values do not fit uint16 with this rescale"
    stored = stored.astype("<u2")
    columns, rows, slices = volume.shape
    orientation, spacing, lps = _geometry(np.asarray(affine, np.float64))
    thickness = _number(np.linalg.norm(lps[:3, 2]))
    uids = (study_uid or generate_uid(), series_uid or generate_uid(), generate_uid())

    def position(k: int) -> list[str]:
        return [_number(v) for v in (lps @ [0, 0, k, 1])[:3]]

    def frame(k: int) -> bytes:
        return np.ascontiguousarray(stored[:, :, k].T).tobytes()   # rows of the frame: j; columns: i

    if not multiframe:
        files = []
        for k in range(slices):
            ds = _base(uids, modality, rows, columns)
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient, ds.ImageOrientationPatient = position(k), orientation
            ds.PixelSpacing, ds.SliceThickness = spacing, thickness
            ds.RescaleSlope, ds.RescaleIntercept = _number(slope), _number(intercept)
            ds.PixelData = frame(k)
            files.append(_encoded(ds, MRImageStorage, transfer_syntax))
        return files
    ds = _base(uids, modality, rows, columns)
    ds.InstanceNumber, ds.NumberOfFrames = 1, slices
    measures, plane = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = spacing, thickness
    plane.ImageOrientationPatient = orientation
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in range(slices):
        item, where, rescale = Dataset(), Dataset(), Dataset()
        where.ImagePositionPatient = position(k)
        rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = _number(slope), _number(intercept), "US"
        item.PlanePositionSequence, item.PixelValueTransformationSequence = Sequence([where]), Sequence([rescale])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = b"".join(frame(k) for k in range(slices))
    return [_encoded(ds, EnhancedMRImageStorage, transfer_syntax)]


def multipart(files: list[bytes], boundary: str = "mimood-dicom-boundary") -> tuple[bytes, str]:
    """The files as a WADO-RS multipart/related body, and its Content-Type."""
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n" for f in files)
    return body + b"--" + boundary.encode() + b"--\r\n", f'multipart/related; type="application/dicom"; boundary={boundary}'


def zipped(files: list[bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """The files as a ZIP of a series folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr("series/", b"")
        for index, data in enumerate(files):
            archive.writestr(f"series/IM{index:04d}.dcm", data)
    return buffer.getvalue()


def main() -> None:
    import nibabel as nib
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nifti", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--multiframe", action="store_true", help="one Enhanced MR object instead of one file a slice")
    arguments = parser.parse_args()
    image = nib.load(arguments.nifti)
    values = np.asarray(image.dataobj, np.float64)
    # Values scaled into uint16 with a rescale that gives them back.
    low, high = float(values.min()), float(values.max())
    slope = (high - low) / 65535 if high > low else 1.0
    arguments.out.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(series(values, image.affine, multiframe=arguments.multiframe, slope=slope, intercept=low)):
        (arguments.out / f"IM{index:04d}.dcm").write_bytes(data)


if __name__ == "__main__":
    main()
