import pytest
import torch

from mimood_train import pipeline
from mimood_train.config import TransformerConfig, VQVAEConfig
from mimood_train.models import VQVAE, TokenTransformer

K = 16


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    vqvae = VQVAE(VQVAEConfig(ch=32, ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[],
                              z_channels=8, embed_dim=8, n_embed=K)).eval()
    sizes = dict(dim=32, depth=1, heads=2, dropout=0.0)
    built = {"vqvae": vqvae}
    for head, vocab in (("atd", K), ("mvtm", K + 1), ("ar", K + 1), ("critic", K)):
        built[head] = TokenTransformer(TransformerConfig(vocab_size=vocab, head=head, causal=head == "ar",
                                                         **sizes)).eval()
    return built


def tokens(batch=2, seed=1):
    return torch.randint(0, K, (batch, 20, 20), generator=torch.Generator().manual_seed(seed))


def restore(models, lam, seed=3, steps=3, restorations=2):
    return pipeline.restore_mim_ood(models["atd"], models["mvtm"], tokens(), lam=lam, steps=steps,
                                    restorations=restorations, generator=torch.Generator().manual_seed(seed))


def test_threshold_one_masks_nothing_and_stops_at_once(models):
    result = restore(models, lam=1.0)
    assert result.steps_run == 0
    assert torch.equal(result.tokens, tokens().unsqueeze(1).expand(-1, 2, -1, -1))


def test_threshold_zero_resamples_every_token_each_step(models):
    result = restore(models, lam=0.0)
    assert result.steps_run == 3 and all(mask.all() for mask in result.masks)
    assert torch.equal(result.tokens, result.samples[-1])


def test_same_seed_same_restoration_other_seed_differs(models):
    first, second, other = restore(models, 0.0, seed=5), restore(models, 0.0, seed=5), restore(models, 0.0, seed=6)
    assert torch.equal(first.tokens, second.tokens)
    assert not torch.equal(first.tokens, other.tokens)


def test_restorations_are_independent_draws(models):
    result = restore(models, lam=0.0, restorations=3)
    assert not torch.equal(result.tokens[:, 0], result.tokens[:, 1])


def test_replay_from_recorded_draws_equals_the_run(models):
    with torch.no_grad():
        lam = float(torch.median(pipeline.token_probabilities(models["atd"], tokens().reshape(2, -1))))
    original = restore(models, lam)
    assert 0 < original.masks[0].float().mean() < 1
    replayed = pipeline.replay_mim_ood(models["atd"], tokens(), original.samples, lam=lam, steps=3,
                                       restorations=2, mask_id=K)
    assert torch.equal(replayed.tokens, original.tokens)
    assert replayed.steps_run == original.steps_run


def test_min_pool_removes_a_one_pixel_spike_and_keeps_blocks():
    x = torch.zeros(1, 1, 20, 20)
    x[0, 0, 3, 3] = 1.0                        # a thin edge residual
    x[0, 0, 10:18, 10:18] = 0.5                # a real anomaly
    smoothed = pipeline.min_pool(x, 3)
    assert smoothed[0, 0, 3, 3] == 0
    assert torch.all(smoothed[0, 0, 11:17, 11:17] == 0.5)
    constant = torch.full((1, 1, 12, 12), 0.25)
    assert torch.allclose(pipeline.avg_pool(pipeline.min_pool(constant, 3), 7), constant)   # borders too


def test_softmax_weighting_equals_mean_for_equal_residuals_and_favours_the_closest():
    x = torch.zeros(1, 1, 16, 16)
    same = torch.full((1, 3, 1, 16, 16), 0.2)
    assert torch.allclose(pipeline.anomaly_map(x, same, combine="softmax-weighted"),
                          pipeline.anomaly_map(x, same, combine="mean"))
    near_far = torch.cat([torch.full((1, 1, 1, 16, 16), 0.1), torch.full((1, 1, 1, 16, 16), 0.4)], dim=1)
    weighted = pipeline.anomaly_map(x, near_far, combine="softmax-weighted")
    assert float(weighted.mean()) < float(pipeline.anomaly_map(x, near_far, combine="mean").mean())
    with pytest.raises(ValueError, match="combine"):
        pipeline.anomaly_map(x, same, combine="median")


def test_ar_restoration_keeps_likely_tokens_and_resamples_in_raster_order(models):
    generator = torch.Generator().manual_seed(0)
    kept, resampled = pipeline.restore_ar(models["ar"], tokens(1), lambda_nll=1e9, restorations=1, generator=generator)
    assert not resampled.any() and torch.equal(kept[:, 0], tokens(1))
    everything, resampled = pipeline.restore_ar(models["ar"], tokens(1), lambda_nll=-1.0, restorations=2,
                                                generator=torch.Generator().manual_seed(0))
    assert resampled.all() and everything.shape == (1, 2, 20, 20)


def test_detect_end_to_end_shapes(models):
    x = torch.rand(2, 1, 160, 160)
    detection = pipeline.detect_mim_ood(models["vqvae"], models["atd"], models["mvtm"], x, lam=0.5, steps=2,
                                        restorations=2, generator=torch.Generator().manual_seed(0))
    assert detection.restored_images.shape == (2, 2, 1, 160, 160)
    assert detection.anomaly_map.shape == (2, 1, 160, 160)
    assert 0 <= float(detection.anomaly_map.min()) and float(detection.anomaly_map.max()) <= 1
    assert detection.restoration.token_heatmap.shape == (2, 20, 20)


def test_a_background_only_image_is_left_as_it_is_with_a_zero_map(models):
    x = torch.rand(2, 1, 160, 160)
    x[1] = 0
    detection = pipeline.detect_mim_ood(models["vqvae"], models["atd"], models["mvtm"], x, lam=0.0, steps=2,
                                        restorations=2, generator=torch.Generator().manual_seed(0))
    restoration = detection.restoration
    assert restoration.masks[0][0].all(), "λ 0 resamples every token of the image with brain"
    assert not any(mask[1].any() for mask in restoration.masks)
    assert torch.equal(restoration.tokens[1], detection.tokens[1].expand(2, -1, -1))
    assert float(restoration.token_heatmap[1].abs().max()) == 0
    assert torch.equal(detection.restored_images[1], x[1].expand(2, -1, -1, -1))
    assert float(detection.anomaly_map[1].max()) == 0
