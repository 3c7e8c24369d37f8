"""Evaluate a registered method on the fixed, hashed split of a profile.

    python -m benchmarks.run --method any3davatar [--split test] [--checkpoint C] [--profile P]
    python -m benchmarks.run --method all

Writes data/<profile>/eval/<method>/: per_view.csv, per_sample.csv, aggregate.json (with the metric
card), and front/side/back renders of the first samples for the qualitative grid.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from anyhead.cameras import CONVENTION
from anyhead.card import YAW_BUCKETS, yaw_bucket
from anyhead.config import ConfigError
from anyhead.io import atomic_path, save_png, write_json
from anyhead.loader import shard_list
from anyhead.paths import Paths
from anyhead.samples import decode_sample
from anyhead.shards import read_tar_samples, split_hash
from recon.checkpoints import CheckpointError
from recon.config import ProfileConfig, load_config
from recon.render import render

from .methods import REGISTRY
from .metrics import geometry, image
from .metrics.timing import Timer, device_record

log = logging.getLogger("benchmarks.run")
QUALITATIVE_SAMPLES = 3


class BenchmarkError(RuntimeError):
    """A problem with the benchmark's inputs, stated so the user can fix it."""


def load_split(paths: Paths, split: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Decoded samples of a split, checked against the split manifest's keys and hash."""
    root = paths.shards
    man_path = paths.splits_manifest
    if not man_path.exists():
        raise BenchmarkError(f"{man_path}: no split manifest; build the dataset first (dvc repro shards)")
    man = json.loads(man_path.read_text())
    if man.get("convention", {}).get("camera") != CONVENTION["camera"]:
        raise BenchmarkError(f"{man_path}: shards use convention {man.get('convention')}, expected {CONVENTION}")
    if split not in man["splits"]:
        raise BenchmarkError(f"{man_path}: no split {split!r}; have {sorted(man['splits'])}")
    info = man["splits"][split]
    if not info["keys"]:
        raise BenchmarkError(f"{man_path}: split {split!r} is empty")
    if split_hash(info["keys"]) != info["hash"]:
        raise BenchmarkError(f"{man_path}: split {split!r} keys do not match its hash")
    samples = []
    for shard in shard_list(root / split):
        for files in read_tar_samples(shard):
            try:
                samples.append(decode_sample(files))
            except ValueError as e:
                raise BenchmarkError(f"{shard}: sample {files.get('__key__')}: {e}") from e
    keys = sorted(s.key for s in samples)
    if keys != sorted(info["keys"]):
        raise BenchmarkError(f"{root / split}: shards hold {len(keys)} samples, the manifest lists {len(info['keys'])}")
    if any(s.meta.get("single_view") for s in samples):
        raise BenchmarkError(f"split {split!r} holds single-view samples: it has no targets to evaluate against")
    return sorted(samples, key=lambda s: s.key), {"split": split, "hash": info["hash"], "n_samples": len(samples)}


def evaluate(method_name: str, cfg: ProfileConfig, split: str = "test", checkpoint: str | Path | None = None,
             out_root: str | Path | None = None, device: str | None = None) -> dict[str, Any]:
    """Evaluate one registered method on ``split``; writes per-view/per-sample CSVs and aggregate.json."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    spec = REGISTRY.get(method_name)
    if spec is None:
        raise BenchmarkError(f"unknown method {method_name!r}; registered: {', '.join(REGISTRY)}")
    if spec.learned and checkpoint is None:
        checkpoint = cfg.paths.checkpoint(method_name)
    if spec.learned and not Path(checkpoint).exists():
        raise BenchmarkError(f"{checkpoint}: checkpoint missing for {method_name}; train it (dvc repro train@{method_name}) "
                             "or pass --checkpoint")
    method = spec.build(cfg, device=device, checkpoint=checkpoint)
    samples, split_info = load_split(cfg.paths, split)
    out = Path(out_root or cfg.paths.eval) / method_name
    lp = None
    if cfg.benchmark.lpips:
        from recon.lpips import LPIPS

        lp = LPIPS().to(device)
    timer = Timer(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    try:  # warm-up: module loading, kernels, caches stay out of the timings; loads and checks the checkpoint
        method.reconstruct(samples[0])
    except CheckpointError as e:
        raise BenchmarkError(f"{method_name}: {e}") from None
    view_rows, sample_rows = [], []
    for si, s in enumerate(tqdm(samples, desc=f"eval {method_name}")):
        rec, ms = timer.once(lambda s=s: method.reconstruct(s))
        g = rec.gaussians
        targets = [v for v in s.views if v.role == "target"]
        res = targets[0]["rgb"].shape[0]
        w2c = torch.stack([torch.from_numpy(v.camera.w2c).float() for v in targets]).to(device)
        K = torch.stack([torch.from_numpy(v.camera.K).float() for v in targets]).to(device)
        with torch.no_grad():
            r = render(g.to(device).detach(), w2c, K, res, res, background=torch.ones(3, device=device))
        pred = r["rgb"].clamp(0, 1).float()
        gt = torch.stack([torch.from_numpy(np.array(v.rgb[..., :3])).permute(2, 0, 1) for v in targets]).float().to(device) / 255
        mask = torch.stack([torch.from_numpy(np.array(v.mask))[None] for v in targets]).float().to(device)
        gt = gt * mask + (1 - mask)  # GT renders composited on white (they already are; this pins it)
        m = image.image_metrics(pred, gt, mask, lp)
        for i, v in enumerate(targets):
            view_rows.append({"key": s.key, "view": v.name, "yaw": v.yaw, "pitch": v.pitch,
                              "bucket": yaw_bucket(v.yaw), **{k: float(t[i]) for k, t in m.items()}})
        pts, nrm = geometry.gaussian_points(g.to("cpu"))
        geo = geometry.geometry_metrics(pts, nrm, s.points[:, :3].astype(np.float64), s.points[:, 3:].astype(np.float64))
        sample_rows.append({"key": s.key, "reconstruct_ms": ms, "gaussians": int(g.means.shape[0]), **geo,
                            **{f"{k}_ms": v for k, v in rec.timings_ms.items()}})
        if si < QUALITATIVE_SAMPLES:
            _save_qualitative(out / "renders", s, pred, gt, targets)
    df_v, df_s = pd.DataFrame(view_rows), pd.DataFrame(sample_rows)
    agg = aggregate(df_v, df_s)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    result = {"method": method.metadata(), "profile": cfg.name, **split_info, "metrics": agg,
              "timing": {"median_reconstruct_ms": float(df_s["reconstruct_ms"].median()), "timer": timer.kind,
                         "n": len(df_s), "warmup": 1, "batch_size": 1, "peak_memory_mib": peak,
                         "input_resolution": cfg.any3davatar.image_size, **device_record(device)},
             "card": metric_card(split_info, lp, res)}
    for name, df in (("per_view.csv", df_v), ("per_sample.csv", df_s)):
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False)
    write_json(out / "aggregate.json", result)
    return result


def aggregate(df_v: pd.DataFrame, df_s: pd.DataFrame) -> dict[str, Any]:
    metrics = [c for c in df_v.columns if c.startswith(("psnr", "ssim", "lpips"))]
    agg: dict[str, Any] = {"overall": {m: float(df_v[m].mean()) for m in metrics}}
    for b in YAW_BUCKETS:
        sub = df_v[df_v["bucket"] == b]
        agg[b] = {m: (float(sub[m].mean()) if len(sub) else float("nan")) for m in metrics} | {"n_views": int(len(sub))}
    geo = [c for c in ("chamfer_mm", "fscore_2.5mm", "fscore_5.0mm", "normal_consistency") if c in df_s]
    agg["geometry"] = {c: float(df_s[c].mean()) for c in geo}
    return agg


def metric_card(split_info: dict[str, Any], lp: Any, resolution: int) -> dict[str, Any]:
    from recon.lpips import LPIPS

    return {"image": image.CARD, "lpips": LPIPS.card if lp is not None else "disabled",
            "geometry": geometry.CARD, "yaw_buckets": {"front": "|yaw| <= 30", "side": "30 < |yaw| < 120", "back": "|yaw| >= 120"},
            "resolution": resolution, "split_hash": split_info["hash"],
            "mask_policy": "GT alpha > 0.5", "convention": CONVENTION}


def _save_qualitative(folder: Path, s: dict[str, Any], pred: torch.Tensor, gt: torch.Tensor, targets: list[dict]) -> None:
    yaws = np.array([abs(((v.yaw + 180) % 360) - 180) for v in targets])
    inp = next(v for v in s.views if v.role == "input")["rgb"][..., :3]
    save_png(folder / f"{s['key']}_input.png", np.ascontiguousarray(inp))
    for name, target in (("front", 0), ("side", 90), ("back", 180)):
        i = int(np.argmin(np.abs(yaws - target)))
        save_png(folder / f"{s['key']}_{name}.png", (pred[i].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8))
        save_png(folder / f"{s['key']}_{name}_gt.png", (gt[i].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, help=f"one of: all, {', '.join(REGISTRY)}")
    ap.add_argument("--split", default="test")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default=None, help="results root (default data/<profile>/eval)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        cfg = load_config(args.params, args.profile)
    except ConfigError as e:
        raise SystemExit(f"{args.params}: {e}") from None
    names = list(REGISTRY) if args.method == "all" else [args.method]
    try:
        for n in names:
            r = evaluate(n, cfg, args.split, args.checkpoint if len(names) == 1 else None, args.out, args.device)
            o = r["metrics"]["overall"]
            print(f"{n}: PSNR {o['psnr']:.2f}  SSIM {o['ssim']:.4f}  LPIPS {o.get('lpips', math.nan):.4f}  "
                  f"Chamfer {r['metrics']['geometry'].get('chamfer_mm', math.nan):.2f} mm  "
                  f"{r['timing']['median_reconstruct_ms']:.1f} ms")
    except (BenchmarkError, KeyError, FileNotFoundError) as e:
        raise SystemExit(f"benchmarks.run: {e}") from None


if __name__ == "__main__":
    main()
