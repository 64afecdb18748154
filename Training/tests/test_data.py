import shutil

import numpy as np
import pytest
import torch

from mimood_train import synthetic
from mimood_train.data import SliceDataset, build_slice_cache


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate_dataset(root, {"train": 2, "val_anomalous": 1}, seed=1, zoom=0.5, progress=False)
    return root


def test_training_cache_keeps_brain_slices_only(dataset, tmp_path):
    summary = build_slice_cache(dataset, "train", tmp_path / "train.npz", min_brain_pixels=2000, progress=False)
    data = SliceDataset(tmp_path / "train.npz")
    assert summary["volumes"] == 2 and len(data) == summary["slices"] > 50
    image = data[0]
    assert image.shape == (1, 160, 160) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    with np.load(tmp_path / "train.npz") as cache:
        assert (cache["brain"].reshape(len(data), -1).sum(1) >= 2000).all()
        assert set(cache["subject"]) == {0, 1}


def test_anomalous_cache_carries_lesion_masks(dataset, tmp_path):
    summary = build_slice_cache(dataset, "val_anomalous", tmp_path / "val.npz", progress=False)
    assert summary["lesion_masks"] and summary["slices_with_lesion"] > 0
    item = SliceDataset(tmp_path / "val.npz", with_masks=True)[0]
    assert set(item) == {"image", "brain", "lesion"}
    assert not (item["lesion"] & ~item["brain"]).any()


def test_missing_split_is_a_clear_error(dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*_t2.nii"):
        build_slice_cache(dataset, "test", tmp_path / "x.npz", progress=False)


def test_subject_folders_as_brats_lays_them_out(dataset, tmp_path):
    subject = tmp_path / "brats" / "test" / "val_anomalous_0000"
    subject.mkdir(parents=True)
    for kind in ("t2", "seg"):                    # BraTS ships no brain mask
        name = f"val_anomalous_0000_{kind}.nii.gz"
        shutil.copy(dataset / "val_anomalous" / name, subject / name)
    summary = build_slice_cache(tmp_path / "brats", "test", tmp_path / "brats.npz", progress=False)
    assert summary["volumes"] == 1 and summary["lesion_masks"] and summary["slices_with_lesion"] > 0
