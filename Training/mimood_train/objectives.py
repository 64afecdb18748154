"""The five training objectives, one Task per network: how a batch is drawn and what loss it gives.

VQ-VAE: reconstruction MAE plus the VQ loss, on intensity-augmented slices. On token grids: the ATD
tells proxy anomalies (proxies.py) from healthy tokens, the MVTM in-paints brush-masked tokens, the AR
model predicts the next token in raster order, the Token-Critic tells MVTM samples from original tokens.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigBundle, TrainConfig, TransformerConfig, VQVAEConfig
from .diagnosis import score_token_set
from .loading import SliceSource, dihedral
from .masks import brush_masks
from .models import VQVAE, TokenTransformer, codebook_stats, shift_right
from .proxies import IMAGE_FAMILIES, moved_codes, mvtm_codes, random_codes


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
        x = augment_slices(x.float(), rng, self.train_cfg)
        # Denoising: the encoder sees scanner-like noise in the brain, the decoder must give the clean slice,
        # so that a token does not flip with the noise.
        if self.train_cfg.input_noise <= 0:
            return {"x": x, "encoder_input": x}
        sigma = rng.uniform(0, self.train_cfg.input_noise, (len(x), 1, 1, 1))
        noise = torch.from_numpy((rng.standard_normal(x.shape) * sigma).astype(np.float32))
        return {"x": x, "encoder_input": torch.where(x > 0, (x + noise).clamp(0, 1), x)}

    def loss(self, batch):
        z = self.model.encode(batch["encoder_input"])
        z_q, vq_loss, indices = self.model.quantize(z)
        rec_loss = (self.model.decode(z_q) - batch["x"]).abs().mean()   # MAE
        if self.train_cfg.consistency > 0:
            # The noisy slice's latent should land on the clean slice's code, not merely on some code.
            quantize = self.model.quantize
            with torch.no_grad():
                clean = quantize.codes(self.model.tokenize(batch["x"])).permute(0, 3, 1, 2)
            vq_loss = vq_loss + self.train_cfg.consistency * ((quantize.project(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                                                               - clean) ** 2).mean()
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
