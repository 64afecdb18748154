import dataclasses
import numpy as np
import torch

from mimood_train.diagnosis import corruption_sets, lesion_token_set, score_token_set, tokenizer_locality
from mimood_train.models import VQVAE

from support import GRID, brain_image, tiny_bundle


def write_cache(path, n=6, with_lesion=True):
    images = np.stack([brain_image(i)[0] for i in range(n)]).astype(np.float16)
    brain = images > 0
    lesion = np.zeros_like(brain)
    lesion[:, 28:36, 28:44] = True
    arrays = {"slices": images, "brain": brain.astype(np.uint8)}
    if with_lesion:
        arrays["lesion"] = lesion.astype(np.uint8)
    np.savez(path, **arrays)
    return path


def tiny_vqvae():
    torch.manual_seed(0)
    return VQVAE(tiny_bundle().vqvae).eval()


class Oracle(torch.nn.Module):
    """A 'detector' whose logit is +10 on the given positions: scores its token set perfectly."""

    def __init__(self, sets):
        super().__init__()
        self.lookup = {tuple(t.reshape(-1).tolist()): l.reshape(-1) for t, l in zip(sets["tokens"], sets["label"])}

    def forward(self, sequences):
        return torch.stack([torch.from_numpy(np.where(self.lookup[tuple(s.tolist())], 10.0, -10.0))
                            for s in sequences]).unsqueeze(-1)


def test_lesion_token_set_labels_the_lesion_patches(tmp_path):
    token_set = lesion_token_set(tiny_vqvae(), str(write_cache(tmp_path / "c.npz")), limit=4)
    assert token_set["tokens"].shape == (3, GRID, GRID)   # every 2nd of 6 slices
    assert token_set["label"][0].sum() == 6 and token_set["label"][0, 3:5, 3:6].all()   # rows 28-35, cols 28-43
    assert (token_set["label"] <= token_set["scored"]).all()


def test_score_token_set_is_perfect_for_an_oracle(tmp_path):
    rng = np.random.default_rng(0)
    sets = {"tokens": rng.integers(0, 32, (4, GRID, GRID)).astype(np.int16),
            "label": rng.random((4, GRID, GRID)) < 0.3, "scored": np.ones((4, GRID, GRID), bool)}
    metrics = score_token_set(Oracle(sets), sets)
    assert metrics["ap"] == 1.0 and metrics["auroc"] == 1.0


def test_corruption_sets_label_changed_codes(tmp_path):
    vqvae = tiny_vqvae()
    sets = corruption_sets(vqvae, str(write_cache(tmp_path / "c.npz", with_lesion=False)), limit=6)
    assert set(sets) == {"random", "cross_subject", "moved", "bright_blob", "dark_blob"}
    for name, token_set in sets.items():
        assert token_set["tokens"].shape == (6, GRID, GRID), name
        assert token_set["label"].any(), name
    assert sets["random"]["label"].mean() > 0.03


def test_tokenizer_locality_reports_shares(tmp_path):
    report = tokenizer_locality(tiny_vqvae(), str(write_cache(tmp_path / "c.npz")), limit=6)
    assert report["slices"] == 6
    assert 0 <= report["noise_flipped_brain_tokens"] <= 1 and 0 <= report["patch_local_fraction"] <= 1
    assert report["patch_changed_far_mean"] <= report["patch_changed_tokens_mean"]
    assert report["brain_mae"] > 0 and 1 <= report["codes_used"] <= tiny_bundle().vqvae.n_embed


def test_the_patch_encoder_is_local_by_construction(tmp_path):
    torch.manual_seed(0)
    vqvae = VQVAE(dataclasses.replace(tiny_bundle().vqvae, encoder="patch", l2_codes=True)).eval()
    report = tokenizer_locality(vqvae, str(write_cache(tmp_path / "c.npz")), limit=6)
    assert report["patch_local_fraction"] == 1.0 and report["patch_changed_far_mean"] == 0
