import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from mimood_train import pipeline
from mimood_train.checkpoint import load_checkpoint
import fixtures
from fixtures import write_fixtures

COMMITTED = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "parity"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("parity"))


def assert_same_arrays(fresh: Path, committed: Path, name: str, tolerance: float | None) -> None:
    """Integers exactly; floats within a quarter of the parity `tolerance` (0 when None): summation order,
    and so the last bits, depends on the CPU's kernels, so fixtures made on one machine regenerate on
    another only to rounding (4e-5 in the decoder's output between two x86 machines); a quarter still
    leaves the committed fixtures a valid reference for the Swift engine's parity."""
    new, old = np.load(fresh / name), np.load(committed / name)
    assert new.dtype == old.dtype and new.shape == old.shape, name
    if new.dtype.kind == "f":
        np.testing.assert_allclose(new, old, rtol=0, atol=(tolerance or 0) / 4, err_msg=name)
    else:
        assert np.array_equal(new, old), name


def test_committed_fixtures_regenerate(regenerated):
    if not COMMITTED.is_dir():
        pytest.skip(f"{COMMITTED} is absent: run python Training/tools/fixtures.py")
    relative = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert relative(COMMITTED) == relative(regenerated)
    index = json.loads((COMMITTED / "index.json").read_text())
    fresh_index = json.loads((regenerated / "index.json").read_text())
    assert fresh_index["arrays"] == index["arrays"]
    assert fresh_index["pipeline"] == pytest.approx(index["pipeline"], abs=1e-6)
    for name, entry in index["arrays"].items():
        assert_same_arrays(regenerated, COMMITTED, entry["file"], entry.get("tolerance"))
    for directory in ("checkpoint", index["local_checkpoint"]["directory"]):
        manifest, fresh = (json.loads((root / directory / "model.json").read_text()) for root in (COMMITTED, regenerated))
        for entries in (manifest["components"], fresh["components"]):
            for entry in entries.values():
                entry.pop("sha256")   # of weights that agree to rounding, checked below
        # λ lies between two recorded scores, so it moves with them by rounding too.
        lambdas = [m["inference"].pop("lambda", None) for m in (manifest, fresh)]
        assert lambdas[1] == pytest.approx(lambdas[0], abs=1e-6)
        assert fresh == manifest
        for component in manifest["components"]:
            old, new = (load_file(root / directory / f"{component}.safetensors") for root in (COMMITTED, regenerated))
            assert sorted(old) == sorted(new)
            for key in old:
                np.testing.assert_allclose(new[key], old[key], rtol=0, atol=1e-5, err_msg=f"{directory}/{component}: {key}")


def test_fixtures_exercise_both_branches(regenerated):
    index = json.loads((regenerated / "index.json").read_text())
    tokens = np.load(regenerated / "tokens.npy")
    assert len(np.unique(tokens)) > 16                  # the phantoms use many codes
    masks = np.load(regenerated / "pipeline_masks.npy")
    assert index["pipeline"]["steps_run"] == masks.shape[0] >= 2
    assert 0.1 < masks[0].mean() < 0.9                  # some tokens resampled, some kept
    scores = np.load(regenerated / "pipeline_scores.npy")
    margin = float(np.abs(scores - index["pipeline"]["lambda"]).min())
    assert margin == index["pipeline"]["lambda_margin"] > 5e-5   # no mask decision within float error of λ
    assert index["token_margin"] > 1e-3                 # no nearest-code decision within float error
    assert len(np.unique(np.load(regenerated / "local_tokens.npy"))) > 16   # the same for the local tokenizer
    # Unit vectors: squared distances ≤ 4, whose float32 rounding is about 2e-6 in 8 dimensions.
    assert index["local_checkpoint"]["token_margin"] > 2e-5
    total = sum(p.stat().st_size for p in regenerated.rglob("*") if p.is_file())
    assert total < 10e6


def test_checkpoint_reproduces_the_recorded_restoration(regenerated):
    index = json.loads((regenerated / "index.json").read_text())
    settings = index["pipeline"]
    models = load_checkpoint(regenerated / "checkpoint").models
    x = torch.from_numpy(np.load(regenerated / "input.npy"))
    tokens = pipeline.tokenize(models["vqvae"], x)
    assert torch.equal(tokens, torch.from_numpy(np.load(regenerated / "tokens.npy")).long())
    samples = [torch.from_numpy(s).long() for s in np.load(regenerated / "pipeline_samples.npy")]
    replayed = pipeline.replay_mim_ood(models["atd"], tokens, samples, lam=settings["lambda"],
                                       steps=settings["steps"], restorations=settings["restorations"],
                                       mask_id=settings["mask_id"])
    assert torch.equal(replayed.tokens, torch.from_numpy(np.load(regenerated / "pipeline_tokens.npy")).long())
    restored = pipeline.decode(models["vqvae"], replayed.tokens)
    maps = pipeline.anomaly_map(x, restored, combine="mean")
    np.testing.assert_allclose(maps.numpy(), np.load(regenerated / "anomaly_map_mean.npy"), atol=1e-5)


def test_default_model_fixtures_regenerate(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    committed = repo / "Tests" / "Fixtures" / "default-model"
    fixtures.write_default_model_fixtures(repo / "Models" / "default", tmp_path)
    tolerance = json.loads((committed / "index.json").read_text())["tolerance"]
    for name in ("tokens.npy", "token_margins.npy", "atd_probabilities.npy"):
        assert_same_arrays(tmp_path, committed, name, tolerance)
