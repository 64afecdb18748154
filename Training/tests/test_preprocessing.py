import nibabel as nib
import numpy as np
import pytest

from mimood_train.preprocessing import (SLICE_SIZE, PreprocessingError, load_nifti, orientation_of,
                                        preprocess_volume, resample_to_spacing, resampled_length,
                                        slices_to_volume)


def blob_volume(shape=(150, 170, 40), seed=0):
    """A smooth positive 'brain' ellipsoid with varied intensities and zero background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = (grid ** 2).sum(0) < 0.8
    values = 100 + 50 * grid[0] + 30 * grid[1] + rng.uniform(0, 5, shape)
    return (values * inside).astype(np.float32), inside


def test_resampling_2mm_to_1mm_shape_and_linear_values():
    volume = np.zeros((10, 12, 8), np.float32)
    volume += np.arange(10, dtype=np.float32)[:, None, None] * 2      # a ramp of 1 per mm along x
    out = resample_to_spacing(volume, np.array([2.0, 2.0, 2.0]))
    assert out.shape == (19, 23, 15)
    np.testing.assert_allclose(out[:, 0, 0], np.arange(19), atol=1e-5)   # linear is exact on a ramp
    assert resampled_length(256, 0.7) == 179


def test_clip_and_scale_reach_one_at_the_98th_percentile():
    image, brain = blob_volume()
    result = preprocess_volume(image, np.eye(4), brain)
    assert result.slices.shape[1:] == (SLICE_SIZE, SLICE_SIZE) and result.slices.dtype == np.float32
    assert result.slices.max() == pytest.approx(1.0)
    assert result.clip_value == pytest.approx(np.percentile(image[brain], 98))
    assert (result.slices[~result.brain] == 0).all()
    share_clipped = (result.slices[result.brain] >= 1.0).mean()
    assert 0.015 < share_clipped < 0.025


def test_window_is_centred_on_the_brain_bounding_box():
    image = np.zeros((200, 220, 5), np.float32)
    image[30:91, 50:171, :] = 1.0     # 61 × 121 voxels of brain, off the array centre
    result = preprocess_volume(image, np.eye(4))
    rows = np.flatnonzero(result.brain[2].any(1))
    cols = np.flatnonzero(result.brain[2].any(0))
    assert (rows[0], rows[-1]) == (19, 139)     # 121 rows (y): 39 pad above… floor((160-121)/2) = 19
    assert (cols[0], cols[-1]) == (49, 109)     # 61 columns (x): floor((160-61)/2) = 49


def test_display_convention_anterior_up_patient_right_left():
    x, y = np.meshgrid(np.arange(160), np.arange(160), indexing="ij")
    image = np.repeat((10 + x + 2 * y).astype(np.float32)[:, :, None], 3, axis=2)   # brighter right and front
    result = preprocess_volume(image, np.eye(4))
    middle = result.slices[1][40:120, 40:120]       # away from the clipped brightest 2 %
    assert (np.diff(middle, axis=0) < 0).all()     # rows run from anterior (top) to posterior
    assert (np.diff(middle, axis=1) < 0).all()     # columns run from the patient's right to left


def test_flipped_and_permuted_affines_give_the_canonical_slices():
    image, brain = blob_volume((60, 70, 30))
    canonical = preprocess_volume(image, np.eye(4), brain)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    flipped = preprocess_volume(image[::-1, ::-1, :].copy(), lps, brain[::-1, ::-1, :].copy())
    np.testing.assert_array_equal(canonical.slices, flipped.slices)
    permuted_affine = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)   # voxel axes (z, x, y)
    permuted = preprocess_volume(np.transpose(image, (2, 0, 1)).copy(), permuted_affine,
                                 np.transpose(brain, (2, 0, 1)).copy())
    assert orientation_of(permuted_affine).axes == (1, 2, 0)
    np.testing.assert_array_equal(canonical.slices, permuted.slices)


def test_slices_map_back_onto_the_input_grid():
    image, brain = blob_volume((70, 80, 20))
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    result = preprocess_volume(image, affine, brain)
    back = slices_to_volume(result.slices, result.geometry)
    assert back.shape == image.shape
    np.testing.assert_allclose(back[brain], np.clip(image[brain] / result.clip_value, 0, 1), atol=1e-6)


def test_anisotropic_round_trip_is_close_for_smooth_images():
    image, brain = blob_volume((50, 60, 24))
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    result = preprocess_volume(image, affine, brain)
    assert result.slices.shape[0] == resampled_length(24, 2.5)
    back = slices_to_volume(result.slices, result.geometry)
    inner = brain & (np.abs(np.gradient(brain.astype(float), axis=2)) == 0)
    expected = np.clip(image / result.clip_value, 0, 1)
    assert np.abs(back[inner] - expected[inner]).mean() < 0.02


def test_lesion_masks_follow_the_image():
    image, brain = blob_volume((60, 70, 30))
    lesion = np.zeros_like(brain)
    lesion[25:35, 30:40, 10:20] = True
    result = preprocess_volume(image, np.eye(4), brain, lesion)
    assert result.lesion.sum() == lesion.sum()


def test_bad_volumes_are_refused_with_a_reason():
    with pytest.raises(PreprocessingError, match="no brain voxel"):
        preprocess_volume(np.zeros((10, 10, 10), np.float32), np.eye(4))
    with pytest.raises(PreprocessingError, match="3-D"):
        preprocess_volume(np.zeros((10, 10), np.float32), np.eye(4))
    with pytest.raises(PreprocessingError, match="brain mask shape"):
        preprocess_volume(np.ones((10, 10, 10), np.float32), np.eye(4), np.ones((10, 10, 9)))


@pytest.mark.parametrize("count", [12_345, 12_370])     # fractional index 0.12 and 0.62: both branches
def test_clip_value_follows_the_documented_float32_percentile(count):
    """docs/preprocessing.md §5 spells out numpy's linear percentile in float32; the Swift side copies it."""
    values = np.sort(np.random.default_rng(3).gamma(2.0, 300.0, count).astype(np.float32))
    h = 0.98 * (len(values) - 1)
    low = int(np.floor(h))
    t = h - low
    diff = np.float32(values[low + 1] - values[low])
    if t < 0.5:
        expected = np.float32(values[low] + np.float32(diff * np.float32(t)))
    else:
        expected = np.float32(values[low + 1] - np.float32(diff * np.float32(1 - t)))
    image = np.random.default_rng(4).permutation(values).reshape(5, -1, 1)
    result = preprocess_volume(image, np.eye(4))
    assert np.float32(result.clip_value) == expected


def test_load_nifti_prefers_the_sform_then_the_qform(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    sform, qform = np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([-1.0, 1.0, 1.0, 1.0])
    image = nib.Nifti1Image(data, None)
    image.set_sform(sform, code=2)
    image.set_qform(qform, code=1)
    nib.save(image, tmp_path / "both.nii.gz")
    loaded, affine = load_nifti(tmp_path / "both.nii.gz")
    assert loaded.dtype == np.float32 and np.array_equal(loaded, data)
    np.testing.assert_array_equal(affine, sform)
    image.set_sform(sform, code=0)
    nib.save(image, tmp_path / "qform.nii.gz")
    np.testing.assert_array_equal(load_nifti(tmp_path / "qform.nii.gz")[1], qform)
