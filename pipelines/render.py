"""DVC stage render: every head asset -> data/<profile>/renders/<id>/ (input portrait(s), dense 360-degree
targets, masks, depth, normals, cameras.json, GT surface points, meta.json).

Heads fan out over Dask. A head whose meta.json carries the same plan hash is skipped (logged), so a
killed run resumes where it stopped; each head is written to a temporary folder and renamed."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from anyhead.assets import HeadAsset
from anyhead.cameras import CONVENTION
from anyhead.io import write_json
from anyhead.parallel import map_tasks
from anyhead.render.views import render_sample
from anyhead.samples import encode_json, encode_view, npy_bytes
from pipelines.common import read_index, stage_args

log = logging.getLogger("render")


def render_one(task: dict[str, Any]) -> dict[str, Any]:
    asset = HeadAsset.load(task["asset"])
    sample = render_sample(asset, task["cfg"], task["seed"])
    files: dict[str, bytes] = {}
    cams = []
    n_in = n_t = 0
    for v in sample["views"]:
        if v.role == "input":
            name, n_in = f"input_{n_in:03d}", n_in + 1
        else:
            name, n_t = f"view_{n_t:03d}", n_t + 1
        files.update(encode_view(name, v.output.rgb, v.output.alpha, v.output.depth, v.output.normal))
        cams.append({"name": name, "role": v.role, "yaw": v.yaw, "pitch": v.pitch, **v.camera.to_dict(),
                     **{k: val for k, val in v.extra.items() if k not in ("yaw", "pitch")}})
    files["cameras.json"] = encode_json({"convention": CONVENTION, "views": cams})
    files["points.npy"] = npy_bytes(sample["points"])
    meta = {"asset_id": task["id"], "identity_id": asset.meta.get("identity_id", task["id"]),
            "source": asset.meta.get("source"), "spec": asset.meta.get("spec", {}), "lighting": sample["lighting"],
            "provenance": asset.meta.get("provenance", {}), "single_view": False, "convention": CONVENTION,
            "plan_hash": task["hash"], "n_inputs": n_in, "n_targets": n_t}
    out = Path(task["out"])
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    (tmp / "meta.json").write_bytes(encode_json(meta))  # written last: marks the folder complete
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return {"id": task["id"], "identity_id": meta["identity_id"]}


def main() -> None:
    _, profile, prof, _ = stage_args(__doc__)
    cfg = prof["render"]
    assets = Path(f"data/{profile}/assets")
    out = Path(f"data/{profile}/renders")
    heads = read_index(assets / "index.json", "build_assets")
    view_cfg = {k: v for k, v in cfg.items() if k not in ("workers", "scheduler")}
    tasks = []
    for i, h in enumerate(heads):
        t = {"id": h["id"], "asset": str(assets / h["id"]), "out": str(out / h["id"]), "cfg": view_cfg, "seed": 7919 * i + 17}
        asset_meta = (assets / h["id"] / "meta.json").read_bytes()
        t["hash"] = hashlib.sha256(json.dumps([view_cfg, t["seed"]], sort_keys=True).encode() + asset_meta).hexdigest()[:16]
        tasks.append(t)
    out.mkdir(parents=True, exist_ok=True)
    wanted = {t["id"] for t in tasks}
    for p in sorted(out.iterdir()):
        if p.is_dir() and (p.name not in wanted or p.name.startswith(".")):
            log.info("removing %s: %s", p, "leftover temporary folder" if p.name.startswith(".") else "not in the plan")
            shutil.rmtree(p)
    todo = []
    for t in tasks:
        m = Path(t["out"]) / "meta.json"
        if m.exists() and json.loads(m.read_text()).get("plan_hash") == t["hash"]:
            log.info("skipping %s: already rendered with the same plan", t["id"])
        else:
            todo.append(t)
    results, failures = map_tasks(render_one, todo, workers=int(cfg.get("workers", 1)), scheduler=cfg.get("scheduler"),
                                  desc="render")
    if failures:
        raise SystemExit(f"render: {len(failures)} heads failed: " + "; ".join(f"{t['id']}: {e}" for t, e in failures))
    write_json(out / "index.json", [{"id": t["id"], "hash": t["hash"]} for t in tasks])
    log.info("%d heads rendered, %d up to date", len(results), len(tasks) - len(results))


if __name__ == "__main__":
    main()
