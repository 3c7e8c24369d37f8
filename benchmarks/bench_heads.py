"""Per-head cost of the dataset stages: build_assets and render time of a few heads of a profile, through the
stages' own worker functions (``anyhead.build.build_asset``, ``anyhead.render.folder.render_head``), in one
process with its thread pools pinned to 1, and what N heads would then cost on C cores.

    python -m benchmarks.bench_heads --profile default gpu --heads 2 --cores 16

Each profile builds its first ``--heads`` heads (the ids and seeds ``build_assets`` gives them) with the profile's
``assets`` section and renders them with its ``render`` section, timing CPU time (the process's, all threads) and
wall time. Cost: ``heads x seconds per head / cores`` (one worker process per core, no other overhead: a lower
bound), core-hours ``heads x seconds per head / 3600``.
"""
from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ict_model_path(cfg) -> Path:
    """The profile's fetched ICT model, else the test suite's copy (.cache/ict_model_test.npz)."""
    for p in (cfg.paths.ict_model, ROOT / ".cache" / "ict_model_test.npz"):
        if Path(p).exists():
            return Path(p)
    raise SystemExit(f"{cfg.paths.ict_model}: missing; run the fetch_assets stage (or the tests) first")


def _mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def time_heads(profile: str, n_heads: int, params: Path, out: Path) -> list[dict]:
    """Build and render the profile's first ``n_heads`` heads under ``out``; one timing row per head."""
    from anyhead.build import asset_tasks, build_asset
    from anyhead.render.folder import render_head, render_tasks
    from recon.config import load_config

    cfg = load_config(params, profile, root=ROOT)
    tasks = asset_tasks(cfg.assets, out / "assets", ict_model_path(cfg))[:n_heads]
    rows = []
    for t in tasks:
        c0, w0 = time.process_time(), time.perf_counter()
        entry = build_asset(t)
        c1, w1 = time.process_time(), time.perf_counter()
        (rt,) = render_tasks(cfg.render, out / "assets", [entry], out / "renders")
        render_head(rt)
        c2, w2 = time.process_time(), time.perf_counter()
        rows.append({"profile": profile, "id": t.id, "hair": entry["hair"], "build_cpu_s": c1 - c0, "build_wall_s": w1 - w0,
                     "render_cpu_s": c2 - c1, "render_wall_s": w2 - w1,
                     "views": cfg.render.n_inputs + cfg.render.n_targets, "res": cfg.render.target_res,
                     "gt_points": cfg.render.gt_points, "asset_mb": _mb(t.out), "render_mb": _mb(rt.out)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def cost_table(rows: list[dict], heads: list[int], cores: int) -> list[str]:
    """Markdown: seconds per head (mean CPU time) and what ``heads`` cost on ``cores`` cores."""
    lines = [f"| profile | build s/head | render s/head | total s/head | {' | '.join(f'{n:,} heads on {cores} cores' for n in heads)} "
             f"| {' | '.join(f'{n:,} heads core-h' for n in heads)} |",
             "|---" * (4 + 2 * len(heads)) + "|"]
    for prof in dict.fromkeys(r["profile"] for r in rows):
        rs = [r for r in rows if r["profile"] == prof]
        b = sum(r["build_cpu_s"] for r in rs) / len(rs)
        r_ = sum(r["render_cpu_s"] for r in rs) / len(rs)
        s = b + r_
        wall = [f"{n * s / cores / 3600:.1f} h" for n in heads]
        core_h = [f"{n * s / 3600:,.0f}" for n in heads]
        lines.append(f"| {prof} | {b:.1f} | {r_:.1f} | {s:.1f} | {' | '.join(wall)} | {' | '.join(core_h)} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", nargs="+", default=["default", "gpu"])
    ap.add_argument("--heads", type=int, default=2, help="heads timed per profile")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--cores", type=int, default=16, help="cores of the cost table")
    ap.add_argument("--scale", type=int, nargs="+", default=[10_000, 1_000_000], help="head counts of the cost table")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"# {cpu_name()}, {os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f}, thread pools pinned to 1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for prof in args.profile:
            rows += time_heads(prof, args.heads, args.params, Path(tmp) / prof)
    print(f"# load average after: {os.getloadavg()[0]:.1f}")
    print("\n".join(cost_table(rows, args.scale, args.cores)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
