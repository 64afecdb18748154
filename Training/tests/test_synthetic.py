"""The generator at half resolution (2 mm template grid): the same code path, eight times fewer voxels."""
import hashlib
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


def subject_digest(subject: dict) -> str:
    digest = hashlib.sha256()
    for key in ("t2", "brainmask", "seg"):
        if key in subject:
            digest.update(subject[key].tobytes())
    return digest.hexdigest()


# Generator version 1 (before the test split and the lesion kinds), seed 0, subject 0 at ZOOM.
VERSION_1_DIGESTS = {
    "train": "8d6bfdfeacd779975ae7a40aaa0f2277e660d51b6ce06403e1bb756719577b35",
    "val_anomalous": "42385bd7cd777b4356d59dea27042eaab1d393d182a703a6f1f66c14031f61b7",
    "test_anomalous": "8fb5760ba7b8a1cfb61b2323bfda0eab5414937afb301f4e8f4b40befc68a737",
}


@pytest.mark.parametrize("split", sorted(VERSION_1_DIGESTS))
def test_existing_subjects_are_those_of_version_1(template, split):
    subject = synthetic.generate_subject(template, synthetic.subject_seed(0, split, 0), split != "train")
    assert subject_digest(subject) == VERSION_1_DIGESTS[split]


def lesion_contrast(subject: dict) -> float:
    """Mean lesion intensity over the mean of the healthy white matter."""
    image, seg = subject["t2"].astype(np.float64), subject["seg"] > 0
    return image[seg].mean() / image[(subject["tissue"] == 3) & ~seg].mean()


def test_foci_are_small_bright_and_inside_the_brain(template):
    subjects = [synthetic.generate_subject(template, (4, 3, i), True, with_tissue_labels=True, lesion_kind="foci")
                for i in range(3)]
    for subject in subjects:
        foci = subject["foci"]
        assert 3 <= len(foci["centres_vox"]) <= 10 and all(2 <= d <= 6 for d in foci["diameters_mm"])
        seg, brain = subject["seg"] > 0, subject["brainmask"] > 0
        assert seg.any() and not (seg & ~brain).any()
        assert lesion_contrast(subject) > 1.1
        ten_largest_spheres_ml = 10 * 4 / 3 * np.pi * 3 ** 3 / 1000
        assert subject["lesion_volume_ml"] < ten_largest_spheres_ml
        assert subject["lesion_kind"] == "foci" and "glioma" not in subject


def test_hypointense_lesion_is_darker_than_white_matter(template):
    for index in range(3):
        subject = synthetic.generate_subject(template, (4, 3, index), True, with_tissue_labels=True, lesion_kind="hypointense")
        assert 5 <= subject["hypointense"]["diameter_mm"] <= 20
        seg = subject["seg"] > 0
        assert seg.any() and not (seg & (subject["brainmask"] == 0)).any()
        assert lesion_contrast(subject) < 0.8


def test_unknown_lesion_kind_is_refused(template, tmp_path):
    with pytest.raises(ValueError, match="unknown lesion kind"):
        synthetic.generate_subject(template, (0, 3, 0), True, lesion_kind="cyst")
    with pytest.raises(ValueError, match="subset"):
        synthetic.generate_dataset(tmp_path, {"test_anomalous": 1}, seed=0, zoom=ZOOM, progress=False, test_kinds=("cyst",))


def test_test_split_is_healthy_and_test_kinds_are_recorded(tmp_path):
    counts = {"test_anomalous": 6, "test": 2}
    manifest = synthetic.generate_dataset(tmp_path / "mixed", counts, seed=0, zoom=ZOOM, progress=False)
    assert manifest["generator_version"] == 2 and manifest["test_lesion_kinds"] == list(synthetic.LESION_KINDS)
    records = manifest["subjects"]["test_anomalous"]
    kinds = [record["lesion_kind"] for record in records]
    assert set(kinds) <= set(synthetic.LESION_KINDS) and len(set(kinds)) > 1
    for record in records:
        assert record[record["lesion_kind"]] and record["lesion_volume_ml"] > 0
    assert [r["id"] for r in manifest["subjects"]["test"]] == ["test_0000", "test_0001"]
    assert "lesion_kind" not in manifest["subjects"]["test"][0]
    assert not (tmp_path / "mixed/test/test_0000_seg.nii.gz").exists()
    assert (tmp_path / "mixed/test/test_0000_brainmask.nii.gz").exists()
    # A glioma subject is the same whichever other kinds were drawn beside it.
    gliomas_only = synthetic.generate_dataset(tmp_path / "gliomas", {"test_anomalous": 6}, seed=0, zoom=ZOOM,
                                              progress=False, test_kinds=("glioma",))
    assert {r["lesion_kind"] for r in gliomas_only["subjects"]["test_anomalous"]} == {"glioma"}
    index = kinds.index("glioma")
    name = f"test_anomalous/test_anomalous_{index:04d}_t2.nii.gz"
    assert (tmp_path / "mixed" / name).read_bytes() == (tmp_path / "gliomas" / name).read_bytes()
