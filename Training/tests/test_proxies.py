import json

import numpy as np
import pytest
import torch

from mimood_train.models import VQVAE, TokenTransformer
from mimood_train.proxies import (IMAGE_FAMILIES, blob, build_image_proxies, deform, moved_codes, parse_weights,
                                  patch, token_region)
from mimood_train.objectives import build_task
from mimood_train.train import train

from support import GRID, brain_image, slices, tiny_bundle, tokens


def test_parse_weights():
    assert parse_weights("random=1,moved=0.5,blob") == {"random": 1.0, "moved": 0.5, "blob": 1.0}
    with pytest.raises(ValueError, match="unknown proxy family 'glioma'"):
        parse_weights("glioma=1")
    with pytest.raises(ValueError):
        parse_weights("random=0")


def test_moved_codes_are_the_grid_shifted_by_two_or_more():
    rng = np.random.default_rng(0)
    grids = torch.from_numpy(rng.integers(0, 1000, (5, GRID * GRID)))
    moved = moved_codes(grids, rng, GRID)
    for before, after in zip(grids.reshape(-1, GRID, GRID), moved.reshape(-1, GRID, GRID)):
        shifts = [(dy, dx) for dy in range(-GRID, GRID) for dx in range(-GRID, GRID)
                  if torch.equal(torch.roll(before, (dy, dx), (0, 1)), after)]
        assert shifts and all(max(abs(dy) % GRID, abs(dx) % GRID) >= 2 for dy, dx in shifts[:1])


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_image_corruptions_stay_in_range_and_inside_their_region(family):
    image, brain = brain_image()
    donor, donor_brain = brain_image(1)
    rng = np.random.default_rng(3)
    if family == "blob":
        out, weight = blob(rng, image, brain)
    elif family == "patch":
        out, weight = patch(rng, image, brain, donor, donor_brain)
    else:
        out, weight = deform(rng, image, brain)
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    assert 0 <= weight.min() and weight.max() <= 1 and weight.max() > 0.5
    untouched = weight < 1e-6
    assert np.allclose(out[untouched], image[untouched], atol=1e-6)
    assert not np.allclose(out, image)


def test_blob_sign_brightens_or_darkens():
    image, brain = brain_image()
    bright, weight = blob(np.random.default_rng(0), image, brain, sign=1)
    dark, _ = blob(np.random.default_rng(0), image, brain, sign=-1)
    inside = weight > 0.5
    assert (bright - image)[inside].mean() > 0 > (dark - image)[inside].mean()


def test_token_region_dilates_by_one_token():
    weight = np.zeros((64, 64))
    weight[20, 20] = 1   # token (2, 2)
    region = token_region(weight)
    assert region.sum() == 9 and region[1:4, 1:4].all()
    assert token_region(weight, dilation=0).sum() == 1


@pytest.fixture(scope="module")
def image_proxies():
    bundle = tiny_bundle()
    torch.manual_seed(0)
    vqvae = VQVAE(bundle.vqvae).eval()
    images = np.stack([brain_image(i)[0] for i in range(4)]).astype(np.float32)
    clean = vqvae.tokenize(torch.from_numpy(images).unsqueeze(1)).numpy()
    arrays = build_image_proxies(vqvae, images, clean, count=9, seed=0, batch_size=4)
    return arrays, clean


def test_image_proxies_label_changed_codes_near_the_region(image_proxies):
    arrays, clean = image_proxies
    assert arrays["tokens"].shape == (9, GRID, GRID)
    assert list(arrays["family"]) == [0, 1, 2] * 3
    changed = arrays["tokens"] != clean[arrays["source"]]
    assert np.array_equal(arrays["label"] | arrays["ignore"], changed)
    assert not (arrays["label"] & arrays["ignore"]).any()


def mixed_task(image_proxies, proxies="random=1,cross_subject=1,moved=1,mvtm=1,blob=1,patch=1,deform=1",
               validation=None):
    import dataclasses
    bundle = tiny_bundle()
    cfg = dataclasses.replace(bundle.train["atd"], proxies=parse_weights(proxies), validate_every=2)
    arrays, _ = image_proxies
    torch.manual_seed(0)
    mvtm = TokenTransformer(bundle.mvtm)
    task = build_task("atd", bundle, cfg, slices(), tokens(), mvtm, image_proxies=arrays, validation=validation)
    return task, cfg


def test_mixed_atd_batch_targets_the_changed_codes(image_proxies):
    task, _ = mixed_task(image_proxies)
    batch = task.batch(np.random.default_rng(0), 64)
    assert batch["input"].shape == (64, GRID * GRID) and (batch["input"] < 32).all()
    assert 0 < batch["target"].mean() < 0.7
    assert (batch["weight"] < 1).any()   # image-space rows bring codes flipped far away, weighed 0
    only_moved, _ = mixed_task(image_proxies, "moved=1")
    batch = only_moved.batch(np.random.default_rng(0), 8)
    assert torch.equal(batch["weight"], torch.ones_like(batch["weight"]))


def test_families_without_their_inputs_are_refused(image_proxies):
    import dataclasses
    bundle = tiny_bundle()
    cfg = dataclasses.replace(bundle.train["atd"], proxies={"mvtm": 1.0})
    with pytest.raises(ValueError, match="needs an MVTM"):
        build_task("atd", bundle, cfg, slices(), tokens())
    cfg = dataclasses.replace(bundle.train["atd"], proxies={"blob": 1.0})
    with pytest.raises(ValueError, match="image-proxy cache"):
        build_task("atd", bundle, cfg, slices(), tokens())


def test_mixed_atd_resumes_bit_identically_and_logs_the_validation_curve(image_proxies, tmp_path):
    rng = np.random.default_rng(1)
    validation = {"tokens": rng.integers(0, 32, (6, GRID, GRID)).astype(np.int16),
                  "label": rng.random((6, GRID, GRID)) < 0.2, "scored": np.ones((6, GRID, GRID), bool)}
    straight, cfg = mixed_task(image_proxies, validation=validation)
    train(straight, cfg, tmp_path / "a", steps=4, progress=False)
    first, _ = mixed_task(image_proxies, validation=validation)
    train(first, cfg, tmp_path / "b", steps=4, stop_at=2, progress=False)
    resumed, _ = mixed_task(image_proxies, validation=validation)
    train(resumed, cfg, tmp_path / "b", resume=True, progress=False)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["val_ap"]) for r in log if "val_ap" in r]
    assert [step for step, _ in curve] == [2, 4] and all(0 < ap <= 1 for _, ap in curve)
