"""Training entry point for the five networks.

    python -m mimood_train.train {vqvae,atd,mvtm,ar,critic} --config small --data CACHE.npz \
        --out RUNDIR [--steps N] [--stop-at N] [--resume] [--vqvae VQVAE_RUNDIR] [--mvtm MVTM_RUNDIR]

RUNDIR receives `state.pt` (full training state, written atomically every ckpt_every steps and at
the end), `model.pt` ({component, config, state_dict} of the final weights), `config.json` and
`log.jsonl` (one JSON object per logged step).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import COMPONENTS, CONFIGS, ConfigBundle, TrainConfig, TransformerConfig, VQVAEConfig
from .masks import brush_masks
from .proxies import IMAGE_FAMILIES, moved_codes, mvtm_codes, parse_weights, random_codes
from .models import VQVAE, TokenTransformer, codebook_stats, shift_right


class SliceSource(Protocol):
    """What the VQ-VAE trainer needs from a dataset: float [1, H, W] slices in [0, 1]."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> torch.Tensor: ...


# ---------------------------------------------------------------- augmentation and tokenisation

def dihedral(x: torch.Tensor, view: int) -> torch.Tensor:
    """View 0..7 of the square's symmetry group on the last two dims: a left-right flip when view is
    odd, then view // 2 counter-clockwise quarter turns. Views 0-1 are identity and mirror image."""
    if view % 2:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, view // 2, dims=(-2, -1))


def augment_slices(x: torch.Tensor, rng: np.random.Generator, cfg: TrainConfig) -> torch.Tensor:
    """Broad intensity augmentation (gamma, then scale/shift of the foreground, clipped to [0, 1])
    and a random dihedral view. Background (exact zeros) stays zero."""
    out = []
    for sample in x:
        gamma = math.exp(rng.uniform(math.log(cfg.gamma_range[0]), math.log(cfg.gamma_range[1])))
        scale = rng.uniform(*cfg.scale_range)
        shift = rng.uniform(*cfg.shift_range)
        foreground = sample > 0
        sample = torch.where(foreground, (sample.clamp(min=0) ** gamma * scale + shift).clamp(0, 1), sample)
        if cfg.dihedral:
            sample = dihedral(sample, int(rng.integers(8)))
        out.append(sample)
    return torch.stack(out)


@torch.no_grad()
def tokenize_dataset(vqvae: VQVAE, data: SliceSource, views: int, batch_size: int = 32) -> np.ndarray:
    """Token grids of every slice under the first `views` dihedral views: [N, views, h, w] int16.
    Flipping/rotating a token grid is not the same as tokenising a flipped image, so latent-model
    augmentation is done here, on images, before tokenising. Runs on the VQ-VAE's device."""
    vqvae.eval()
    device = next(vqvae.parameters()).device
    tokens = np.zeros((len(data), views, vqvae.cfg.grid, vqvae.cfg.grid), dtype=np.int16)
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        images = torch.stack([torch.as_tensor(data[i]) for i in range(start, stop)]).float().to(device)
        for view in range(views):
            tokens[start:stop, view] = vqvae.tokenize(dihedral(images, view)).cpu().numpy()
    return tokens


# ---------------------------------------------------------------- the five tasks

