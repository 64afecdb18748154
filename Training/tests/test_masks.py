import numpy as np
from scipy import ndimage

from mimood_train.masks import BrushConfig, brush_mask, brush_masks, brush_stroke

EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def test_coverage_statistics():
    masks = brush_masks(np.random.default_rng(0), 1000, grid=20)
    coverage = masks.reshape(len(masks), -1).mean(1)
    print(f"coverage mean {coverage.mean():.3f} std {coverage.std():.3f} "
          f"p5 {np.percentile(coverage, 5):.3f} p95 {np.percentile(coverage, 95):.3f} max {coverage.max():.3f}")
    cfg = BrushConfig()
    assert masks.dtype == bool and masks.shape == (1000, 20, 20)
    assert 0.25 <= coverage.mean() <= 0.35          # target U(0.03, 0.5) -> ~0.27 plus overshoot
    assert coverage.min() > 0 and coverage.max() <= cfg.max_ratio < 1
    assert np.percentile(coverage, 10) < 0.15 and np.percentile(coverage, 90) > 0.4   # small to large


def test_strokes_are_connected_and_within_width():
    rng = np.random.default_rng(1)
    for _ in range(300):
        stroke = brush_stroke(rng, 20, BrushConfig())
        _, n_components = ndimage.label(stroke, structure=EIGHT_CONNECTED)
        assert n_components == 1


def test_single_segment_width_one_is_a_thin_line():
    cfg = BrushConfig(min_segments=1, max_segments=1, min_width=1, max_width=1, min_length=6, max_length=6)
    stroke = brush_stroke(np.random.default_rng(2), 20, cfg)
    assert 2 <= stroke.sum() <= 14   # ~6 tokens long, one token wide (clipped at borders)


def test_seeded_and_ratio_control():
    a = brush_mask(np.random.default_rng(5))
    b = brush_mask(np.random.default_rng(5))
    assert np.array_equal(a, b)
    small = brush_masks(np.random.default_rng(3), 200, cfg=BrushConfig(min_ratio=0.02, max_ratio=0.1))
    assert small.reshape(200, -1).mean(1).max() <= 0.1
    assert small.reshape(200, -1).any(1).all()
