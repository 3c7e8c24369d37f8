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
import json
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

from anyhead.io import write_json

from .any3davatar import Any3DAvatar, ModelConfig
from .any3davatar.scaffold import random_scaffold, template_scaffold
from .data import RawSamples, make_batch
from .losses import LossWeights, ReconLoss
from .render import render
from .splatter_image import SplatterConfig, SplatterImage

log = logging.getLogger(__name__)
LOG_FIELDS = ["step", "loss", "l1", "ssim", "lpips", "mask", "aux", "lr", "seconds"]


def build_model(model_cfg: dict[str, Any], ict_model: str | os.PathLike[str] | None = None,
                anchors: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0) -> torch.nn.Module:
    """A model from its config (``arch``: any3davatar or splatter_image). Any3DAvatar gets its
    scaffold: the given anchors, the ICT template, or the random ablation."""
    arch = model_cfg.get("arch", "any3davatar")
    if arch == "splatter_image":
        return SplatterImage(SplatterConfig.from_dict(model_cfg))
    if arch != "any3davatar":
        raise ValueError(f"unknown architecture {arch!r} (any3davatar, splatter_image)")
    cfg = ModelConfig.from_dict(model_cfg)
    if anchors is None:
        if cfg.scaffold == "random":
            anchors = random_scaffold(cfg.n_anchors, seed)
        else:
            from anyhead.ict import ICTModel

            anchors = template_scaffold(ICTModel.load(ict_model or "data/ict/ict_model.npz"), cfg.n_anchors, seed)
    elif cfg.scaffold == "random":
        anchors = random_scaffold(cfg.n_anchors, seed)
    return Any3DAvatar(cfg, torch.as_tensor(anchors[0]), torch.as_tensor(anchors[1]))


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Model (scaffold included) and the checkpoint dict; needs no dataset or ICT files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ck = torch.load(path, map_location=map_location, weights_only=False)
    sd = ck["model"]
    if ck["model_cfg"].get("arch", "any3davatar") == "splatter_image":
        model = SplatterImage(SplatterConfig.from_dict(ck["model_cfg"]))
    else:
        model = Any3DAvatar(ModelConfig.from_dict(ck["model_cfg"]), sd["anchors"], sd["normals"])
    model.load_state_dict(sd)
    return model, ck


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


def _lr(step: int, cfg: dict[str, Any]) -> float:
    warm, total = int(cfg.get("warmup", 0)), int(cfg["steps"])
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


@dataclass
class TrainResult:
    metrics: dict[str, Any]  # the last step's losses
    model: torch.nn.Module  # this process's model (DDP keeps every rank's copy identical)


def train(cfg: dict[str, Any], shards: str | os.PathLike[str] | list[str], out: str | os.PathLike[str],
          resume: bool = True, anchors: tuple[np.ndarray, np.ndarray] | None = None, stop_after: int | None = None,
          ict_model: str | None = None) -> TrainResult:
    """Train to ``cfg['steps']`` (or stop early after ``stop_after`` steps: tests use it to
    simulate an interruption)."""
    out = Path(out)
    rank, world, device = _dist()
    seed = int(cfg.get("seed", 0))
    torch.manual_seed(seed)
    ck_path = out / "checkpoint.pt"
    start = 0
    if resume and ck_path.exists():
        model, ck = load_checkpoint(ck_path)
        start = int(ck["step"])
        log.info("resuming from %s at step %d", ck_path, start)
    else:
        model, ck = build_model(cfg["model"], ict_model, anchors, seed), None
    model.to(device)
    weights = LossWeights(**cfg.get("loss", {}))
    loss_fn = ReconLoss(weights).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=float(cfg.get("weight_decay", 0.01)))
    if ck is not None:
        opt.load_state_dict(ck["optimizer"])
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    data = RawSamples(shards)
    B, V = int(cfg["batch_size"]), int(cfg["n_targets"])
    S, T = model.cfg.image_size, int(cfg["target_size"])  # every architecture's config has image_size
    use_bf16 = device.type == "cuda" and bool(cfg.get("bf16", True))
    steps = int(cfg["steps"])
    end = steps if stop_after is None else min(steps, start + stop_after)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _trim_log(out / "train_log.csv", start)
    last: dict[str, Any] = {}
    t0 = time.perf_counter()
    bar = tqdm(range(start, end), desc="train", disable=rank != 0, initial=start, total=steps)
    budget_s = 60.0 * float(cfg["time_budget_min"]) if cfg.get("time_budget_min") else None
    for step in bar:
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            log.warning("stopping at step %d of %d: time budget of %s min spent", step, steps, cfg["time_budget_min"])
            if rank == 0 and step > start:
                save_checkpoint(ck_path, model, opt, step, cfg)
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
            if (step + 1) % int(cfg.get("log_every", 10)) == 0 or step + 1 == end:
                _append_log(out / "train_log.csv", last)
            if (step + 1) % int(cfg.get("ckpt_every", 100)) == 0 or step + 1 == end:
                save_checkpoint(ck_path, model, opt, step + 1, cfg)
    if rank == 0 and last:
        write_json(out / "metrics.json", {k: v for k, v in last.items() if k != "seconds"})
    return TrainResult(last, model)


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, cfg: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "train_cfg": cfg,
                "model_cfg": model.cfg.to_dict()}, tmp)
    os.replace(tmp, path)


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
    ap.add_argument("--shards", default=None, help="training shards (default data/<profile>/shards/train)")
    ap.add_argument("--out", default=None, help="run folder (default data/<profile>/train)")
    ap.add_argument("--variant", default=None, help="a key of train.variants (ablation overrides)")
    ap.add_argument("--no-resume", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    from anyhead.config import load_params

    profile, prof = load_params(args.params, args.profile)
    cfg = json.loads(json.dumps(prof["train"]))
    if args.variant:
        cfg["model"].update(cfg.get("variants", {}).get(args.variant, {}))
    train(cfg, args.shards or f"data/{profile}/shards/train", args.out or f"data/{profile}/train", not args.no_resume)


if __name__ == "__main__":
    main()
