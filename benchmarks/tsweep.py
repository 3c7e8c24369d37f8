"""Inference noise-level sweep of a trained Any3DAvatar v2: quality per view-angle bucket at each t*.

    python -m benchmarks.tsweep --method any3davatar [--t 0 0.1 0.25 0.5 1] [--split test] [--checkpoint C]
                                [--profile P] [--out tsweep.json]

Training sees t ~ U[0, t_max]; inference is one step from the scaffold at a fixed t* with the model's
seeded noise. This evaluates the same checkpoint at several t* (the model's ``t`` override, no
retraining) on the benchmark split, with the benchmark's metrics (PSNR, SSIM, LPIPS when
``benchmark.lpips``) per bucket of angle to the input view (benchmarks.protocol), and writes ``data/<profile>/eval/<method>/tsweep.json``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyhead.io import write_json
from anyhead.samples import Sample
from recon.config import load_config
from recon.data import input_on_white
from recon.render import render

from .methods import get_spec
from .metrics import image
from .protocol import DEFAULT_PROTOCOL


@torch.no_grad()
def sweep(model: torch.nn.Module, samples: list[Sample], ts: list[float], device: torch.device,
          lpips_net: torch.nn.Module | None = None) -> dict[str, Any]:
    """{"t": ts, "rows": [{t, bucket, n_views, psnr, ssim, (lpips)}...]}: per t and angle bucket (and
    ``all``) the mean over target views. One forward per sample and t; the render of every target at
    the shards' resolution on white, as the benchmark does."""
    per: dict[tuple[float, str], list[dict[str, float]]] = {}
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for s in samples:
        inp = next(v for v in s.views if v.role == "input")
        img, w2c, K = (x.to(device) for x in input_on_white(inp, model.cfg.image_size))
        targets = [v for v in s.views if v.role == "target"]
        res = targets[0].rgb.shape[0]
        tw = torch.stack([torch.from_numpy(v.camera.w2c).float() for v in targets]).to(device)
        tK = torch.stack([torch.from_numpy(v.camera.K).float() for v in targets]).to(device)
        gt = torch.stack([torch.from_numpy(np.array(v.rgb[..., :3])).permute(2, 0, 1) for v in targets]).float().to(device) / 255
        mask = torch.stack([torch.from_numpy(np.array(v.mask))[None] for v in targets]).float().to(device)
        gt = DEFAULT_PROTOCOL.composite_gt(gt, mask)
        labels = DEFAULT_PROTOCOL.label_sample(s)
        for t in ts:
            with amp:
                g = model.reconstruct(img, w2c, K, t=t)
            pred = render(g[0], tw, tK, res, res, background=torch.ones(3, device=device))["rgb"].clamp(0, 1)
            m = image.image_metrics(pred, gt, mask, lpips_net)
            for i, lb in enumerate(labels):
                row = {k: float(m[k][i]) for k in ("psnr", "ssim", "lpips") if k in m}
                per.setdefault((t, lb.angle_bucket), []).append(row)
                per.setdefault((t, "all"), []).append(row)
    rows = [{"t": t, "bucket": b, "n_views": len(r), **{k: float(np.mean([x[k] for x in r])) for k in r[0]}}
            for (t, b), r in sorted(per.items(), key=lambda kv: (kv[0][0], kv[0][1]))]
    return {"t": list(ts), "rows": rows}


def main() -> None:
    from .run import load_split

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="any3davatar")
    ap.add_argument("--t", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5, 1.0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = load_config(args.params, args.profile)
    spec = get_spec(args.method)
    if spec.arch != "any3davatar":
        raise SystemExit(f"{args.method}: the t* sweep is for Any3DAvatar methods")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    method = spec.build(cfg, device=str(device), checkpoint=args.checkpoint or cfg.paths.checkpoint(args.method))
    model = method._model()
    if not getattr(model, "v2", False):
        raise SystemExit(f"{args.method}: a v1 model has no noise-level input at inference")
    samples, info = load_split(cfg.paths, args.split)
    lp = None
    if cfg.benchmark.lpips:
        from recon.lpips import LPIPS

        lp = LPIPS().to(device)
    result = {"method": args.method, "profile": cfg.name, **info, "trained_t_max": model.cfg.t_max,
              "configured_t_star": model.cfg.t_star, **sweep(model, samples, args.t, device, lp)}
    out = Path(args.out) if args.out else Path(cfg.paths.eval) / args.method / "tsweep.json"
    write_json(out, result)
    print(f"| t* | bucket | PSNR | SSIM |{' LPIPS |' if lp is not None else ''}")
    for r in result["rows"]:
        print(f"| {r['t']:.2f} | {r['bucket']} | {r['psnr']:.2f} | {r['ssim']:.4f} |"
              + (f" {r['lpips']:.4f} |" if "lpips" in r else ""))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
