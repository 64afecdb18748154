"""The generator at half resolution (2 mm template grid): the same code path, eight times fewer voxels."""
import json

import nibabel as nib
import numpy as np
import pytest

from mimood_train import synthetic

ZOOM = 0.5


@pytest.fixture(scope="module")
def template():
    return synthetic.load_template(ZOOM)


def test_spin_echo_contrast_is_t2_ordered():
    contrast = synthetic.tissue_contrast()
    assert contrast["wm"] == 1.0
    assert contrast["gm"] == pytest.approx(1.5, abs=0.1)
    assert contrast["csf"] == pytest.approx(2.6, abs=0.15)


def test_healthy_subject_has_t2_tissue_order(template):
    subject = synthetic.generate_subject(template, (7, 0, 0), anomalous=False, with_tissue_labels=True)
    image, tissue = subject["t2"].astype(np.float64), subject["tissue"]
    means = {name: image[tissue == label].mean() for label, name in ((1, "csf"), (2, "gm"), (3, "wm"))}
    assert means["wm"] < means["gm"] < means["csf"]
    assert (image[subject["brainmask"] == 0] == 0).all()
    assert "seg" not in subject


def first_visible_glioma(template):
    for index in range(20):
        subject = synthetic.generate_subject(template, (3, 3, index), anomalous=True, with_tissue_labels=True)
        if not subject["glioma"]["subtle"]:
            return subject
    raise AssertionError("no full-contrast glioma among 20 subjects")


def test_glioma_is_inside_the_brain_and_hyperintense(template):
    subject = first_visible_glioma(template)
    seg, brain = subject["seg"] > 0, subject["brainmask"] > 0
    assert seg.any() and not (seg & ~brain).any()
    image = subject["t2"].astype(np.float64)
    healthy_wm = image[(subject["tissue"] == 3) & ~seg].mean()
    assert image[seg].mean() > 1.4 * healthy_wm
    diameter_bound_ml = 4 / 3 * np.pi * 30 ** 3 / 1000 * 1.3   # a 60 mm sphere, with room for the outline
    assert 0 < subject["lesion_volume_ml"] < diameter_bound_ml


def test_lesion_sizes_span_small_to_large(template):
    volumes = [synthetic.generate_subject(template, (11, 2, i), anomalous=True)["lesion_volume_ml"] for i in range(8)]
    assert min(volumes) < 5 < 20 < max(volumes)


def test_same_seed_same_volumes_other_seed_differs(template, tmp_path):
    counts = {"train": 1, "test_anomalous": 1}
    first = synthetic.generate_dataset(tmp_path / "a", counts, seed=5, zoom=ZOOM, progress=False)
    second = synthetic.generate_dataset(tmp_path / "b", counts, seed=5, zoom=ZOOM, progress=False)
    other = synthetic.generate_dataset(tmp_path / "c", counts, seed=6, zoom=ZOOM, progress=False)
    assert first == second and first != other
    for name in ("train/train_0000_t2.nii.gz", "test_anomalous/test_anomalous_0000_seg.nii.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()   # gzip without a timestamp
        a = np.asarray(nib.load(tmp_path / "a" / name).dataobj)
        assert not np.array_equal(a, np.asarray(nib.load(tmp_path / "c" / name).dataobj))
    written = nib.load(tmp_path / "a" / "train/train_0000_t2.nii.gz")
    assert written.header["sform_code"] > 0 and written.header["qform_code"] > 0
    manifest = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert manifest["counts"]["test_anomalous"] == 1
    assert manifest["subjects"]["test_anomalous"][0]["lesion_volume_ml"] > 0
