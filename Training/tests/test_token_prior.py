"""The positional code-frequency prior: counts, smoothing, normalisation, its file and its command line."""
import math

import numpy as np
import pytest
import torch

from mimood_train.token_prior import (TokenPrior, TokenPriorConfig, build_prior, load_prior, main, read_token_grids,
                                      save_prior)


def test_unsmoothed_prior_is_the_add_alpha_frequency_at_each_position():
    # Position 0 holds code 1 in 3 grids of 4 and code 2 in one; K = 4, α = 0.5.
    grids = np.zeros((4, 2, 2), dtype=np.int16)
    grids[:, 0, 0] = [1, 1, 1, 2]
    prior = build_prior(grids, n_codes=4, alpha=0.5, sigma=0)
    probability = prior.log_prob.exp()
    assert probability[0].tolist() == pytest.approx([0.5 / 6, 3.5 / 6, 1.5 / 6, 0.5 / 6])
    assert probability[1].tolist() == pytest.approx([4.5 / 6, 0.5 / 6, 0.5 / 6, 0.5 / 6])   # code 0 everywhere else
    assert torch.allclose(probability.sum(1), torch.ones(4))


def test_scores_are_minus_log_probability_of_each_token_at_its_position():
    grids = np.zeros((4, 2, 2), dtype=np.int16)
    grids[:, 0, 0] = [1, 1, 1, 2]
    prior = build_prior(grids, n_codes=4, alpha=0.5, sigma=0)
    scores = prior(torch.tensor([[1, 0, 0, 3], [0, 0, 0, 0]]))
    assert scores[0].tolist() == pytest.approx([-math.log(3.5 / 6), -math.log(4.5 / 6), -math.log(4.5 / 6), -math.log(0.5 / 6)])
    assert scores[1, 0] > scores[0, 0]   # code 0 is rarer than code 1 at position 0


def test_smoothing_spreads_counts_to_neighbouring_positions_only():
    # Code 3 occurs at the centre of a 5×5 grid only; with σ = 1 it becomes likelier next to the centre than far away.
    grids = np.zeros((10, 5, 5), dtype=np.int16)
    grids[:, 2, 2] = 3
    sharp = build_prior(grids, n_codes=4, alpha=1, sigma=0).log_prob.exp()[:, 3].reshape(5, 5)
    smooth = build_prior(grids, n_codes=4, alpha=1, sigma=1).log_prob.exp()[:, 3].reshape(5, 5)
    assert float(sharp[2, 3]) == pytest.approx(1 / 14, rel=1e-6) and smooth[2, 3] > 1.5 * sharp[2, 3]
    assert smooth[2, 2] < sharp[2, 2] and smooth[2, 3] > smooth[2, 4] > smooth[0, 0]


def test_refuses_codes_outside_the_codebook_and_bad_settings():
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        build_prior(np.full((1, 2, 2), 4, dtype=np.int16), n_codes=4)
    with pytest.raises(ValueError, match="alpha"):
        build_prior(np.zeros((1, 2, 2), dtype=np.int16), n_codes=4, alpha=0)
    with pytest.raises(ValueError, match="sigma"):
        TokenPriorConfig(sigma=-1)


def test_reads_npy_grids_and_npz_variants(tmp_path):
    grids = np.arange(2 * 3 * 2 * 2, dtype=np.int16).reshape(2, 3, 2, 2)
    np.savez(tmp_path / "cache.npz", tokens=grids)
    np.save(tmp_path / "grids.npy", grids[0])
    assert read_token_grids(tmp_path / "cache.npz").shape == (6, 2, 2)
    assert np.array_equal(read_token_grids(tmp_path / "grids.npy"), grids[0])
    np.save(tmp_path / "flat.npy", grids.reshape(-1))
    with pytest.raises(ValueError, match=r"\[N, h, w\]"):
        read_token_grids(tmp_path / "flat.npy")


def test_cli_writes_a_prior_that_loads_back(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "tokens.npy", rng.integers(0, 16, size=(30, 4, 4)).astype(np.int16))
    assert main(["--tokens", str(tmp_path / "tokens.npy"), "--out", str(tmp_path / "prior.pt"),
                 "--alpha", "0.1", "--sigma", "0.5", "--codes", "16"]) == 0
    assert "30 grids of 4×4, K = 16" in capsys.readouterr().out
    prior, source = load_prior(tmp_path / "prior.pt")
    assert prior.cfg == TokenPriorConfig(n_positions=16, n_codes=16, alpha=0.1, sigma=0.5)
    assert source["grids"] == 30
    expected = build_prior(np.load(tmp_path / "tokens.npy"), 16, 0.1, 0.5)
    assert torch.equal(prior.log_prob, expected.log_prob)


def test_save_and_load_keep_the_table(tmp_path):
    prior = TokenPrior(TokenPriorConfig(n_positions=4, n_codes=3))
    prior.log_prob.copy_(torch.log(torch.full((4, 3), 1 / 3)))
    save_prior(prior, tmp_path / "p.pt", {"tokens": "x"})
    loaded, source = load_prior(tmp_path / "p.pt")
    assert torch.equal(loaded.log_prob, prior.log_prob) and source == {"tokens": "x"}
