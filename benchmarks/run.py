"""Evaluate a registered method on the fixed, hashed split of a profile (protocol v2: benchmarks.protocol).

    python -m benchmarks.run --method any3davatar [--split test] [--checkpoint C] [--profile P]
    python -m benchmarks.run --method all
    python -m benchmarks.run --method any3davatar --photos DIR      # real photos, no ground truth

Per target view: PSNR / SSIM / LPIPS (full image, and masked over GT-or-predicted foreground), CSIM with
face detection, depth error and alpha IoU against the shard's GT maps, each labelled with its angle to the
input camera (buckets 0-30, 30-90, 90-150, 150-180) and its absolute yaw. Per head: Chamfer and F-score
of back-projected rendered depth vs GT depth (visible surface). Timing: the inference step alone on
prepared inputs (CUDA events, repeated; median and IQR, GPU clocks and other GPU processes recorded),
preprocessing apart. Means carry bootstrap intervals over heads.

Writes data/<profile>/eval/<method>/: per_view.csv, per_sample.csv, aggregate.json (metrics, intervals,
timing, the metric cards and the checkpoint's own record), and renders of the first samples for the
qualitative grid. Shards are verified against their manifests and split identities against the samples'
own meta before any work.
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
from anyhead.config import ConfigError
from anyhead.io import atomic_path, save_png, write_json
from anyhead.loader import shard_list
from anyhead.paths import Paths
from anyhead.samples import Sample, SampleError, decode_sample
from anyhead.shards import ShardError, check_split_identities, read_tar_samples, split_hash, verify_shards
from recon.checkpoints import CheckpointError, check_config, read_record
from recon.config import ProfileConfig, load_config, model_config_from_dict
from recon.data import input_on_white
from recon.release import find_weights
from recon.render import render

from .methods import REGISTRY
from .methods.base import Method
from .metrics import geometry, identity, image, stats
from .metrics.timing import CARD_V2 as TIMING_CARD
from .metrics.timing import Timer, device_record, gpu_context, time_callable
from .protocol import ANGLE_BUCKETS, DEFAULT_PROTOCOL, YAW_BUCKETS, yaw_offset_cameras

log = logging.getLogger("benchmarks.run")
RELEASED_METHOD = "any3davatar"  # the method whose released weights (weights/) stand in for a missing run
QUALITATIVE_SAMPLES = 3


class BenchmarkError(RuntimeError):
    """A problem with the benchmark's inputs, stated so the user can fix it."""


def load_split(paths: Paths, split: str) -> tuple[list[Sample], dict[str, Any]]:
    """Decoded samples of a split, checked against the split manifest's keys and hash, each shard against its
    manifest's sha256, and the samples' own identities against the split's."""
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
    shards = shard_list(root / split)
    try:
        verify_shards(shards)  # sha256 against each shard's manifest (a stamp skips unchanged files)
        for shard in shards:
            for files in read_tar_samples(shard):
                try:
                    samples.append(decode_sample(files))
                except SampleError as e:
                    raise BenchmarkError(f"{shard}: {e}") from e
        check_split_identities(man, split, [(s.key, s.meta) for s in samples])
    except ShardError as e:
        raise BenchmarkError(str(e)) from e
    if any(s.meta.get("single_view") for s in samples):
        raise BenchmarkError(f"split {split!r} holds single-view samples: it has no targets to evaluate against")
    return sorted(samples, key=lambda s: s.key), {"split": split, "hash": info["hash"], "n_samples": len(samples)}


IMAGE_METRICS = ("psnr", "psnr_masked", "ssim", "ssim_masked", "lpips", "lpips_masked")
VIEW_METRICS = (*IMAGE_METRICS, "csim", "depth_mae_mm", "alpha_iou")
HEAD_GEOMETRY = ("chamfer_mm", "accuracy_mm", "completeness_mm", "fscore_5mm", "fscore_10mm", "normal_angle_deg")


