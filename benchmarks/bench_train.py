"""Training throughput: the old data path, the new one and the ceiling, side by side in one run.

    python -m benchmarks.bench_train [--profile gpu] [--params P] [--shards DIR] [--batches 8 32] [--steps 60]
                                     [--compile] [--out results/bench_train.json]

For each batch size, the same model (the profile's ``any3davatar``), renderer and loss run with:

* ``old``: the previous trainer: PNGs decoded in the training thread every step, noise drawn on the
  host, one gsplat call per scene, AdamW with per-tensor kernels, loss parts read back every step;
* ``new``: :class:`recon.train.StepRunner` fed by the configured batch source (the decoded split on
  the device, view choice / resizing / noise there), one batched gsplat call, fused AdamW, EMA;
* ``ceiling``: the new step on one pre-made batch already on the device (no data work at all);
* ``new+compile`` (with ``--compile``): the new path with ``torch.compile`` on the model.

Reported: samples/s (steps x batch over wall time, synchronised at both ends), ms per step split into
data, forward, render, loss, backward and optimizer (a separate pass with a synchronisation after
each phase, so the parts add up to more than the unsynchronised step), peak GPU memory, and the GPU's
busy fraction ("SM utilisation": NVML's utilization.gpu, the share of time a kernel was running,
sampled every 20 ms during the throughput pass). On CPU the same harness runs with wall clocks.
"""
from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from anyhead.config import replace
from anyhead.io import write_json
from recon.cache import DecodeBatches, batch_source
from recon.checkpoints import build_model
from recon.config import load_config
from recon.losses import ReconLoss
from recon.render import render
from recon.train import StepRunner, lr_at, make_optimizer

from .metrics.timing import device_record

PHASES = ("data", "forward", "render", "loss", "backward", "optimizer")


class PhaseTimer:
    """Synchronised wall-clock marks between the phases of one step."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times, self.t = device, {p: [] for p in PHASES}, 0.0

    def sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        self.t = self.sync()

    def __call__(self, phase: str) -> None:
        now = self.sync()
        self.times[phase].append(1000 * (now - self.t))
        self.t = now

    def medians(self) -> dict[str, float]:
        return {p: float(np.median(v)) for p, v in self.times.items() if v}


class Utilisation:
    """Samples NVML's GPU busy percentage in a thread (None where NVML is missing)."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[int] = []
        self.handle = None
        if device.type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                self.nvml = pynvml
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            except Exception:  # no NVML: report None rather than fail the benchmark
                self.handle = None

    def __enter__(self) -> "Utilisation":
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if self.handle is not None:
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples[2:])) if len(self.samples) > 4 else None


