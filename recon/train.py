"""Trainer for Any3DAvatar (and the learned baselines that share its data path).

* bf16 autocast on CUDA; the rasterizer runs in fp32.
* Several GPUs (or CPU processes) through torchrun / DDP: NCCL on CUDA, gloo on CPU.
* Checkpoints (model, optimizer, schedule, step, configs) written atomically; ``resume=True``
  continues from the last one and reproduces an uninterrupted run exactly: each step's batch,
  target views and denoising noise are pure functions of (seed, step, rank).
* ``time_budget_min`` (optional) stops early, checkpointed, when the wall-clock budget is spent,
  so methods trained side by side on one GPU get the same time; the steps reached are recorded.
* A progress bar, and ``train_log.csv`` (one row per logged step) that ``dvc plots`` reads.

    torchrun --nproc-per-node 2 -m recon.train --shards data/gpu/shards/train --out runs/a3da --profile gpu
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from anyhead.config import ConfigError
from anyhead.io import write_json

from .checkpoints import (
    MODEL_FILE,
    SCAFFOLD_BUFFERS,
    SCAFFOLD_KEYS,
    CheckpointError,
    build_model,
    load_model,
    load_train_state,
    read_record,
    save_checkpoint,
    scaffold_changes,
)
from .config import ArchConfig, TrainConfig, load_config
from .losses import ReconLoss
from .mix import training_batches
from .render import render

log = logging.getLogger(__name__)
LOG_FIELDS = ["step", "loss", "l1", "ssim", "lpips", "mask", "aux", "aux_lpips", "lr", "seconds"]


def _dist() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    """Linear warm-up, then cosine from ``cfg.lr`` down to a floor of 10%, reached at the last step ``total - 1``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, total - 1 - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices and kernels only; none on norms, biases and
    embeddings (1-D parameters and the learned positional tables)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.split(".")[-1] == "pos" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class EMA:
    """Exponential moving average of the parameters (fp32), with the usual early-step warm-up of the
    decay, ``min(decay, (1 + n) / (10 + n))``; what gets evaluated and exported."""

    def __init__(self, model: torch.nn.Module, decay: float, state: dict[str, torch.Tensor] | None = None) -> None:
        self.decay = decay
        self.names = [n for n, _ in model.named_parameters()]
        src = dict(model.named_parameters())
        self.shadow = [(state[n] if state is not None else src[n]).detach().float().clone().to(src[n].device)
                       for n in self.names]

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        params = [p.detach().float() for p in model.parameters()]
        torch._foreach_lerp_(self.shadow, params, 1.0 - d)

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged parameters (buffers as they are)."""
        sd = model.state_dict()
        for n, t in zip(self.names, self.shadow):
            sd[n] = t.to(sd[n].dtype)
        return sd


@dataclass
class TrainResult:
    metrics: dict[str, Any]  # the last logged step's losses, averaged over ranks
    model: torch.nn.Module  # this process's model (raw weights; DDP keeps every rank's copy identical)
    ema: EMA | None = None
    planned_steps: int = 0


class StepRunner:
    """One optimisation step of any learned method: forward (bf16 autocast on CUDA), one batched
    render of all B x V target views, the loss over the whole batch, backward, clipping, AdamW and
    the EMA. Shared by :func:`train` and ``benchmarks/bench_train.py``; with ``timer`` it records
    each phase's time (which costs a synchronisation per phase)."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, net: torch.nn.Module, opt: torch.optim.Optimizer,
                 loss_fn: ReconLoss, device: torch.device, ema: EMA | None = None) -> None:
        self.cfg, self.model, self.net, self.opt, self.loss_fn, self.device, self.ema = cfg, model, net, opt, loss_fn, device, ema
        self.bf16 = device.type == "cuda" and cfg.bf16
        self.T = cfg.loss_size
        self.rank = 0  # set by train(): crop windows are functions of (seed, step, rank)

    def noise(self, B: int, seed: int, step: int, rank: int) -> torch.Tensor | None:
        """The step's denoising noise, drawn on the device from (seed, step, rank)."""
        if self.model.noise_shape is None:
            return None
        gen = torch.Generator(device=self.device).manual_seed(hash((seed, step, rank)) % (2**63))
        return torch.randn((B, *self.model.noise_shape), generator=gen, device=self.device)

    def __call__(self, batch: dict[str, torch.Tensor], noise: torch.Tensor | None, lr: float, step: int,
                 timer: Any = None) -> dict[str, torch.Tensor]:
        mark = timer or (lambda name: None)
        T = self.T
        for g in self.opt.param_groups:
            g["lr"] = lr
        if self.cfg.crop_size is not None:
            batch = crop_targets(batch, T, torch.Generator(device=self.device).manual_seed(
                hash((self.cfg.seed, step, self.rank, "crop")) % (2**63)))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            o = self.net(batch["image"], batch["w2c"], batch["K"], batch["t_w2c"], batch["t_K"], (T, T), noise)
        mark("forward")
        r = render(o["gaussians"], batch["t_w2c"], batch["t_K"], T, T)
        mark("render")
        aux_gt = None
        if "aux_rgb" in o:
            aux_gt = F.interpolate(batch["t_rgb"].flatten(0, 1), size=o["aux_rgb"].shape[-2:], mode="area")
        # mixed batches (recon.mix) weigh each view: a photo counts on its input view only
        weight = batch["t_weight"].flatten() if "t_weight" in batch else None
        loss, parts = self.loss_fn(r["rgb"].flatten(0, 1), r["alpha"].flatten(0, 1), batch["t_rgb"].flatten(0, 1),
                                   batch["t_mask"].flatten(0, 1),
                                   o["aux_rgb"].flatten(0, 1).float() if "aux_rgb" in o else None, aux_gt, weight)
        mark("loss")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        mark("backward")
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.model, step)
        mark("optimizer")
        return {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}