def _build(method_name: str, cfg: ProfileConfig, checkpoint: str | Path | None, device: str) -> Method:
    spec = REGISTRY.get(method_name)
    if spec is None:
        raise BenchmarkError(f"unknown method {method_name!r}; registered: {', '.join(REGISTRY)}")
    if spec.learned and checkpoint is None:
        checkpoint = cfg.paths.checkpoint(method_name)
        if not Path(checkpoint).exists() and method_name == RELEASED_METHOD:
            released = _released_for(spec.model_config(cfg))
            if released is not None:  # no run of this profile, but released weights of the profile's own model
                log.info("%s: no trained checkpoint for profile %s; using the released weights %s", method_name, cfg.name, released)
                checkpoint = released
    if spec.learned and not Path(checkpoint).exists():
        raise BenchmarkError(f"{checkpoint}: checkpoint missing for {method_name}; train it (dvc repro train@{method_name}) "
                             "or pass --checkpoint")
    return spec.build(cfg, device=device, checkpoint=checkpoint)


def _released_for(model_cfg: Any) -> Path | None:
    """The newest released weights if they hold exactly ``model_cfg`` (the profile's model), else None."""
    try:
        path = find_weights()
        check_config(path, model_config_from_dict(read_record(path)["model_cfg"]), model_cfg)
    except (SystemExit, CheckpointError, ValueError, KeyError):
        return None
    return path


def _warm_up(method: Method, method_name: str, sample: Sample) -> None:
    """Module loading, kernels and caches stay out of the timings; loads (and checks) the checkpoint."""
    try:
        method.run(method.prepare(sample))
    except CheckpointError as e:
        raise BenchmarkError(f"{method_name}: {e}") from None


