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

import numpy as np
import torch
from torch import nn

from .config import COMPONENTS, CONFIGS, TrainConfig
from .loading import load_model, load_or_build_tokens
from .objectives import Task, build_task
from .proxies import parse_weights


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
        scheduler.load_state_dict(state["scheduler"])   # restores the schedule object's fields too:
        schedule.total_steps = total                    # a --steps override must still lengthen it
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
    parser.add_argument("--init", help="start from these weights (run dir, model.pt or checkpoint dir) instead "
                                       "of a random initialisation, e.g. to fine-tune a trained ATD on new proxies")
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
    if args.init:
        task.model.load_state_dict(load_model(args.init, args.component).state_dict())
    train(task, train_cfg, args.out, steps=args.steps, stop_at=args.stop_at, resume=args.resume,
          device=args.device, precision=args.precision, time_budget=args.time_budget)


if __name__ == "__main__":
    main()
