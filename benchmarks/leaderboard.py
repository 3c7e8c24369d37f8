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

# column -> (source, higher is better)
COLUMNS: dict[str, tuple[tuple[str, ...], bool]] = {
    "PSNR": (("overall", "psnr"), True), "SSIM": (("overall", "ssim"), True), "LPIPS": (("overall", "lpips"), False),
    "PSNR front": (("front <=30", "psnr"), True), "PSNR side": (("side 30-120", "psnr"), True),
    "PSNR back": (("back >=120", "psnr"), True),
    "SSIM front": (("front <=30", "ssim"), True), "SSIM side": (("side 30-120", "ssim"), True),
    "SSIM back": (("back >=120", "ssim"), True),
    "LPIPS front": (("front <=30", "lpips"), False), "LPIPS side": (("side 30-120", "lpips"), False),
    "LPIPS back": (("back >=120", "lpips"), False),
    "PSNR masked": (("overall", "psnr_masked"), True), "LPIPS masked": (("overall", "lpips_masked"), False),
    "Chamfer mm": (("geometry", "chamfer_mm"), False), "F@2.5mm": (("geometry", "fscore_2.5mm"), True),
    "F@5mm": (("geometry", "fscore_5.0mm"), True), "Normal cons.": (("geometry", "normal_consistency"), True),
}


def collect(eval_root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    rows, raw = [], {}
    for agg in sorted(eval_root.glob("*/aggregate.json")):
        r = json.loads(agg.read_text())
        name = r["method"]["method"]
        raw[name] = r
        row: dict[str, Any] = {"Method": name}
        for col, ((group, key), _) in COLUMNS.items():
            row[col] = r["metrics"].get(group, {}).get(key, math.nan)
        row["Time ms"] = r["timing"]["median_reconstruct_ms"]
        ps = pd.read_csv(agg.parent / "per_sample.csv")
        row["Gaussians"] = int(ps["gaussians"].median())
        rows.append(row)
    if not rows:
        raise SystemExit(f"{eval_root}: no */aggregate.json; run `python -m benchmarks.run --method all` first")
    df = pd.DataFrame(rows).sort_values("PSNR back", ascending=False).reset_index(drop=True)
    return df, raw


def _fmt(v: Any, col: str) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if col in ("Gaussians",):
        return f"{int(v)}"
    if col.startswith(("SSIM", "LPIPS", "F@", "Normal")):
        return f"{v:.4f}"
    if col == "Time ms":
        return f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    return f"{v:.2f}"


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
        cells = [f"**{_fmt(r[c], c)}**" if c in b and r[c] == b[c] else _fmt(r[c], c) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latex(df: pd.DataFrame, cols: list[str]) -> str:
    b = best(df)
    esc = lambda s: str(s).replace("_", r"\_").replace("@", r"@").replace("%", r"\%")  # noqa: E731
    lines = [r"\begin{tabular}{l" + "r" * (len(cols) - 1) + "}", r"\toprule", " & ".join(esc(c) for c in cols) + r" \\",
             r"\midrule"]
    for _, r in df.iterrows():
        cells = [(r"\textbf{" + _fmt(r[c], c) + "}") if c in b and r[c] == b[c] else esc(_fmt(r[c], c)) for c in cols]
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
    ax.set_xlabel("median reconstruction time (ms, log)")
    ax.set_ylabel("PSNR (dB), all target views")
    ax.set_title("quality vs time")
    fig.tight_layout()
    _savefig(fig, out / "quality_vs_time.png")
    fig, ax = plt.subplots(figsize=(8.5, 4))
    buckets = ["PSNR front", "PSNR side", "PSNR back"]
    x = np.arange(len(buckets))
    w = 0.8 / len(df)
    for i, (_, r) in enumerate(df.iterrows()):
        ax.bar(x + i * w, [r[b] for b in buckets], w, label=r["Method"])
    ax.set_xticks(x + 0.4 - w / 2, ["front (<=30)", "side", "back (>=120)"])
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("PSNR by yaw")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    lo = np.nanmin(df[buckets].to_numpy())
    ax.set_ylim(max(0, lo - 2), None)
    fig.tight_layout()
    _savefig(fig, out / "psnr_by_yaw.png")
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


def publish(eval_root: Path, out: Path, title: str = "") -> pd.DataFrame:
    df, raw = collect(eval_root)
    main_cols = ["Method", "PSNR", "SSIM", "LPIPS", "PSNR front", "PSNR side", "PSNR back", "SSIM back", "LPIPS back",
                 "Chamfer mm", "F@2.5mm", "F@5mm", "Normal cons.", "Time ms", "Gaussians"]
    all_cols = ["Method", *COLUMNS, "Time ms", "Gaussians"]
    with atomic_path(out / "leaderboard.csv") as tmp:
        df[all_cols].to_csv(tmp, index=False)
    write_bytes(out / "leaderboard.tex", latex(df, main_cols).encode())
    any_r = next(iter(raw.values()))
    card = any_r["card"]
    md = [f"# Leaderboard{': ' + title if title else ''}", "",
          f"Split `{any_r['split']}` ({any_r['n_samples']} heads), hash `{any_r['hash']}`; target resolution "
          f"{card['resolution']} px; background white; masks: {card['mask_policy']}; LPIPS: "
          f"{card['lpips'] if isinstance(card['lpips'], str) else card['lpips']['backbone'] + ', inputs ' + card['lpips']['input_range']}; "
          f"SSIM: {card['image']['ssim']['window']}. Yaw buckets: front <= 30, side 30-120, back >= 120 degrees. "
          f"Timing: {any_r['timing']['timer']}, median over the split after one warm-up, batch 1, device "
          f"{any_r['timing'].get('gpu', any_r['timing'].get('cpu'))}. Best value per column in bold. Sorted by PSNR on back views.",
          "", markdown(df, main_cols), "", "## All columns", "", markdown(df, all_cols), "",
          "![quality vs time](quality_vs_time.png) ![PSNR by yaw](psnr_by_yaw.png)", "",
          "![qualitative: GT (input, front, side, back) and each method](qualitative.png)", ""]
    write_bytes(out / "leaderboard.md", "\n".join(md).encode())
    plots(df, out)
    qualitative(eval_root, list(df["Method"]), out)
    write_json(out / "summary.json", {r["Method"]: {"psnr": r["PSNR"], "psnr_back": r["PSNR back"], "ssim": r["SSIM"],
                                                    "lpips": r["LPIPS"], "chamfer_mm": r["Chamfer mm"], "time_ms": r["Time ms"]}
                                      for _, r in df.iterrows()})
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
    print(markdown(df, ["Method", "PSNR", "PSNR back", "SSIM", "LPIPS", "Chamfer mm", "Time ms"]))


if __name__ == "__main__":
    main()
