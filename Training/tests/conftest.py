"""pytest fixtures shared by several test files: one Torch thread, tiny trained run directories and slice
caches for the evaluation and report-figure tests."""
import numpy as np
import pytest
import torch

from mimood_train.config import COMPONENTS, ConfigBundle, TrainConfig, TransformerConfig, VQVAEConfig
from mimood_train.masks import BrushConfig
from mimood_train.objectives import build_task
from mimood_train.train import train
from support import GRID, K, SIZE


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions run far slower with two threads on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def evaluation_bundle() -> ConfigBundle:
    vqvae = VQVAEConfig(ch=32, ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[], resolution=SIZE,
                        z_channels=8, embed_dim=8, n_embed=K)
    sizes = dict(n_positions=GRID * GRID, dim=32, depth=1, heads=2, dropout=0.0, drop_path=0.0)
    train_cfg = TrainConfig(steps=2, batch_size=2, lr=1e-3, warmup_steps=1, log_every=1, ckpt_every=1,
                            brush=BrushConfig(min_length=1, max_length=3, max_width=2))
    return ConfigBundle(vqvae=vqvae,
                        atd=TransformerConfig(vocab_size=K, head="atd", **sizes),
                        mvtm=TransformerConfig(vocab_size=K + 1, head="mvtm", **sizes),
                        ar=TransformerConfig(vocab_size=K + 1, head="ar", causal=True, **sizes),
                        critic=TransformerConfig(vocab_size=K, head="critic", **sizes),
                        train={component: train_cfg for component in COMPONENTS})


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    """The five networks trained for two steps each, as run directories like the real ones."""
    root = tmp_path_factory.mktemp("runs")
    bundle = evaluation_bundle()
    torch.manual_seed(0)
    images = [torch.rand(1, SIZE, SIZE) for _ in range(4)]
    grids = np.random.default_rng(0).integers(0, K, (4, 1, GRID, GRID)).astype(np.int16)
    mvtm = None
    for component in COMPONENTS:   # the critic comes after the MVTM it samples from
        task = build_task(component, bundle, bundle.train[component], images, grids, mvtm)
        train(task, bundle.train[component], root / component, progress=False)
        mvtm = task.model if component == "mvtm" else mvtm
    return root


def write_cache(path, n, lesions: bool, seed=0, size=SIZE):
    """A slice cache of n disc-shaped 'brains'; with lesions, a bright square in every other slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    brain = np.repeat(((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2)[None], n, axis=0)
    slices = np.where(brain, rng.uniform(0.2, 0.6, (n, size, size)), 0.0)
    arrays = {"brain": brain.astype(np.uint8), "subject": (2 * np.arange(n) // n).astype(np.int32),
              "slice_index": np.arange(n, dtype=np.int32), "subjects": np.array(["a", "b"])}
    if lesions:
        lesion = np.zeros((n, size, size), dtype=bool)
        side = size // 5
        for i in range(0, n, 2):
            top, left = rng.integers(size // 5, size - 2 * side, 2)
            lesion[i, top:top + side, left:left + side] = True
        slices = np.where(lesion, 1.0, slices)
        arrays["lesion"] = lesion.astype(np.uint8)
    np.savez(path, slices=slices.astype(np.float16), **arrays)


@pytest.fixture(scope="session")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    write_cache(root / "val.npz", 6, lesions=False)
    write_cache(root / "val_anomalous.npz", 8, lesions=True, seed=1)
    write_cache(root / "test_anomalous.npz", 4, lesions=True, seed=2)
    return root
