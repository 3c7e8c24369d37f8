"""Paired per-bucket differences between one method and others evaluated on the same split.

    python -m benchmarks.paired --eval results/v2_vs_v1/eval --method any3davatar \
        --against any3davatar-v1 any3davatar-noaux [--metrics psnr lpips ssim] [--out table.md]

For each metric and angle bucket (benchmarks.protocol): the method's and each other method's mean, and
the paired difference (method minus other) of per-head bucket means with its 95% bootstrap interval
over heads, from the ``per_view.csv`` files that ``benchmarks.run`` writes. A difference whose interval
excludes zero is marked with ``*``. The split hashes must agree (different heads cannot be paired).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from .metrics import stats
from .protocol import ANGLE_BUCKETS

HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "psnr_masked": True, "lpips_masked": False,
                    "depth_mae_mm": False, "alpha_iou": True}


def paired_markdown(eval_root: Path, method: str, others: list[str], metrics: list[str], n_boot: int = 2000) -> str:
    """The Markdown tables (one per metric); raises ValueError when the split hashes differ."""
    hashes = {m: json.loads((eval_root / m / "aggregate.json").read_text())["hash"] for m in [method, *others]}
    if len(set(hashes.values())) != 1:
        raise ValueError(f"{eval_root}: methods were evaluated on different splits: {hashes}")
    tables = {m: pd.read_csv(eval_root / m / "per_view.csv") for m in [method, *others]}
    buckets = list(ANGLE_BUCKETS)
    out = []
    for metric in metrics:
        better = "higher" if HIGHER_IS_BETTER.get(metric, True) else "lower"
        out += [f"### {metric} ({better} is better): {method} minus each, per head, 95% bootstrap interval", "",
                "| vs | " + " | ".join(f"{b}" for b in (*buckets, "overall")) + " |", "|---" * (len(buckets) + 2) + "|"]
        means = stats.per_head(tables[method], metric, "key", "angle_bucket").mean()
        out.append(f"| {method} (mean) | " + " | ".join(f"{means.get(b, float('nan')):.3f}" for b in buckets)
                   + f" | {tables[method][metric].groupby(tables[method]['key']).mean().mean():.3f} |")
        for m in others:
            d = stats.paired_bucket_differences(tables[method], tables[m], metric, "angle_bucket", "key", buckets, n_boot=n_boot)
            cells = []
            for b in (*buckets, "overall"):
                iv = d[b]
                sig = "*" if iv.n > 1 and (iv.low > 0 or iv.high < 0) else ""
                cells.append(f"{iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]{sig}" if iv.n > 1 else "-")
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", required=True, help="folder holding <method>/per_view.csv and aggregate.json")
    ap.add_argument("--method", required=True)
    ap.add_argument("--against", nargs="+", required=True)
    ap.add_argument("--metrics", nargs="+", default=["psnr", "lpips"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    try:
        md = paired_markdown(Path(args.eval), args.method, args.against, args.metrics)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    print(md)
    if args.out:
        Path(args.out).write_text(md + "\n")


if __name__ == "__main__":
    main()
