import dataclasses
import json
import sys
import types

import numpy as np
import pytest
import torch

from mimood_train import train as train_module
from mimood_train.config import CONFIGS
from mimood_train.models import TokenTransformer
from mimood_train.loading import dihedral, load_model, load_or_build_tokens, tokenize_dataset
from mimood_train.objectives import build_task
from mimood_train.train import train
from support import GRID, slices, tiny_bundle, tokens

def make_task(component, bundle=None):
    bundle = bundle or tiny_bundle()
    torch.manual_seed(0)
    mvtm = TokenTransformer(bundle.mvtm) if component == "critic" else None
    return build_task(component, bundle, bundle.train[component], slices(), tokens(), mvtm)


@pytest.mark.parametrize("component", ["vqvae", "atd", "mvtm", "ar", "critic"])
def test_training_lowers_loss_on_fixed_batch(component):
    task = make_task(component)
    batch = task.batch(np.random.default_rng(0), 4)
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=2e-3)
    task.model.eval()   # fixed dropout/drop-path so that the loss is comparable
    losses = []
    for _ in range(6):
        loss, metrics = task.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert all(np.isfinite(v) for v in metrics.values())


def test_denoising_feeds_the_encoder_noise_and_consistency_adds_a_pull_to_the_clean_code():
    bundle = tiny_bundle()
    bundle.train["vqvae"] = dataclasses.replace(bundle.train["vqvae"], input_noise=0.05)
    task = make_task("vqvae", bundle)
    batch = task.batch(np.random.default_rng(0), 4)
    brain = batch["x"] > 0
    assert not torch.equal(batch["encoder_input"][brain], batch["x"][brain])
    assert torch.equal(batch["encoder_input"][~brain], batch["x"][~brain])   # background stays zero
    _, plain = task.loss(dict(batch))
    task.train_cfg = dataclasses.replace(task.train_cfg, consistency=1.0)
    _, pulled = task.loss(dict(batch))
    assert pulled["vq"] > plain["vq"] and pulled["mae"] == plain["mae"]


def test_latent_batches():
    rng = np.random.default_rng(0)
    atd = make_task("atd").batch(rng, 4)
    assert atd["input"].shape == (4, GRID * GRID) and atd["target"].sum() > 0
    mvtm = make_task("mvtm").batch(rng, 4)
    assert (mvtm["input"][mvtm["mask"]] == 32).all() and (mvtm["input"][~mvtm["mask"]] < 32).all()
    ar = make_task("ar").batch(rng, 4)
    assert (ar["input"][:, 0] == 32).all() and torch.equal(ar["input"][:, 1:], ar["target"][:, :-1])
    critic = make_task("critic").batch(rng, 4)
    assert (critic["input"] < 32).all()


def _same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("component", ["vqvae", "mvtm"])
def test_resume_is_bit_identical(tmp_path, component):
    cfg = tiny_bundle().train[component]
    straight = make_task(component)
    train(straight, cfg, tmp_path / "a", steps=4, progress=False)
    first = make_task(component)
    train(first, cfg, tmp_path / "b", steps=4, stop_at=2, progress=False)
    assert not (tmp_path / "b" / "model.pt").exists()
    resumed = make_task(component)   # a fresh process: new model, state from disk
    train(resumed, cfg, tmp_path / "b", resume=True, progress=False)   # total steps come from state.pt
    assert _same_weights(straight.model.state_dict(), resumed.model.state_dict())
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    if component == "vqvae":
        assert {"code_usage", "perplexity", "mae"} <= set(log[0]) and log[0]["reseeded"] == 32
    else:
        assert "masked_accuracy" in log[0]
    exported = load_model(tmp_path / "b", component)
    assert _same_weights(exported.state_dict(), resumed.model.state_dict())


def test_tokenize_dataset_views():
    task = make_task("vqvae")
    data = slices(3)
    grids = tokenize_dataset(task.model, data, views=8)
    assert grids.shape == (3, 8, GRID, GRID) and grids.dtype == np.int16
    image = torch.stack(data)
    assert np.array_equal(grids[:, 5], task.model.tokenize(dihedral(image, 5)).numpy())