class Task:
    """A network, how to draw its batch and how to score it. Subclasses keep no state outside
    `extra_state()`, so that a resumed run continues bit-identically."""

    component: str
    model: nn.Module
    device = torch.device("cpu")

    def to(self, device: torch.device) -> None:
        """Moves the model (and any state the loss touches) to `device`; batches follow in `train`."""
        self.device = device
        self.model.to(device)

    def batch(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, step: int, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return {}

    def validation_metrics(self) -> dict[str, float]:
        """Held-out measures logged every `validate_every` steps (none by default)."""
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


class VQVAETask(Task):
    component = "vqvae"

    def __init__(self, cfg: VQVAEConfig, train_cfg: TrainConfig, data: SliceSource):
        self.model, self.train_cfg, self.data = VQVAE(cfg), train_cfg, data
        self.usage = torch.zeros(cfg.n_embed)   # code hits since the last re-seed

    def batch(self, rng, batch_size):
        x = torch.stack([torch.as_tensor(self.data[int(i)]) for i in rng.integers(0, len(self.data), batch_size)])
        x = x.float()
        return {"x": augment_slices(x, rng, self.train_cfg)}

    def loss(self, batch):
        z = self.model.encode(batch["x"])
        z_q, vq_loss, indices = self.model.quantize(z)
        rec_loss = (self.model.decode(z_q) - batch["x"]).abs().mean()   # MAE
        self.usage += torch.bincount(indices.reshape(-1), minlength=self.model.cfg.n_embed).float()
        batch["z"] = z.detach()   # encoder outputs for after_step's dead-code re-seeding
        usage, perplexity = codebook_stats(indices, self.model.cfg.n_embed)
        return rec_loss + vq_loss, {"mae": rec_loss.item(), "vq": vq_loss.item(),
                                    "code_usage": usage, "perplexity": perplexity}

    def after_step(self, step, batch):
        # Codebook-collapse guard: at step 1 every code is initialised from encoder outputs
        # (data-dependent init); afterwards codes unused for dead_code_every steps are re-seeded.
        every = self.train_cfg.dead_code_every
        if every <= 0 or (step != 1 and step % every != 0):
            return {}
        dead = torch.ones_like(self.usage, dtype=torch.bool) if step == 1 else self.usage == 0
        n = self.model.reseed_codes(dead, batch["z"])
        self.usage.zero_()
        return {"reseeded": n}

    def to(self, device):
        super().to(device)
        self.usage = self.usage.to(device)

    def extra_state(self):
        return {"usage": self.usage.cpu()}

    def load_extra_state(self, state):
        self.usage = state["usage"].to(self.device)


class LatentTask(Task):
    """Trains on token grids [N, V, h, w]; a batch draws (slice, dihedral view) pairs."""

    def __init__(self, cfg: TransformerConfig, train_cfg: TrainConfig, tokens: np.ndarray, n_codes: int):
        self.model, self.train_cfg, self.n_codes = TokenTransformer(cfg), train_cfg, n_codes
        self.tokens = torch.from_numpy(tokens.astype(np.int64))
        self.grid = tokens.shape[-1]

    def draw_tokens(self, rng, batch_size):
        rows = rng.integers(0, self.tokens.shape[0], batch_size)
        views = rng.integers(0, self.tokens.shape[1], batch_size)
        return self.tokens[rows, views].reshape(batch_size, -1)

    def draw_mask(self, rng, batch_size):
        return torch.from_numpy(brush_masks(rng, batch_size, self.grid, self.train_cfg.brush).reshape(batch_size, -1))


class ATDTask(LatentTask):
    """Tokens are corrupted by proxy anomalies drawn from `train_cfg.proxies` (family -> weight;
    proxies.py has the families); BCE over all tokens, the target being the tokens whose code changed.
    With only `random` this is the paper's task (Eq. 2). Image-space families read their corrupted
    grids from `image_proxies` (proxies.build_image_proxies), whose far-flipped codes weigh 0."""
    component = "atd"

    def __init__(self, cfg, train_cfg, tokens, n_codes, image_proxies: dict | None = None,
                 mvtm: TokenTransformer | None = None, validation: dict | None = None):
        super().__init__(cfg, train_cfg, tokens, n_codes)
        self.families = list(train_cfg.proxies)
        weights = np.array([train_cfg.proxies[f] for f in self.families], dtype=np.float64)
        self.probabilities = weights / weights.sum()
        self.mvtm = mvtm.eval().requires_grad_(False) if mvtm is not None else None
        if "mvtm" in self.families and self.mvtm is None:
            raise ValueError("the mvtm proxy family needs an MVTM (--mvtm)")
        self.image_rows = {}
        for family in set(self.families) & set(IMAGE_FAMILIES):
            if image_proxies is None:
                raise ValueError(f"the {family} proxy family needs an image-proxy cache (--image-proxies)")
            index = list(image_proxies["families"]).index(family)
            self.image_rows[family] = np.flatnonzero(image_proxies["family"] == index)
        if image_proxies is not None:
            self.image_tokens = torch.from_numpy(image_proxies["tokens"].astype(np.int64)).flatten(1)
            self.image_label = torch.from_numpy(image_proxies["label"]).flatten(1)
            self.image_weight = torch.from_numpy(~image_proxies["ignore"]).flatten(1).float()
        self.validation = validation

    def to(self, device):
        super().to(device)
        if self.mvtm is not None:
            self.mvtm.to(device)

    def replacement_codes(self, family: str, tokens, mask, rng) -> torch.Tensor:
        if family == "random":
            return random_codes(tokens, rng, self.n_codes)
        if family == "cross_subject":
            return self.draw_tokens(rng, len(tokens))
        if family == "moved":
            return moved_codes(tokens, rng, self.grid)
        return mvtm_codes(tokens.to(self.device), mask.to(self.device), self.mvtm, rng, self.n_codes).cpu()

    def batch(self, rng, batch_size):
        tokens, mask = self.draw_tokens(rng, batch_size), self.draw_mask(rng, batch_size)
        drawn = rng.choice(len(self.families), batch_size, p=self.probabilities)
        inputs, weight = tokens.clone(), torch.ones(tokens.shape)
        target = torch.zeros(tokens.shape, dtype=torch.bool)
        for index, family in enumerate(self.families):
            rows = torch.from_numpy(np.flatnonzero(drawn == index))
            if len(rows) == 0:
                continue
            if family in IMAGE_FAMILIES:
                picks = torch.from_numpy(rng.choice(self.image_rows[family], len(rows)))
                inputs[rows], target[rows] = self.image_tokens[picks], self.image_label[picks]
                weight[rows] = self.image_weight[picks]
            else:
                replaced = torch.where(mask[rows], self.replacement_codes(family, tokens[rows], mask[rows], rng),
                                       tokens[rows])
                inputs[rows], target[rows] = replaced, replaced != tokens[rows]
        return {"input": inputs, "target": target.float(), "weight": weight}

    def loss(self, batch):
        logits = self.model(batch["input"]).squeeze(-1)
        weight = batch.get("weight")
        loss = F.binary_cross_entropy_with_logits(logits, batch["target"], weight=weight)
        accuracy = ((logits > 0).float() == batch["target"]).float().mean()
        return loss, {"accuracy": accuracy.item()}

    @torch.no_grad()
    def validation_metrics(self) -> dict[str, float]:
        """Token AP/AUROC on the fixed validation set (diagnosis.token_set), the curve that matters."""
        if self.validation is None:
            return {}
        from .diagnosis import score_token_set   # diagnosis.py imports this module
        metrics = score_token_set(self.model, self.validation, self.device)
        return {"val_ap": metrics["ap"], "val_auroc": metrics["auroc"]}


class MVTMTask(LatentTask):
    """Brush-masked tokens -> [MASK] (id K); cross-entropy (label smoothing from the config) on the
    masked positions only."""
    component = "mvtm"

    def batch(self, rng, batch_size):
        tokens, mask = self.draw_tokens(rng, batch_size), self.draw_mask(rng, batch_size)
        return {"input": torch.where(mask, torch.full_like(tokens, self.n_codes), tokens),
                "target": tokens, "mask": mask}

    def loss(self, batch):
        logits = self.model(batch["input"])[batch["mask"]]
        target = batch["target"][batch["mask"]]
        loss = F.cross_entropy(logits, target, label_smoothing=self.train_cfg.label_smoothing)
        return loss, {"masked_accuracy": (logits.argmax(-1) == target).float().mean().item()}


class ARTask(LatentTask):
    """Next-token cross-entropy in raster order; input is the grid shifted right behind [SOS]=K."""
    component = "ar"

    def batch(self, rng, batch_size):
        tokens = self.draw_tokens(rng, batch_size)
        return {"input": shift_right(tokens, self.n_codes), "target": tokens}

    def loss(self, batch):
        logits = self.model(batch["input"])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["target"].reshape(-1))
        return loss, {"accuracy": (logits.argmax(-1) == batch["target"]).float().mean().item()}


