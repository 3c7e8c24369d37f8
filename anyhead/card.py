"""Dataset card: per-split counts, attribute distributions, and a QA contact sheet, read back from
the shards themselves (so the card also proves the shards decode)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .cameras import CONVENTION
from .io import save_png, write_bytes, write_json
from .loader import ShardDataset

TONE_BUCKETS = [f"MST{i}" for i in range(1, 11)]
# input-yaw histogram bins of the dataset card; the same as the benchmark's absolute-yaw view
# (benchmarks.protocol, which owns the benchmark definitions; anyhead never imports benchmarks)
YAW_BUCKETS = ["front <=30", "side 30-120", "back >=120"]


def yaw_bucket(yaw: float) -> str:
    """Bin of a wrapped |yaw| (degrees): front <= 30, back >= 120, side in between."""
    a = abs(((yaw + 180) % 360) - 180)
    return YAW_BUCKETS[0] if a <= 30 else YAW_BUCKETS[2] if a >= 120 else YAW_BUCKETS[1]


def _layout(s: Any) -> tuple:
    """(input, target) image shapes: the QA sheet tiles examples of one layout (captures may differ)."""
    return tuple(next((v.rgb.shape for v in s.views if v.role == r), None) for r in ("input", "target"))


def collect(shard_root: str | Path) -> dict[str, Any]:
    root = Path(shard_root)
    splits = json.loads((root / "splits.json").read_text())
    stats: dict[str, Any] = {"convention": CONVENTION, "splits": {}}
    examples = []
    for split, info in splits["splits"].items():
        ds = ShardDataset(root / split, transform=None)
        c: dict[str, Any] = {"samples": 0, "identities": len(info["identities"]), "hash": info["hash"],
                             "single_view": info.get("single_view", False), "target_views": 0, "gt_points": 0,
                             "skin_tone": Counter(), "hair": Counter(), "beard": Counter(), "accessories": Counter(),
                             "input_yaw": Counter(), "skipped": 0}
        for s in ds:
            c["samples"] += 1
            spec = s.meta.get("spec", {})
            app = spec.get("appearance", {})
            if app:
                c["skin_tone"][TONE_BUCKETS[int(np.clip(round(app["skin_tone"]), 1, 10)) - 1]] += 1
                c["beard"][app["beard"]] += 1
            if spec.get("hair"):
                c["hair"][spec["hair"]["style"]] += 1
            for a in spec.get("accessories", []) or ["none"]:
                c["accessories"][a] += 1
            for v in s.views:
                if v.role == "input":
                    c["input_yaw"][yaw_bucket(v.yaw or 0.0)] += 1
                else:
                    c["target_views"] += 1
            c["gt_points"] += 0 if s.points is None else len(s.points)
            same_size = not examples or _layout(s) == _layout(examples[0])
            if len(examples) < 16 and not info.get("single_view") and same_size:
                examples.append(s)
        c["skipped"] = len(ds.skipped)
        stats["splits"][split] = {k: dict(v) if isinstance(v, Counter) else v for k, v in c.items()}
    return {"stats": stats, "examples": examples}


def qa_sheet(examples: list[dict[str, Any]], n: int) -> np.ndarray:
    """Rows: input, four targets (front/side/back/top-ish), a target's mask with GT points projected."""
    rows = []
    for s in examples[:n]:
        views = s.views
        inp = [v for v in views if v.role == "input"][0]
        tgts = [v for v in views if v.role == "target"]
        pick = [tgts[int(i)] for i in np.linspace(0, len(tgts) - 1, 4).round()]
        res = inp.rgb.shape[0]
        tiles = [inp.rgb[..., :3]] + [t.rgb[..., :3] for t in pick]
        chk = pick[1]
        overlay = (np.repeat(chk.mask[..., None], 3, 2) * 160).astype(np.uint8)
        if s.points is not None:
            uv, _ = chk.camera.project(s.points[:, :3].astype(np.float64))
            ij = np.floor(uv).astype(int)
            ok = (ij[:, 0] >= 0) & (ij[:, 0] < res) & (ij[:, 1] >= 0) & (ij[:, 1] < res)
            overlay[ij[ok, 1], ij[ok, 0]] = (255, 40, 40)
        tiles.append(overlay)
        tiles = [t if t.shape[0] == res else np.asarray(Image.fromarray(t).resize((res, res))) for t in tiles]
        rows.append(np.concatenate(tiles, 1))
    return np.concatenate(rows, 0)


def write_card(shard_root: str | Path, out: str | Path, n_sheet: int = 16) -> dict[str, Any]:
    out = Path(out)
    data = collect(shard_root)
    stats = data["stats"]
    write_json(out / "card.json", stats)
    # numbers only, for `dvc metrics show`
    write_json(out / "counts.json", {k: {f: c[f] for f in ("samples", "identities", "target_views", "gt_points", "skipped")}
                                     for k, c in stats["splits"].items()})
    if data["examples"]:
        save_png(out / "qa_contact_sheet.png", qa_sheet(data["examples"], n_sheet))
    _plot(stats, out / "distributions.png")
    lines = ["# AnyHead dataset card", "", f"Convention: `{json.dumps(CONVENTION)}`", "",
             "| split | samples | identities | target views | GT points | skipped | hash |", "|---|---|---|---|---|---|---|"]
    for k, c in stats["splits"].items():
        lines.append(f"| {k}{' (single-view)' if c['single_view'] else ''} | {c['samples']} | {c['identities']} | "
                     f"{c['target_views']} | {c['gt_points']} | {c['skipped']} | `{c['hash'][:16]}` |")
    for attr in ("skin_tone", "hair", "beard", "accessories", "input_yaw"):
        lines += ["", f"## {attr}", "", "| split | " + attr + " |", "|---|---|"]
        for k, c in stats["splits"].items():
            lines.append(f"| {k} | " + ", ".join(f"{a}: {n}" for a, n in sorted(c[attr].items())) + " |")
    lines += ["", "![QA contact sheet: input, 4 targets, mask with GT points](qa_contact_sheet.png)",
              "", "![distributions](distributions.png)", ""]
    write_bytes(out / "card.md", "\n".join(lines).encode())
    return stats


def _plot(stats: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attrs = ["skin_tone", "hair", "accessories", "input_yaw"]
    fig, axes = plt.subplots(1, len(attrs), figsize=(4 * len(attrs), 3))
    for ax, attr in zip(axes, attrs):
        cats = sorted({a for c in stats["splits"].values() for a in c[attr]},
                      key=lambda s: (TONE_BUCKETS.index(s) if s in TONE_BUCKETS else 99, s))
        bottom = np.zeros(len(cats))
        for k, c in stats["splits"].items():
            vals = np.array([c[attr].get(a, 0) for a in cats])
            ax.bar(cats, vals, bottom=bottom, label=k)
            bottom += vals
        ax.set_title(attr)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
