import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mimood_train import pipeline
from mimood_train.checkpoint import load_checkpoint
from mimood_train import fixtures
from mimood_train.fixtures import write_fixtures

COMMITTED = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "parity"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("parity"))


def files_below(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_fixtures_regenerate_byte_for_byte(regenerated):
    if not COMMITTED.is_dir():
        pytest.skip(f"{COMMITTED} is absent: run python -m mimood_train.fixtures")
    committed, fresh = files_below(COMMITTED), files_below(regenerated)
    assert sorted(committed) == sorted(fresh)
    different = [name for name in committed if committed[name] != fresh[name]]
    assert not different, f"fixtures differ from a fresh run: {different}"


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


def test_default_model_fixtures_regenerate_byte_for_byte(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    committed = repo / "Tests" / "Fixtures" / "default-model"
    fixtures.write_default_model_fixtures(repo / "Models" / "default", tmp_path)
    for name in ("tokens.npy", "token_margins.npy", "atd_probabilities.npy"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