class CriticTask(LatentTask):
    """Token-Critic (Lezama et al.): brush-masked positions are re-sampled (temperature 1) from a
    frozen MVTM; BCE over all tokens, target = the mask (sampled positions)."""
    component = "critic"

    def __init__(self, cfg, train_cfg, tokens, n_codes, mvtm: TokenTransformer):
        super().__init__(cfg, train_cfg, tokens, n_codes)
        self.mvtm = mvtm.eval().requires_grad_(False)

    def to(self, device):
        super().to(device)
        self.mvtm.to(device)

    def batch(self, rng, batch_size):
        tokens, mask = self.draw_tokens(rng, batch_size), self.draw_mask(rng, batch_size)
        sampled = mvtm_codes(tokens.to(self.device), mask.to(self.device), self.mvtm, rng, self.n_codes).cpu()
        return {"input": torch.where(mask, sampled, tokens), "target": mask.float()}

    loss = ATDTask.loss


# ---------------------------------------------------------------- loop, checkpoints, log

class CosineSchedule:
    """Linear warm-up, then cosine decay to min_lr_ratio at `total_steps`. An object rather than a
    closure so that a time budget can shorten `total_steps` once the step rate is known."""

    def __init__(self, cfg: TrainConfig, total_steps: int):
        self.warmup, self.min_ratio, self.total_steps = cfg.warmup_steps, cfg.min_lr_ratio, total_steps

    def __call__(self, step: int) -> float:   # step = optimiser steps taken so far
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export_model(task: Task, path: Path) -> None:
    atomic_save({"component": task.component, "config": dataclasses.asdict(task.model.cfg),
                 "state_dict": {k: v.cpu() for k, v in task.model.state_dict().items()}}, path)