def crop_targets(batch: dict[str, torch.Tensor], size: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A random size x size window of every target view (t_rgb, t_mask) with its intrinsics (the
    principal point shifted by the window's corner): rendering with the shifted K gives exactly that
    window of the full-resolution render, at size^2 pixels' cost. One gather, no loop over views."""
    rgb, mask, K = batch["t_rgb"], batch["t_mask"], batch["t_K"]  # (B, V, 3, T, T), (B, V, 1, T, T), (B, V, 3, 3)
    B, V, _, H, W = rgb.shape
    dev = rgb.device
    ox = torch.randint(0, W - size + 1, (B, V), generator=gen, device=dev)
    oy = torch.randint(0, H - size + 1, (B, V), generator=gen, device=dev)
    ar = torch.arange(size, device=dev)
    rows = (oy[..., None] + ar)[..., :, None]  # (B, V, size, 1)
    cols = (ox[..., None] + ar)[..., None, :]  # (B, V, 1, size)
    bi = torch.arange(B, device=dev)[:, None, None, None]
    vi = torch.arange(V, device=dev)[None, :, None, None]
    both = torch.cat([rgb, mask.to(rgb.dtype)], 2).permute(0, 1, 3, 4, 2)[bi, vi, rows, cols]  # (B, V, size, size, 4)
    both = both.permute(0, 1, 4, 2, 3)
    K = K.clone()
    K[..., 0, 2] -= ox.to(K.dtype)
    K[..., 1, 2] -= oy.to(K.dtype)
    return {**batch, "t_rgb": both[:, :, :3].contiguous(), "t_mask": both[:, :, 3:].to(mask.dtype).contiguous(), "t_K": K}


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused on CUDA (one kernel for all parameters instead of several per tensor)."""
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=device.type == "cuda")


def train(cfg: TrainConfig, model_cfg: ArchConfig, shards: str | os.PathLike[str] | list[str],
          out: str | os.PathLike[str], resume: bool = True, anchors: tuple[np.ndarray, np.ndarray] | None = None,
          stop_after: int | None = None, ict_model: str | os.PathLike[str] | None = None,
          method: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
          init_from: str | os.PathLike[str] | None = None, photos: str | os.PathLike[str] | None = None,
          captures: str | os.PathLike[str] | None = None) -> TrainResult:
    """Train ``model_cfg`` to ``cfg.steps`` (or stop early after ``stop_after`` steps: tests use it to
    simulate an interruption).

    Resuming from a checkpoint of another model config is an error. ``init_from`` warm-starts from
    released weights (same config) with a fresh optimizer. ``cache_dir`` keeps the decoded split
    between runs (:mod:`recon.cache`). With ``time_budget_min`` the step count is planned from the
    measured step time after a few steps, so the LR schedule reaches its floor within the budget;
    every rank gets the same plan. ``method`` (a registry name) is recorded in the checkpoint. ``photos`` and
    ``captures`` are those splits' shard folders, read when ``cfg.photo_mix`` > 0 / ``cfg.use_captures``
    (:mod:`recon.mix`; their caches beside ``cache_dir``)."""
    out = Path(out)
    rank, world, device = _dist()
    seed = cfg.seed
    torch.manual_seed(seed)
    ck_path = out / MODEL_FILE
    start, planned, record = 0, None, None
    if resume and ck_path.exists():
        record = read_record(ck_path)
        model, _ = load_model(ck_path, expect=model_cfg)
        weights, opt_state = load_train_state(out)
        # model.safetensors holds the EMA (copied: loading the raw weights below writes into the same tensors)
        ema_state = {k: v.clone() for k, v in model.state_dict().items()} if cfg.ema_decay > 0 else None
        model.load_state_dict(weights)
        start, planned = int(record["step"]), record.get("planned_steps")
        log.info("resuming from %s at step %d", ck_path, start)
    else:
        model, opt_state, ema_state = build_model(model_cfg, ict_model, anchors, seed), None, None
        if init_from is not None:
            init, rec = load_model(init_from, expect=model_cfg, ignore=SCAFFOLD_KEYS)  # a warm start may change the scaffold
            sd = init.state_dict()
            changed = scaffold_changes(init.cfg, model_cfg)
            if changed:  # another scaffold: the network carries over, the scaffold is ours
                sd = {k: v for k, v in sd.items() if k not in SCAFFOLD_BUFFERS}
                log.info("warm start across scaffolds (%s differ): network weights from %s, scaffold rebuilt",
                         ", ".join(changed), init_from)
            missing, unexpected = model.load_state_dict(sd, strict=False)
            if changed:
                missing = [k for k in missing if k not in SCAFFOLD_BUFFERS]
            elif hasattr(model, "refresh_offset_limit"):  # the loaded anchors replaced the built ones
                model.refresh_offset_limit()
            if unexpected or any(not k.startswith("aux.") for k in missing):
                raise CheckpointError(f"{init_from}: weights do not fit: missing {sorted(missing)[:5]}, "
                                      f"unexpected {sorted(unexpected)[:5]}")
            log.info("initialised from %s (step %s of its run)%s; fresh optimizer", init_from, rec["step"],
                     "; a release has no auxiliary head: it starts fresh" if missing else "")
    model.to(device)
    loss_fn = ReconLoss(cfg.loss).to(device)
    opt = make_optimizer(model, cfg, device)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    ema = EMA(model, cfg.ema_decay, ema_state) if cfg.ema_decay > 0 else None
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    if cfg.compile and device.type == "cuda":
        net = torch.compile(net)
    B, S = cfg.batch_size, model.cfg.image_size  # every architecture's config has image_size
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    # the photos' and captures' caches sit beside the training cache under derived names (train-photos, ...): a
    # rebuild deletes its folder, so never a bare sibling name that could be the user's data
    side = (lambda split: Path(cache_dir).with_name(f"{Path(cache_dir).name}-{split}")) if cache_dir is not None \
        else (lambda split: None)
    batches = training_batches(cfg, shards, cache_dir, device, rank, world, S, start, photos, captures, side("photos"),
                               side("captures"))
    runner = StepRunner(cfg, model, net, opt, loss_fn, device, ema)
    runner.rank = rank
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _trim_log(out / "train_log.csv", start)
    budget_s = 60.0 * cfg.time_budget_min if cfg.time_budget_min else None
    if planned is None and budget_s is None:
        planned = cfg.steps
    window = (start + 3, start + 13)  # steps timed to plan a time budget (after kernel warm-up)
    last: dict[str, Any] = {}
    t0 = time.perf_counter()
    t_window = t0
    bar = tqdm(range(start, end), desc="train", disable=rank != 0, initial=start, total=planned or cfg.steps)
    extra = {"method": method or model.cfg.arch, "ema_decay": cfg.ema_decay,
             "weights": "ema" if ema is not None else "raw"}

    def checkpoint(step: int) -> None:
        if rank == 0:
            save_checkpoint(out, model, step, cfg, opt, extra={**extra, "planned_steps": planned},
                            weights=ema.state_dict(model) if ema is not None else None)

    step = start
    for step in bar:
        if planned is not None and step >= planned:
            log.warning("stopping at step %d of %d: the time budget of %s min was planned to end here", step, cfg.steps,
                        cfg.time_budget_min)
            break
        if planned is None and step in window:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step == window[0]:
                t_window = time.perf_counter()
            else:
                per_step = (time.perf_counter() - t_window) / (window[1] - window[0])
                left = budget_s - (time.perf_counter() - t0)
                planned = _agree(min(cfg.steps, step + max(0, int(left / per_step))), device, world)
                bar.total = planned
                log.info("time budget: %.3f s/step measured, %d steps planned (of %d)", per_step, planned, cfg.steps)
        lr = lr_at(step, cfg, planned or cfg.steps)
        batch = batches(step)
        parts = runner(batch, runner.noise(B, seed, step, rank), lr, step)
        if (step + 1) % cfg.log_every == 0 or step + 1 == end:
            last = {"step": step + 1, **_mean_over_ranks(parts, world), "lr": lr, "seconds": time.perf_counter() - t0}
            if rank == 0:
                bar.set_postfix(loss=f"{last['loss']:.4f}")
                _append_log(out / "train_log.csv", last)
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == end:
            checkpoint(step + 1)
    else:
        step = end
    if step < end and step > start:  # stopped by the budget: keep what was reached
        checkpoint(step)
    if rank == 0 and last:
        write_json(out / "metrics.json", {k: v for k, v in last.items() if k != "seconds"} | {"planned_steps": planned})
    return TrainResult(last, model, ema, planned or cfg.steps)


def _agree(value: int, device: torch.device, world: int) -> int:
    """Rank 0's value on every rank (the planned step count must be the same everywhere)."""
    if world == 1:
        return value
    t = torch.tensor([value], device=device)
    torch.distributed.broadcast(t, 0)
    return int(t.item())


def _mean_over_ranks(parts: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """Loss parts averaged over ranks (one all-reduce, one host sync, only on logging steps)."""
    names = sorted(parts)
    v = torch.stack([parts[k].float() for k in names])
    if world > 1:
        torch.distributed.all_reduce(v)
        v /= world
    return dict(zip(names, v.tolist()))


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in LOG_FIELDS})


def _trim_log(path: Path, step: int) -> None:
    """On resume, drop log rows past the checkpoint so the log matches an uninterrupted run."""
    if not path.exists():
        return
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--arch", default="any3davatar", choices=["any3davatar", "splatter_image"],
                    help="which model section of the profile to train")
    ap.add_argument("--shards", default=None, help="training shards (default: the profile's train split)")
    ap.add_argument("--out", default=None, help="run folder (default data/<profile>/train/<arch>)")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--init-from", default=None, help="warm-start from these weights (a model.safetensors of the same config)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        cfg = load_config(args.params, args.profile)
    except ConfigError as e:
        raise SystemExit(f"{args.params}: {e}") from None
    method = args.arch.replace("_", "-")
    train(cfg.train, getattr(cfg, args.arch), args.shards or cfg.paths.split("train"),
          args.out or cfg.paths.train_dir(method), not args.no_resume, ict_model=cfg.paths.ict_model, method=method,
          cache_dir=None if args.shards else cfg.paths.cache("train"), init_from=args.init_from,
          photos=cfg.paths.split("photos"), captures=cfg.paths.split("captures"))


if __name__ == "__main__":
    main()