def evaluate(method_name: str, cfg: ProfileConfig, split: str = "test", checkpoint: str | Path | None = None,
             out_root: str | Path | None = None, device: str | None = None) -> dict[str, Any]:
    """Evaluate one registered method on ``split``; writes per-view/per-sample CSVs and aggregate.json."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    bcfg, P = cfg.benchmark, DEFAULT_PROTOCOL
    method = _build(method_name, cfg, checkpoint, device)
    samples, split_info = load_split(cfg.paths, split)
    out = Path(out_root or cfg.paths.eval) / method_name
    lp = None
    if bcfg.lpips:
        from recon.lpips import LPIPS

        lp = LPIPS().to(device)
    emb = identity.cached_embedder(bcfg.arcface_onnx or None) if bcfg.csim else None
    timer = Timer(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _warm_up(method, method_name, samples[0])
    view_rows, sample_rows = [], []
    for si, s in enumerate(tqdm(samples, desc=f"eval {method_name}")):
        inputs, prep_ms = timer.once(lambda s=s: method.prepare(s))
        g, run_ms = timer.once(lambda inputs=inputs: method.run(inputs))
        targets = s.targets
        res = targets[0].rgb.shape[0]
        w2c = torch.stack([torch.from_numpy(v.camera.w2c).float() for v in targets]).to(device)
        K = torch.stack([torch.from_numpy(v.camera.K).float() for v in targets]).to(device)
        with torch.no_grad():
            r = render(g.to(device).detach(), w2c, K, res, res, background=torch.ones(3, device=device))
        pred = r["rgb"].clamp(0, 1).float()
        gt = torch.stack([torch.from_numpy(np.array(v.rgb[..., :3])).permute(2, 0, 1) for v in targets]).float().to(device) / 255
        mask = torch.stack([torch.from_numpy(np.array(v.mask))[None] for v in targets]).float().to(device)
        gt = P.composite_gt(gt, mask)
        region = P.eval_region(mask, r["alpha"].float()).float()
        m = image.image_metrics(pred, gt, region, lp)
        labels = P.label_sample(s)
        c = None
        if emb is not None:
            inp = input_on_white(s.input, res)[0][0]
            c = identity.csim(inp, pred.cpu(), emb, [lb.angle_deg for lb in labels], P.csim_max_angle_deg)
        gv, gh = geometry.geometry_v2(r["depth"].float().cpu().numpy(), r["alpha"].float().cpu().numpy(),
                                      np.stack([v.depth for v in targets]), np.stack([v.mask for v in targets]),
                                      np.stack([v.camera.w2c for v in targets]), np.stack([v.camera.K for v in targets]),
                                      np.stack([v.normal for v in targets]) if targets[0].normal is not None else None,
                                      pixel_stride=bcfg.geometry_stride)
        for i, (v, lb) in enumerate(zip(targets, labels)):
            row = {"key": s.key, "view": v.name, "yaw": v.yaw, "pitch": v.pitch, "angle": lb.angle_deg,
                   "angle_bucket": lb.angle_bucket, "yaw_bucket": lb.yaw_bucket, **{k: float(t[i]) for k, t in m.items()},
                   **{k: float(a[i]) for k, a in gv.items()}}
            if c is not None:
                row.update(csim=c.similarity[i], face_detected=c.detected[i], csim_counted=c.counted[i])
            view_rows.append(row)
        sample_rows.append({"key": s.key, "prepare_ms": prep_ms, "run_ms": run_ms, "gaussians": int(g.means.shape[0]),
                            **gh, **({"csim": c.mean, "face_detection_rate": c.detection_rate,
                                      "input_face_found": c.input_detected} if c is not None else {})})
        if si < QUALITATIVE_SAMPLES:
            _save_qualitative(out / "renders", s, pred, gt, targets)
    timing = _timing(method, samples[: bcfg.timing_heads], device, bcfg.timing_iters)
    df_v, df_s = pd.DataFrame(view_rows), pd.DataFrame(sample_rows)
    agg = aggregate(df_v, df_s, bcfg.bootstrap)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    result = {"method": method.metadata(), "profile": cfg.name, **split_info, "metrics": agg,
              "timing": {**timing, "batch_size": 1, "peak_memory_mib": peak, **device_record(device)},
              "card": metric_card(split_info, lp, res, emb, bcfg)}
    for name, df in (("per_view.csv", df_v), ("per_sample.csv", df_s)):
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False)
    write_json(out / "aggregate.json", result)
    return result


SLOW_RUN_MS = 1000.0  # a method slower than this per head (the single-view fit) is timed on one head, 3 times


def _timing(method: Method, samples: list[Sample], device: str, iters: int) -> dict[str, Any]:
    """The inference step alone on prepared inputs (repeated), and the preprocessing apart. Slow methods
    (one run over ``SLOW_RUN_MS``, already warm) get one head and 3 runs, so timing never dominates a benchmark."""
    run, prep = [], []
    before = gpu_context(device)
    first = time_callable(lambda: method.run(method.prepare(samples[0])), device, 1, warmup=0).times_ms[0]
    warmup = 2
    if first > SLOW_RUN_MS:
        samples, iters, warmup = samples[:1], min(iters, 3), 0
    for s in samples:
        inputs = method.prepare(s)
        run += list(time_callable(lambda inputs=inputs: method.run(inputs), device, iters, warmup=warmup).times_ms)
        prep += list(time_callable(lambda s=s: method.prepare(s), device, max(3, iters // 4), warmup=1).times_ms)
    q = lambda v, p: float(np.quantile(v, p))  # noqa: E731
    return {"median_run_ms": float(np.median(run)), "iqr_run_ms": q(run, 0.75) - q(run, 0.25), "q25_run_ms": q(run, 0.25),
            "q75_run_ms": q(run, 0.75), "median_prepare_ms": float(np.median(prep)), "n_runs": len(run),
            "n_heads": len(samples), "timer": Timer(device).kind, "gpu_before": before, "gpu_after": gpu_context(device)}


def aggregate(df_v: pd.DataFrame, df_s: pd.DataFrame, n_boot: int = 2000) -> dict[str, Any]:
    """Means over heads with bootstrap intervals: overall and per angle-to-input bucket; per absolute-yaw
    bucket as a second view; identity (CSIM over detected faces within 90 degrees, detection rate);
    per-head geometry."""
    present = [m for m in VIEW_METRICS if m in df_v]
    agg: dict[str, Any] = {"angle": {}, "yaw": {}}
    for m in present:
        ivs = stats.bucket_intervals(df_v, m, "angle_bucket", "key", ANGLE_BUCKETS, n_boot=n_boot)
        for b, iv in ivs.items():
            agg["angle"].setdefault(b, {})[m] = iv.as_dict()
        for b, iv in stats.bucket_intervals(df_v, m, "yaw_bucket", "key", YAW_BUCKETS, n_boot=n_boot,
                                            overall=False).items():
            agg["yaw"].setdefault(b, {})[m] = iv.as_dict()
    agg["overall"] = agg["angle"].pop("overall")
    for b in ANGLE_BUCKETS:
        agg["angle"].setdefault(b, {})["n_views"] = int((df_v["angle_bucket"] == b).sum())
    if "face_detected" in df_v:
        counted = df_v[df_v["csim_counted"].astype(bool)]
        agg["identity"] = {"csim": stats.bootstrap_ci(df_s["csim"], n_boot=n_boot).as_dict(),
                           "face_detection_rate": float(counted["face_detected"].mean()) if len(counted) else float("nan"),
                           "n_views_counted": int(len(counted))}
    agg["geometry"] = {g: stats.bootstrap_ci(df_s[g], n_boot=n_boot).as_dict() for g in HEAD_GEOMETRY if g in df_s}
    return agg


def metric_card(split_info: dict[str, Any], lp: Any, resolution: int, emb: Any, bcfg: Any) -> dict[str, Any]:
    from recon.lpips import LPIPS

    return {"protocol": DEFAULT_PROTOCOL.card(), "image": image.CARD, "lpips": LPIPS.card if lp is not None else "disabled",
            "identity": identity.metric_card(emb) if emb is not None else "disabled",
            "geometry": geometry.card_v2(pixel_stride=bcfg.geometry_stride), "statistics": stats.card(n_boot=bcfg.bootstrap),
            "timing": TIMING_CARD, "resolution": resolution, "split_hash": split_info["hash"], "convention": CONVENTION}


def _save_qualitative(folder: Path, s: Sample, pred: torch.Tensor, gt: torch.Tensor, targets: list) -> None:
    yaws = np.array([abs(((v.yaw + 180) % 360) - 180) for v in targets])
    save_png(folder / f"{s.key}_input.png", np.ascontiguousarray(s.input.rgb[..., :3]))
    for name, target in (("front", 0), ("side", 90), ("back", 180)):
        i = int(np.argmin(np.abs(yaws - target)))
        save_png(folder / f"{s.key}_{name}.png", (pred[i].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8))
        save_png(folder / f"{s.key}_{name}_gt.png", (gt[i].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8))


# -- real photos (no ground truth) ---------------------------------------------------------------

PHOTO_YAW_OFFSETS = (-30.0, -15.0, 0.0, 15.0, 30.0)


def evaluate_photos(method_name: str, cfg: ProfileConfig, folder: str | Path, checkpoint: str | Path | None = None,
                    out_root: str | Path | None = None, device: str | None = None, res: int = 256) -> dict[str, Any]:
    """Reconstruct every portrait in ``folder`` (``anyhead.photos``: landmarks, pose, rig framing, matte),
    render it at the input camera and at -30, -15, +15, +30 degrees of yaw about the head centre, and
    report CSIM to the input and the face detection rate per view, with a contact sheet."""
    from anyhead.io import InputError
    from anyhead.photos import IMAGE_SUFFIXES, analyse_portrait, load_image
    from anyhead.samples import View

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    folder = Path(folder)
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not photos:
        raise BenchmarkError(f"{folder}: no photos ({', '.join(IMAGE_SUFFIXES)})")
    method = _build(method_name, cfg, checkpoint, device)
    emb = identity.cached_embedder(cfg.benchmark.arcface_onnx or None)
    out = Path(out_root or cfg.paths.eval) / f"{method_name}-photos"
    rows, skipped, tiles = [], [], []
    for p in tqdm(photos, desc=f"photos {method_name}"):
        try:
            port = analyse_portrait(load_image(p), res, None, source=p.name)
        except InputError as e:
            log.warning("skipped %s", e)
            skipped.append({"photo": p.name, "reason": e.problem})
            continue
        inp = View("input_000", "input", port.camera, port.on_white(), port.alpha)
        sample = Sample(p.stem, {"single_view": True}, [inp])
        try:
            g = method.run(method.prepare(sample))
        except CheckpointError as e:
            raise BenchmarkError(f"{method_name}: {e}") from None
        cams = yaw_offset_cameras(port.camera.w2c, PHOTO_YAW_OFFSETS)
        K = torch.from_numpy(port.camera.K).float().to(device).expand(len(cams), 3, 3)
        with torch.no_grad():
            r = render(g.to(device), torch.from_numpy(cams).float().to(device), K, res, res,
                       background=torch.ones(3, device=device))
        views = r["rgb"].clamp(0, 1).float().cpu()
        c = identity.csim(port.on_white(), views, emb, [abs(o) for o in PHOTO_YAW_OFFSETS], 90.0)
        for i, off in enumerate(PHOTO_YAW_OFFSETS):
            rows.append({"photo": p.name, "yaw_offset": off, "csim": c.similarity[i], "face_detected": c.detected[i]})
        tiles.append(np.concatenate([port.on_white()] + [(v.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
                                                         for v in views], 1))
    df = pd.DataFrame(rows)
    per_offset = {f"{o:+g}": {"csim": float(df[df.yaw_offset == o]["csim"].mean()),
                              "face_detection_rate": float(df[df.yaw_offset == o]["face_detected"].mean())}
                  for o in PHOTO_YAW_OFFSETS} if len(df) else {}
    result = {"method": method.metadata(), "photos": len(photos), "reconstructed": len(photos) - len(skipped),
              "skipped": skipped, "per_yaw_offset": per_offset, "card": {"identity": identity.metric_card(emb),
              "views": "the input camera and the same camera orbited by the yaw offsets about the head centre",
              "resolution": res, "convention": CONVENTION}}
    if len(df):
        with atomic_path(out / "per_view.csv") as tmp:
            df.to_csv(tmp, index=False)
        save_png(out / "contact_sheet.png", np.concatenate(tiles, 0))
    write_json(out / "aggregate.json", result)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, help=f"one of: all, {', '.join(REGISTRY)}")
    ap.add_argument("--split", default="test")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default=None, help="results root (default data/<profile>/eval)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--photos", default=None, help="a folder of real portraits: CSIM and face detection at the input "
                                                    "camera and +-15, +-30 degrees yaw (no ground truth)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        cfg = load_config(args.params, args.profile)
    except ConfigError as e:
        raise SystemExit(f"{args.params}: {e}") from None
    names = list(REGISTRY) if args.method == "all" else [args.method]
    try:
        for n in names:
            ck = args.checkpoint if len(names) == 1 else None
            if args.photos:
                r = evaluate_photos(n, cfg, args.photos, ck, args.out, args.device)
                print(f"{n}: {r['reconstructed']} of {r['photos']} photos; " + ", ".join(
                    f"{k}: CSIM {v['csim']:.3f} det {v['face_detection_rate']:.0%}" for k, v in r["per_yaw_offset"].items()))
                continue
            r = evaluate(n, cfg, args.split, ck, args.out, args.device)
            o, g = r["metrics"]["overall"], r["metrics"]["geometry"]
            print(f"{n}: PSNR {o['psnr']['mean']:.2f}  SSIM {o['ssim']['mean']:.4f}  "
                  f"LPIPS {o.get('lpips', {}).get('mean', math.nan):.4f}  "
                  f"CSIM {r['metrics'].get('identity', {}).get('csim', {}).get('mean', math.nan):.3f}  "
                  f"Chamfer {g.get('chamfer_mm', {}).get('mean', math.nan):.2f} mm  {r['timing']['median_run_ms']:.1f} ms")
    except (BenchmarkError, KeyError, FileNotFoundError) as e:
        raise SystemExit(f"benchmarks.run: {e}") from None


if __name__ == "__main__":
    main()