def old_step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn: ReconLoss, device: torch.device,
             bf16: bool, T: int) -> Callable:
    """The previous trainer's step, as it was: host noise, per-scene rendering, per-step read-back."""
    def step(batch: dict[str, torch.Tensor], seed: int, i: int, lr: float, mark: Callable) -> None:
        noise = None
        if model.noise_shape is not None:
            gen = torch.Generator().manual_seed(hash((seed, i, 0)) % (2**63))
            noise = torch.randn((batch["image"].shape[0], *model.noise_shape), generator=gen).to(device)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            o = model(batch["image"], batch["w2c"], batch["K"], batch["t_w2c"], batch["t_K"], (T, T), noise)
        mark("forward")
        g = o["gaussians"]
        outs = [render(g[b:b + 1], batch["t_w2c"][b:b + 1], batch["t_K"][b:b + 1], T, T) for b in range(g.means.shape[0])]
        r = {k: torch.cat([x[k] for x in outs]) for k in outs[0]}
        mark("render")
        aux_gt = torch.nn.functional.interpolate(batch["t_rgb"].flatten(0, 1), size=o["aux_rgb"].shape[-2:], mode="area") \
            if "aux_rgb" in o else None
        loss, parts = loss_fn(r["rgb"].flatten(0, 1), r["alpha"].flatten(0, 1), batch["t_rgb"].flatten(0, 1),
                              batch["t_mask"].flatten(0, 1), o["aux_rgb"].flatten(0, 1).float() if "aux_rgb" in o else None,
                              aux_gt)
        _ = {k: float(v) for k, v in parts.items()}  # the old trainer converted every part to a Python float
        mark("loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        mark("backward")
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        float(loss.detach())
        mark("optimizer")
    return step


def bench(variant: str, cfg: Any, mcfg: Any, shards: str, cache_dir: str | None, device: torch.device, B: int,
          steps: int, warmup: int, ict_model: str) -> dict[str, Any]:
    """Throughput pass, then a phase-timed pass, of one variant at batch size ``B``."""
    tcfg = replace(cfg, {"batch_size": B})
    torch.manual_seed(0)
    model = build_model(mcfg, ict_model).to(device).train()
    loss_fn = ReconLoss(tcfg.loss).to(device)
    T, S, V = tcfg.target_size, mcfg.image_size, tcfg.n_targets
    bf16 = device.type == "cuda" and tcfg.bf16
    total = warmup + 2 * steps
    if variant == "old":
        opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        source = DecodeBatches(shards, device, tcfg.seed, 0, 1, B, V, S, T)
        fn = old_step(model, opt, loss_fn, device, bf16, T)

        def run(i: int, mark: Callable) -> None:
            batch = source(i)
            mark("data")
            fn(batch, tcfg.seed, i, lr_at(i, tcfg, total), mark)
    else:
        opt = make_optimizer(model, tcfg, device)
        from recon.train import EMA

        ema = EMA(model, tcfg.ema_decay) if tcfg.ema_decay > 0 else None
        # "+compile": torch.compile's default mode; "+graphs": its reduce-overhead mode (CUDA graphs for the model's
        # forward and backward; the gsplat render and the optimizer stay eager)
        net = torch.compile(model) if variant.endswith("+compile") else \
            torch.compile(model, mode="reduce-overhead") if variant.endswith("+graphs") else model
        runner = StepRunner(tcfg, model, net, opt, loss_fn, device, ema)
        source = batch_source("device" if device.type == "cuda" else tcfg.data_path, shards, cache_dir, device,
                              tcfg.seed, 0, 1, B, V, S, T, 0, total, tcfg.loader_workers)
        ceiling = variant.startswith("ceiling")
        fixed = source(0) if ceiling else None
        fixed_noise = runner.noise(B, tcfg.seed, 0, 0) if ceiling else None

        def run(i: int, mark: Callable) -> None:
            batch = fixed if fixed is not None else source(i)
            noise = fixed_noise if fixed is not None else runner.noise(B, tcfg.seed, i, 0)
            mark("data")
            runner(batch, noise, lr_at(i, tcfg, total), i, mark)
    none = lambda phase: None  # noqa: E731
    for i in range(warmup):
        run(i, none)
    timer = PhaseTimer(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    with Utilisation(device) as util:
        t0 = timer.sync()
        for i in range(warmup, warmup + steps):
            run(i, none)
        wall = timer.sync() - t0
    for i in range(warmup + steps, total):  # the phase-timed pass
        timer.start()
        run(i, timer)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"variant": variant, "batch": B, "steps": steps, "samples_per_s": B * steps / wall,
            "ms_per_step": 1000 * wall / steps, "phases_ms": timer.medians(), "sm_util_pct": util.mean,
            "peak_memory_mib": peak, "data_path": getattr(source, "kind", "decode")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="gpu")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--shards", default=None, help="training shards (default: the profile's train split)")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--variants", nargs="+", default=["old", "new", "ceiling"])
    ap.add_argument("--compile", action="store_true", help="also measure new+compile")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.params, args.profile)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shards = args.shards or str(cfg.paths.split("train"))
    variants = args.variants + (["new+compile", "ceiling+compile"] if args.compile else [])
    rows = []
    for B in args.batches:
        for v in variants:
            try:
                r = bench(v, cfg.train, cfg.any3davatar, shards, str(cfg.paths.cache("train")), device, B, args.steps,
                          args.warmup, str(cfg.paths.ict_model))
            except Exception as e:  # one failing variant (e.g. a compiler error) must not lose the others
                print(f"B={B} {v}: FAILED {type(e).__name__}: {e}", flush=True)
                continue
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(r)
            print(f"B={B} {v}: {r['samples_per_s']:.1f} samples/s, util {r['sm_util_pct']}", flush=True)
    for B in args.batches:
        old = next((r for r in rows if r["batch"] == B and r["variant"] == "old"), None)
        for r in rows:
            if r["batch"] == B:  # against the ceiling of the same compilation setting
                name = "ceiling" + (r["variant"][r["variant"].index("+"):] if "+" in r["variant"] else "")
                ceil = next((c for c in rows if c["batch"] == B and c["variant"] == name), None)
                r["of_ceiling"] = r["samples_per_s"] / ceil["samples_per_s"] if ceil else None
                r["vs_old"] = r["samples_per_s"] / old["samples_per_s"] if old else None
    rec = device_record(str(device))
    print(f"\n{rec.get('gpu', rec.get('cpu'))} | torch {torch.__version__} | profile {cfg.name} | model any3davatar "
          f"({cfg.any3davatar.n_anchors} anchors x {cfg.any3davatar.gaussians_per_anchor}, {cfg.any3davatar.image_size} px), "
          f"{cfg.train.n_targets} targets at {cfg.train.target_size} px, bf16 {cfg.train.bf16}")
    print("| batch | path | samples/s | ms/step | of ceiling | vs old | GPU busy % | peak MiB | "
          + " | ".join(f"{p} ms" for p in PHASES) + " |")
    print("|---" * (8 + len(PHASES)) + "|")
    for r in rows:
        f = lambda x, fmt: "-" if x is None else format(x, fmt)  # noqa: E731
        print(f"| {r['batch']} | {r['variant']} | {r['samples_per_s']:.1f} | {r['ms_per_step']:.1f} | "
              f"{f(r['of_ceiling'], '.1%')} | {f(r['vs_old'], '.2f')}x | {f(r['sm_util_pct'], '.0f')} | "
              f"{f(r['peak_memory_mib'], '.0f')} | " + " | ".join(f(r['phases_ms'].get(p), '.1f') for p in PHASES) + " |")
    if args.out:
        write_json(args.out, {**rec, "torch": torch.__version__, "profile": cfg.name, "rows": rows,
                              "model": cfg.any3davatar.to_dict(), "train": {"n_targets": cfg.train.n_targets,
                                                                           "target_size": cfg.train.target_size}})


if __name__ == "__main__":
    main()