def test_cli_end_to_end(tmp_path, monkeypatch, capsys):
    """vqvae -> (tokens) -> atd, mvtm, ar -> critic through main(), with a stand-in data module."""
    fake = types.ModuleType("mimood_train.data")
    fake.SliceDataset = lambda path: slices(5)
    monkeypatch.setitem(sys.modules, "mimood_train.data", fake)
    monkeypatch.setitem(CONFIGS, "tiny", tiny_bundle())
    common = ["--config", "tiny", "--data", str(tmp_path / "cache.npz"), "--steps", "2", "--threads", "1"]
    train_module.main(["vqvae", "--out", str(tmp_path / "vq"), *common])
    for component in ("atd", "mvtm", "ar"):
        train_module.main([component, "--out", str(tmp_path / component), "--vqvae", str(tmp_path / "vq"), *common])
    train_module.main(["critic", "--out", str(tmp_path / "critic"), "--vqvae", str(tmp_path / "vq"),
                       "--mvtm", str(tmp_path / "mvtm"), *common])
    assert (tmp_path / "vq" / "tokens_cache_v2.npz").exists()
    for run in ("vq", "atd", "mvtm", "ar", "critic"):
        saved = torch.load(tmp_path / run / "model.pt", weights_only=False)
        assert set(saved) == {"component", "config", "state_dict"}
    assert "[critic] step 2/2" in capsys.readouterr().out
    # --init starts from trained weights: with a zero learning rate they come out unchanged.
    train_module.main(["atd", "--out", str(tmp_path / "atd-ft"), "--vqvae", str(tmp_path / "vq"), "--init",
                       str(tmp_path / "atd"), "--lr", "0", *common])
    assert _same_weights(load_model(tmp_path / "atd-ft", "atd").state_dict(), load_model(tmp_path / "atd", "atd").state_dict())


def test_resume_with_more_steps_lengthens_the_schedule(tmp_path):
    cfg = tiny_bundle().train["mvtm"]
    train(make_task("mvtm"), cfg, tmp_path, steps=4, stop_at=2, progress=False)
    train(make_task("mvtm"), cfg, tmp_path, steps=8, stop_at=4, resume=True, progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and log[-1]["lr"] > 0   # a 4-step schedule would have decayed to 0 here


def test_token_cache_is_written_into_a_new_folder(tmp_path):
    vqvae = make_task("vqvae")
    train(vqvae, tiny_bundle().train["vqvae"], tmp_path / "vq", steps=1, progress=False)
    path = tmp_path / "not" / "yet" / "tokens.npz"
    grids = load_or_build_tokens(str(tmp_path / "vq"), "cache.npz", slices(3), 1, str(path))
    assert path.exists() and np.array_equal(np.load(path)["tokens"], grids)


def test_load_model_from_unfinished_run(tmp_path):
    task = make_task("atd")
    train(task, tiny_bundle().train["atd"], tmp_path, steps=4, stop_at=2, progress=False)
    loaded = load_model(tmp_path, "atd")   # no model.pt yet: falls back to state.pt
    assert _same_weights(loaded.state_dict(), task.model.state_dict())
    with pytest.raises(ValueError):
        load_model(tmp_path, "mvtm")


def test_time_budget_shortens_the_schedule(tmp_path, monkeypatch):
    # A fake clock: every call advances one second, so each step "takes" a fixed number of seconds.
    ticks = iter(range(10**6))
    monkeypatch.setattr(train_module.time, "time", lambda: float(next(ticks)))
    task = make_task("atd")
    cfg = tiny_bundle().train["atd"]
    budget_steps = train_module.BUDGET_WARMUP_STEPS + train_module.BUDGET_TIMED_STEPS
    run = train(task, cfg, tmp_path, steps=10_000, time_budget=3 * budget_steps, progress=False)
    planned = json.loads((run / "config.json").read_text())["total_steps"]
    assert budget_steps < planned < 10_000
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == planned
    assert (run / "model.pt").exists()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_options_train_on_cpu(tmp_path, precision):
    task = make_task("vqvae")
    train(task, tiny_bundle().train["vqvae"], tmp_path, steps=2, progress=False, precision=precision)
    saved = torch.load(tmp_path / "model.pt", weights_only=False)
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in saved["state_dict"].values())
