"""Publish leaderboards from evaluation results: Markdown, CSV and LaTeX tables, plots, qualitative grid.

    python -m benchmarks.leaderboard [--profile P] [--eval data/<profile>/eval] [--out data/<profile>/leaderboard]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from anyhead.config import ConfigError
from anyhead.io import atomic_path, save_png, write_bytes, write_json
from recon.config import load_config

ANGLE_BUCKETS = ("0-30", "30-90", "90-150", "150-180")  # benchmarks.protocol
YAW_BUCKETS = ("front <=30", "side 30-120", "back >=120")

# column -> (path into aggregate.json "metrics", higher is better); values are {"mean", "low", "high", "n"}
COLUMNS: dict[str, tuple[tuple[str, ...], bool]] = {
    "PSNR": (("overall", "psnr"), True), "SSIM": (("overall", "ssim"), True), "LPIPS": (("overall", "lpips"), False),
    **{f"PSNR {b}": (("angle", b, "psnr"), True) for b in ANGLE_BUCKETS},
    **{f"LPIPS {b}": (("angle", b, "lpips"), False) for b in ANGLE_BUCKETS},
    **{f"SSIM {b}": (("angle", b, "ssim"), True) for b in ANGLE_BUCKETS},
    "PSNR masked": (("overall", "psnr_masked"), True), "LPIPS masked": (("overall", "lpips_masked"), False),
    "CSIM": (("identity", "csim"), True), "Face det.": (("identity", "face_detection_rate"), True),
    "Depth err mm": (("overall", "depth_mae_mm"), False), "Alpha IoU": (("overall", "alpha_iou"), True),
    "Chamfer mm": (("geometry", "chamfer_mm"), False), "F@5mm": (("geometry", "fscore_5mm"), True),
    "F@10mm": (("geometry", "fscore_10mm"), True), "Normal err deg": (("geometry", "normal_angle_deg"), False),
    **{f"PSNR yaw {b.split()[0]}": (("yaw", b, "psnr"), True) for b in YAW_BUCKETS},
}
CI_COLUMNS = ("PSNR", "PSNR 150-180", "LPIPS", "CSIM", "Chamfer mm")  # shown with their 95% interval half-width


def _get(metrics: dict[str, Any], path: tuple[str, ...]) -> tuple[float, float]:
    """(mean, half-width of the interval) of a metric; NaN where absent."""
    v: Any = metrics
    for k in path:
        v = v.get(k, {}) if isinstance(v, dict) else {}
    if isinstance(v, dict):
        mean = v.get("mean", math.nan)
        hw = (v.get("high", math.nan) - v.get("low", math.nan)) / 2 if "high" in v else math.nan
        return float(mean), float(hw)
    return (float(v) if v is not None else math.nan), math.nan


def collect(eval_root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    rows, raw = [], {}
    for agg in sorted(eval_root.glob("*/aggregate.json")):
        r = json.loads(agg.read_text())
        if "split" not in r:  # a photo-protocol result (no ground truth): reported apart
            continue
        name = r["method"]["method"]
        raw[name] = r
        row: dict[str, Any] = {"Method": name, "Budget": _budget(r["method"])}
        for col, (path, _) in COLUMNS.items():
            row[col], hw = _get(r["metrics"], path)
            if col in CI_COLUMNS:
                row[f"{col} ±"] = hw
        row["Time ms"] = r["timing"]["median_run_ms"]
        row["Time IQR ms"] = r["timing"]["iqr_run_ms"]
        row["Prep ms"] = r["timing"]["median_prepare_ms"]
        ps = pd.read_csv(agg.parent / "per_sample.csv")
        row["Gaussians"] = int(ps["gaussians"].median())
        rows.append(row)
    if not rows:
        raise SystemExit(f"{eval_root}: no */aggregate.json; run `python -m benchmarks.run --method all` first")
    df = pd.DataFrame(rows).sort_values("PSNR 150-180", ascending=False).reset_index(drop=True)
    return df, raw


def _budget(md: dict[str, Any]) -> str:
    """What each row was given: training steps from the checkpoint's own record, or the fit's iterations."""
    if md.get("learned"):
        text = f"{md.get('trained_steps', '?')} steps"
        if md.get("trained_batch"):
            text += f" x {md['trained_batch']} ({md['trained_steps'] * md['trained_batch'] / 1000:.0f}k samples)"
        return text + (f", release {md['release']}" if md.get("release") else "")
    if "max_iterations" in md:
        return f"<= {md['max_iterations']} it/head"
    return "none"


def _fmt(v: Any, col: str) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if col in ("Gaussians",):
        return f"{int(v)}"
    if col.startswith(("SSIM", "LPIPS", "F@", "CSIM", "Alpha")):
        return f"{v:.3f}"
    if col == "Face det.":
        return f"{v:.0%}"
    if col.startswith(("Time", "Prep")):
        return f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    return f"{v:.2f}"


def _cell(r: pd.Series, c: str) -> str:
    """A value, with its interval half-width where the table shows one."""
    text = _fmt(r[c], c)
    hw = r.get(f"{c} ±")
    if hw is not None and not (isinstance(hw, float) and math.isnan(hw)) and text != "-":
        text += f" ±{_fmt(hw, c)}"
    return text


def best(df: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for col, (_, higher) in COLUMNS.items():
        s = df[col].dropna()
        if len(s):
            out[col] = s.max() if higher else s.min()
    out["Time ms"] = df["Time ms"].min()
    return out


def markdown(df: pd.DataFrame, cols: list[str]) -> str:
    b = best(df)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        cells = [f"**{_cell(r, c)}**" if c in b and r[c] == b[c] else _cell(r, c) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latex(df: pd.DataFrame, cols: list[str]) -> str:
    b = best(df)
    esc = lambda s: str(s).replace("_", r"\_").replace("@", r"@").replace("%", r"\%")  # noqa: E731
    lines = [r"\begin{tabular}{l" + "r" * (len(cols) - 1) + "}", r"\toprule", " & ".join(esc(c) for c in cols) + r" \\",
             r"\midrule"]
    for _, r in df.iterrows():
        cells = [(r"\textbf{" + esc(_cell(r, c)) + "}") if c in b and r[c] == b[c] else esc(_cell(r, c)) for c in cols]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def plots(df: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter(df["Time ms"], df["PSNR"])
    for _, r in df.iterrows():
        ax.annotate(r["Method"], (r["Time ms"], r["PSNR"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("median reconstruction time, inference step alone (ms, log)")
    ax.set_ylabel("PSNR (dB), all target views")
    ax.set_title("quality vs time")
    fig.tight_layout()
    _savefig(fig, out / "quality_vs_time.png")
    fig, ax = plt.subplots(figsize=(8.5, 4))
    buckets = [f"PSNR {b}" for b in ANGLE_BUCKETS]
    x = np.arange(len(buckets))
    w = 0.8 / len(df)
    for i, (_, r) in enumerate(df.iterrows()):
        ax.bar(x + i * w, [r[b] for b in buckets], w, label=r["Method"])
    ax.set_xticks(x + 0.4 - w / 2, [f"{b} deg" for b in ANGLE_BUCKETS])
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("PSNR by angle to the input view")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    lo = np.nanmin(df[buckets].to_numpy())
    ax.set_ylim(max(0, lo - 2), None)
    fig.tight_layout()
    _savefig(fig, out / "psnr_by_angle.png")
    plt.close("all")


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def qualitative(eval_root: Path, methods: list[str], out: Path, n_samples: int = 2) -> None:
    """Rows: GT (input, front, side, back), then each method's front/side/back renders."""
    first = eval_root / methods[0] / "renders"
    keys = sorted({p.name.split("_input")[0] for p in first.glob("*_input.png")})[:n_samples]
    blocks = []
    for key in keys:
        rows = []
        tiles = [eval_root / methods[0] / "renders" / f"{key}_{t}.png" for t in ("input", "front_gt", "side_gt", "back_gt")]
        rows.append(("GT", [np.asarray(Image.open(t).convert("RGB")) for t in tiles]))
        for m in methods:
            r = eval_root / m / "renders"
            if (r / f"{key}_front.png").exists():
                rows.append((m, [None] + [np.asarray(Image.open(r / f"{key}_{v}.png").convert("RGB")) for v in ("front", "side", "back")]))
        size = rows[0][1][1].shape[0]
        for label, ims in rows:
            canvas = Image.new("RGB", (120 + 4 * size, size), "white")
            ImageDraw.Draw(canvas).text((4, size // 2 - 6), label, fill=(0, 0, 0))
            for j, im in enumerate(ims):
                if im is not None:
                    canvas.paste(Image.fromarray(im).resize((size, size)), (120 + j * size, 0))
            blocks.append(np.asarray(canvas))
        blocks.append(np.full((8, 120 + 4 * size, 3), 255, np.uint8))
    if blocks:
        save_png(out / "qualitative.png", np.concatenate(blocks, 0))


def paired_table(eval_root: Path, methods: list[str], n_boot: int = 2000) -> tuple[str, str]:
    """Paired PSNR differences (per head, by angle bucket, 95% bootstrap intervals) of every method against
    the best baseline (the best non-Any3DAvatar method by overall PSNR). Returns (reference, Markdown)."""
    from .metrics import stats

    tables = {m: pd.read_csv(eval_root / m / "per_view.csv") for m in methods}
    baselines = {m: t for m, t in tables.items() if not m.startswith("any3davatar")} or tables
    ref = stats.best_method(baselines, "psnr", True)
    lines = ["| Method | " + " | ".join(f"ΔPSNR {b}" for b in (*ANGLE_BUCKETS, "overall")) + " |",
             "|---" * (len(ANGLE_BUCKETS) + 2) + "|"]
    for m, t in tables.items():
        if m == ref:
            continue
        d = stats.paired_bucket_differences(t, tables[ref], "psnr", "angle_bucket", "key", ANGLE_BUCKETS, n_boot=n_boot)
        cells = [f"{d[b].mean:+.2f} [{d[b].low:+.2f}, {d[b].high:+.2f}]" if d[b].n > 1 else "-"
                 for b in (*ANGLE_BUCKETS, "overall")]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return ref, "\n".join(lines)


def publish(eval_root: Path, out: Path, title: str = "") -> pd.DataFrame:
    df, raw = collect(eval_root)
    main_cols = ["Method", "Budget", "PSNR", *(f"PSNR {b}" for b in ANGLE_BUCKETS), "SSIM", "LPIPS", "LPIPS 150-180",
                 "CSIM", "Face det.", "Depth err mm", "Alpha IoU", "Chamfer mm", "F@5mm", "F@10mm", "Time ms", "Time IQR ms",
                 "Gaussians"]
    all_cols = ["Method", "Budget", *COLUMNS, "Time ms", "Time IQR ms", "Prep ms", "Gaussians"]
    csv_cols = all_cols + [c for c in df.columns if c.endswith(" ±")]
    with atomic_path(out / "leaderboard.csv") as tmp:
        df[csv_cols].to_csv(tmp, index=False)
    write_bytes(out / "leaderboard.tex", latex(df, main_cols).encode())
    any_r = next(iter(raw.values()))
    card, t = any_r["card"], any_r["timing"]
    ref, paired = paired_table(eval_root, list(df["Method"]), card["statistics"]["n_boot"])
    ident = card["identity"] if isinstance(card["identity"], dict) else {}
    md = [f"# Leaderboard{': ' + title if title else ''}", "",
          f"Split `{any_r['split']}` ({any_r['n_samples']} heads), hash `{any_r['hash']}`; target resolution "
          f"{card['resolution']} px, composited on white; protocol `{card['protocol']['name']}`: views bucketed by their "
          f"angle to the input camera about the head centre; masked metrics over GT-or-predicted foreground. "
          f"LPIPS {card['lpips']['backbone'] if isinstance(card['lpips'], dict) else card['lpips']}; CSIM: "
          f"{ident.get('embedder', 'disabled')} embeddings of faces found within 90 degrees of the input, with the "
          f"detection rate; geometry from rendered expected depth vs GT depth (visible surface, F-score at 5 / 10 mm). "
          f"± is the half-width of the 95% bootstrap interval over heads. Time: the inference step alone on prepared "
          f"inputs ({t['timer']}, median and IQR of {t['n_runs']} runs over {t['n_heads']} heads, batch 1, "
          f"{t.get('gpu', t.get('cpu'))}); preprocessing apart (`Prep ms`). Budget: training steps from each "
          f"checkpoint's own record. Best value per column in bold. Sorted by PSNR at 150-180 degrees.",
          "", markdown(df, main_cols), "", f"## Paired differences against the best baseline ({ref})", "",
          "Per head, mean over its views in the bucket; 95% bootstrap interval over heads.", "", paired, "",
          "## By absolute yaw (the earlier buckets, same numbers)", "",
          markdown(df, ["Method", *(f"PSNR yaw {b.split()[0]}" for b in YAW_BUCKETS)]), "",
          "## All columns", "", markdown(df, all_cols), "",
          "![quality vs time](quality_vs_time.png) ![PSNR by angle to the input](psnr_by_angle.png)", "",
          "![qualitative: GT (input, front, side, back) and each method](qualitative.png)", ""]
    write_bytes(out / "leaderboard.md", "\n".join(md).encode())
    plots(df, out)
    qualitative(eval_root, list(df["Method"]), out)
    write_json(out / "summary.json", {r["Method"]: {"psnr": r["PSNR"], "psnr_150_180": r["PSNR 150-180"], "ssim": r["SSIM"],
                                                    "lpips": r["LPIPS"], "csim": r["CSIM"], "chamfer_mm": r["Chamfer mm"],
                                                    "time_ms": r["Time ms"]} for _, r in df.iterrows()})
    write_json(out / "cards.json", {m: {"card": r["card"], "method": r["method"], "timing": r["timing"]} for m, r in raw.items()})
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--eval", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    try:
        cfg = load_config(args.params, args.profile)
    except ConfigError as e:
        raise SystemExit(f"{args.params}: {e}") from None
    df = publish(Path(args.eval or cfg.paths.eval), Path(args.out or cfg.paths.leaderboard), cfg.name)
    print(markdown(df, ["Method", "Budget", "PSNR", "PSNR 150-180", "SSIM", "LPIPS", "CSIM", "Chamfer mm", "Time ms"]))


if __name__ == "__main__":
    main()
