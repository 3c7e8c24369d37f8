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

from .checkpoints import MODEL_FILE, build_model, check_config, load_model, load_optimizer_state, save_checkpoint
from .config import ArchConfig, TrainConfig, load_config
from .data import RawSamples, make_batch
from .losses import ReconLoss
from .render import render

log = logging.getLogger(__name__)
LOG_FIELDS = ["step", "loss", "l1", "ssim", "lpips", "mask", "aux", "lr", "seconds"]


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


def _lr(step: int, cfg: TrainConfig) -> float:
    warm, total = cfg.warmup, cfg.steps
    if step < warm:
        return cfg.lr * (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


@dataclass
class TrainResult:
    metrics: dict[str, Any]  # the last step's losses
    model: torch.nn.Module  # this process's model (DDP keeps every rank's copy identical)


def train(cfg: TrainConfig, model_cfg: ArchConfig, shards: str | os.PathLike[str] | list[str],
          out: str | os.PathLike[str], resume: bool = True, anchors: tuple[np.ndarray, np.ndarray] | None = None,
          stop_after: int | None = None, ict_model: str | os.PathLike[str] | None = None,
          method: str | None = None) -> TrainResult:
    """Train ``model_cfg`` to ``cfg.steps`` (or stop early after ``stop_after`` steps: tests use it to
    simulate an interruption). Resuming from a checkpoint of another model config is an error.
    ``method`` (a registry name) is recorded in the checkpoint."""
    out = Path(out)
    rank, world, device = _dist()
    seed = cfg.seed
    torch.manual_seed(seed)
    ck_path = out / MODEL_FILE
    start = 0
    if resume and ck_path.exists():
        model, ck = load_model(ck_path)
        check_config(ck_path, model.cfg, model_cfg)
        start = int(ck["step"])
        log.info("resuming from %s at step %d", ck_path, start)
    else:
        model, ck = build_model(model_cfg, ict_model, anchors, seed), None
    model.to(device)
    loss_fn = ReconLoss(cfg.loss).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if ck is not None:
        opt.load_state_dict(load_optimizer_state(out))
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    data = RawSamples(shards)
    B, V = cfg.batch_size, cfg.n_targets
    S, T = model.cfg.image_size, cfg.target_size  # every architecture's config has image_size
    use_bf16 = device.type == "cuda" and cfg.bf16
    steps = cfg.steps
    end = steps if stop_after is None else min(steps, start + stop_after)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _trim_log(out / "train_log.csv", start)
    last: dict[str, Any] = {}
    t0 = time.perf_counter()
    bar = tqdm(range(start, end), desc="train", disable=rank != 0, initial=start, total=steps)
    budget_s = 60.0 * cfg.time_budget_min if cfg.time_budget_min else None
    for step in bar:
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            log.warning("stopping at step %d of %d: time budget of %s min spent", step, steps, cfg.time_budget_min)
            if rank == 0 and step > start:
                save_checkpoint(out, model, step, cfg, opt, extra={"method": method or model.cfg.arch})
                _append_log(out / "train_log.csv", last)
            break
        rng = np.random.default_rng([seed, step])
        idx = rng.choice(len(data), size=B * world, replace=len(data) < B * world)[rank::world].tolist()
        batch = {k: v.to(device) for k, v in make_batch(data, idx, np.random.default_rng([seed, step, rank, 1]), S, T, V).items()}
        noise = None
        if model.noise_shape is not None:
            gen = torch.Generator().manual_seed(hash((seed, step, rank)) % (2**63))
            noise = torch.randn((len(idx), *model.noise_shape), generator=gen).to(device)
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            o = net(batch["image"], batch["w2c"], batch["K"], batch["t_w2c"], batch["t_K"], (T, T), noise)
        r = render(o["gaussians"], batch["t_w2c"], batch["t_K"], T, T)
        aux_gt = None
        if "aux_rgb" in o:
            aux_gt = F.interpolate(batch["t_rgb"].flatten(0, 1), size=o["aux_rgb"].shape[-2:], mode="area")
        loss, parts = loss_fn(r["rgb"].flatten(0, 1), r["alpha"].flatten(0, 1), batch["t_rgb"].flatten(0, 1),
                              batch["t_mask"].flatten(0, 1), o["aux_rgb"].flatten(0, 1).float() if "aux_rgb" in o else None,
                              aux_gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        last = {"step": step + 1, "loss": float(loss.detach()), **parts, "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0}
        if rank == 0:
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if (step + 1) % cfg.log_every == 0 or step + 1 == end:
                _append_log(out / "train_log.csv", last)
            if (step + 1) % cfg.ckpt_every == 0 or step + 1 == end:
                save_checkpoint(out, model, step + 1, cfg, opt, extra={"method": method or model.cfg.arch})
    if rank == 0 and last:
        write_json(out / "metrics.json", {k: v for k, v in last.items() if k != "seconds"})
    return TrainResult(last, model)


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
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        cfg = load_config(args.params, args.profile)
    except ConfigError as e:
        raise SystemExit(f"{args.params}: {e}") from None
    method = args.arch.replace("_", "-")
    train(cfg.train, getattr(cfg, args.arch), args.shards or cfg.paths.split("train"),
          args.out or cfg.paths.train_dir(method), not args.no_resume, ict_model=cfg.paths.ict_model, method=method)


if __name__ == "__main__":
    main()