def _read_log(path: Path, up_to_step: int) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= up_to_step]


# Steps timed before a time budget fixes the schedule length (the first ones include CUDA warm-up).
BUDGET_WARMUP_STEPS, BUDGET_TIMED_STEPS = 10, 20


def train(task: Task, cfg: TrainConfig, out_dir: str | Path, *, steps: int | None = None,
          stop_at: int | None = None, resume: bool = False, progress: bool = True,
          device: str = "cpu", precision: str = "fp32", time_budget: float | None = None) -> Path:
    """Trains `task.model` to `steps` (default cfg.steps) optimiser steps, or stops early after
    global step `stop_at`. Returns the run directory.

    `precision`: fp32, or on CUDA tf32 / bf16 (autocast). `time_budget` (seconds): after
    BUDGET_WARMUP_STEPS + BUDGET_TIMED_STEPS steps the schedule is shortened so that the run ends
    within the budget (used for the fixed-time GPU run of the paper configuration)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path, log_path = out / "state.pt", out / "log.jsonl"
    state = torch.load(state_path, weights_only=False, map_location="cpu") if resume and state_path.exists() else None
    # A resumed run keeps its schedule length unless --steps overrides it.
    total = steps or (state["total_steps"] if state else cfg.steps)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    task.to(torch.device(device))
    model = task.model
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision in ("tf32", "bf16")
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                              enabled=precision == "bf16")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                                  weight_decay=cfg.weight_decay)
    schedule = CosineSchedule(cfg, total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    step = 0
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        task.load_extra_state(state["extra"])
        step = state["step"]
    log_lines = _read_log(log_path, step) if resume else []
    log_path.write_text("".join(line + "\n" for line in log_lines))
    def write_config() -> None:
        (out / "config.json").write_text(json.dumps({"component": task.component, "total_steps": total,
                                                     "model": dataclasses.asdict(model.cfg),
                                                     "train": dataclasses.asdict(cfg)}, indent=2))

    write_config()

    def save_state() -> None:
        atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                     "numpy_rng": rng.bit_generator.state, "extra": task.extra_state(), "step": step,
                     "total_steps": total, "component": task.component,
                     "config": dataclasses.asdict(model.cfg)}, state_path)

    last = min(total, stop_at) if stop_at else total
    started = time.time()
    first_step, timer = step, None
    model.train()
    with log_path.open("a") as log:
        while step < last:
            batch = {k: v.to(task.device) for k, v in task.batch(rng, cfg.batch_size).items()}
            with autocast:
                loss, metrics = task.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            metrics.update(task.after_step(step, batch))
            validate = cfg.validate_every > 0 and (step % cfg.validate_every == 0 or step == last)
            if validate:
                model.eval()
                metrics.update(task.validation_metrics())
                model.train()
            if time_budget is not None and step - first_step == BUDGET_WARMUP_STEPS:
                timer = time.time()
            elif timer is not None and step - first_step == BUDGET_WARMUP_STEPS + BUDGET_TIMED_STEPS:
                seconds_per_step = (time.time() - timer) / BUDGET_TIMED_STEPS
                affordable = step + int((time_budget - (time.time() - started)) / seconds_per_step)
                total = schedule.total_steps = max(step, min(total, affordable))
                last = min(last, total)
                timer = None
                write_config()
                print(f"[{task.component}] {seconds_per_step * 1000:.1f} ms/step: {total} steps fit the "
                      f"{time_budget:.0f} s budget", flush=True)
            if step % cfg.log_every == 0 or step == last or validate:
                record = {"step": step, "loss": loss.item(), "lr": optimizer.param_groups[0]["lr"],
                          "grad_norm": float(grad_norm), "time": round(time.time() - started, 2), **metrics}
                log.write(json.dumps(record) + "\n")
                log.flush()
                if progress:
                    print(f"[{task.component}] step {step}/{total} " + " ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                        if k != "step"), flush=True)
            if step % cfg.ckpt_every == 0 or step == last:
                save_state()
    if step >= total:
        export_model(task, out / "model.pt")
    return out


# ---------------------------------------------------------------- command line

def load_model(path: str | Path, expected: str) -> nn.Module:
    """A trained model from a run directory (its model.pt, else its latest state.pt), a model.pt, or an
    exported checkpoint directory (its model.json)."""
    path = Path(path)
    if (path / "model.json").is_file():
        from .checkpoint import load_checkpoint   # checkpoint.py imports this module
        return load_checkpoint(path, [expected]).models[expected]
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").exists() else path / "state.pt"
    saved = torch.load(path, weights_only=False, map_location="cpu")
    component, config = saved["component"], saved["config"]
    state_dict = saved["state_dict"] if "state_dict" in saved else saved["model"]   # model.pt or state.pt
    if component != expected:
        raise ValueError(f"{path} holds a {component}, expected {expected}")
    model = VQVAE(VQVAEConfig(**config)) if component == "vqvae" else TokenTransformer(TransformerConfig(**config))
    model.load_state_dict(state_dict)
    return model.eval()


def load_or_build_tokens(vqvae_path: str, data_path: str, data: SliceSource, views: int,
                         tokens_path: str | None, device: str = "cpu") -> np.ndarray:
    """Token grids cached next to the VQ-VAE (computed once, shared by the four latent trainers)."""
    vqvae_dir = Path(vqvae_path) if Path(vqvae_path).is_dir() else Path(vqvae_path).parent
    path = Path(tokens_path) if tokens_path else vqvae_dir / f"tokens_{Path(data_path).stem}_v{views}.npz"
    if path.exists():
        return np.load(path)["tokens"]
    print(f"tokenising {len(data)} slices x {views} views -> {path}", flush=True)
    tokens = tokenize_dataset(load_model(vqvae_path, "vqvae").to(device), data, views,
                              batch_size=256 if device != "cpu" else 32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, tokens=tokens)
    os.replace(tmp, path)
    return tokens


def build_task(component: str, bundle: ConfigBundle, train_cfg: TrainConfig, data: SliceSource,
               tokens: np.ndarray | None = None, mvtm: TokenTransformer | None = None, **atd_inputs) -> Task:
    """`atd_inputs`: ATDTask's image_proxies and validation."""
    if component == "vqvae":
        return VQVAETask(bundle.vqvae, train_cfg, data)
    n_codes = bundle.vqvae.n_embed
    model_cfg = getattr(bundle, component)
    if component == "critic":
        return CriticTask(model_cfg, train_cfg, tokens, n_codes, mvtm)
    if component == "atd":
        return ATDTask(model_cfg, train_cfg, tokens, n_codes, mvtm=mvtm, **atd_inputs)
    return {"mvtm": MVTMTask, "ar": ARTask}[component](model_cfg, train_cfg, tokens, n_codes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mimood_train.train", description=__doc__.split("\n")[0])
    parser.add_argument("component", choices=COMPONENTS)
    parser.add_argument("--config", default="small", choices=sorted(CONFIGS))
    parser.add_argument("--data", required=True, help="slice cache (.npz) from mimood_train.data")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--steps", type=int, help="total optimiser steps (default: from the config)")
    parser.add_argument("--stop-at", type=int, help="stop after this global step (resume later)")
    parser.add_argument("--resume", action="store_true", help="continue from RUNDIR/state.pt")
    parser.add_argument("--vqvae", help="VQ-VAE run dir or model.pt (latent models)")
    parser.add_argument("--mvtm", help="MVTM run dir or model.pt (critic)")
    parser.add_argument("--tokens", help="token cache path (default: next to the VQ-VAE)")
    parser.add_argument("--proxies", help="ATD proxy families and weights, e.g. random=1,moved=1 "
                                          "(default: from the config; proxies.py lists them)")
    parser.add_argument("--image-proxies", help="ATD: corrupted, re-tokenised slices (python -m mimood_train.proxies)")
    parser.add_argument("--validation", help="ATD: token set for the validation curve (python -m mimood_train.diagnosis token-set)")
    parser.add_argument("--validate-every", type=int, help="steps between validation measures (0: never)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: from the config)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"),
                        help="bf16 autocast / tf32 matmuls on CUDA")
    parser.add_argument("--time-budget", type=float, help="seconds: shorten the schedule to fit (GPU runs)")
    parser.add_argument("--batch-size", type=int, help="override the config's batch size")
    parser.add_argument("--token-views", type=int, help="override the config's dihedral views tokenised")
    parser.add_argument("--lr", type=float, help="override the config's peak learning rate")
    parser.add_argument("--warmup-steps", type=int, help="override the config's warm-up steps")
    args = parser.parse_args(argv)

    bundle = CONFIGS[args.config]
    train_cfg = bundle.train[args.component]
    overrides = {"seed": args.seed, "batch_size": args.batch_size, "token_views": args.token_views,
                 "lr": args.lr, "warmup_steps": args.warmup_steps, "validate_every": args.validate_every,
                 "proxies": parse_weights(args.proxies) if args.proxies else None}
    train_cfg = dataclasses.replace(train_cfg, **{k: v for k, v in overrides.items() if v is not None})
    torch.set_num_threads(args.threads or train_cfg.num_threads)
    from .data import SliceDataset   # provided by the data module
    data = SliceDataset(args.data)
    tokens = mvtm = None
    if args.component != "vqvae":
        if not args.vqvae:
            parser.error("latent models need --vqvae")
        tokens = load_or_build_tokens(args.vqvae, args.data, data, train_cfg.token_views, args.tokens, args.device)
    if args.component == "critic" and not args.mvtm:
        parser.error("the critic needs --mvtm")
    if args.mvtm:
        mvtm = load_model(args.mvtm, "mvtm")
    extras = {}
    if args.component == "atd":
        extras = {"image_proxies": dict(np.load(args.image_proxies)) if args.image_proxies else None,
                  "validation": dict(np.load(args.validation)) if args.validation else None}
    torch.manual_seed(train_cfg.seed)   # model initialisation
    task = build_task(args.component, bundle, train_cfg, data, tokens, mvtm, **extras)
    train(task, train_cfg, args.out, steps=args.steps, stop_at=args.stop_at, resume=args.resume,
          device=args.device, precision=args.precision, time_budget=args.time_budget)


if __name__ == "__main__":
    main()
