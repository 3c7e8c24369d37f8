"""DVC stage build_assets: sample identity-diverse heads (ICT identities, appearance, hair,
accessories) and/or normalise user scans into data/<profile>/assets/<id>/{asset.npz, meta.json}.

Resumable: a head whose meta.json records the same plan hash is skipped (and logged); heads no
longer in the plan are removed. Work fans out over Dask (see anyhead.parallel)."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from anyhead.accessories import anchors, load_user_accessory
from anyhead.heads import HeadSpec, build_head
from anyhead.ict import ICTModel
from anyhead.io import write_json
from anyhead.parallel import map_tasks
from anyhead.scans import SCAN_SUFFIXES, load_scan
from pipelines.common import stage_args

log = logging.getLogger("build_assets")


@functools.lru_cache(maxsize=1)
def _model(path: str) -> ICTModel:
    return ICTModel.load(path)


def plan_hash(task: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(task, sort_keys=True).encode()).hexdigest()[:16]


def build_one(task: dict[str, Any]) -> dict[str, Any]:
    """Build and save one head; returns its index entry."""
    out = Path(task["out"])
    if task["kind"] == "ict":
        model = _model(task["model"])
        spec = HeadSpec.sample(model, task["seed"], task["cfg"])
        asset = build_head(model, spec, texture_size=task["cfg"].get("texture_size", 512))
        rng = np.random.default_rng(task["seed"] + 11)
        for ua in task["cfg"].get("user_accessories", []):
            if rng.random() < float(ua.get("prob", 1.0)):
                verts = model.vertices(spec.identity, spec.expression)
                asset.parts.append(load_user_accessory(ua["mesh"], ua["spec"], anchors(model, verts)))
                asset.meta["spec"]["accessories"].append(f"user:{Path(ua['mesh']).name}")
    else:
        asset = load_scan(task["path"], **task.get("scan_options", {}))
    asset.meta["plan_hash"] = task["hash"]
    asset.meta["asset_id"] = task["id"]
    asset.save(out)
    return summary(task["id"], asset.meta)


def summary(asset_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    spec = meta.get("spec", {})
    return {"id": asset_id, "identity_id": meta.get("identity_id", asset_id), "source": meta.get("source"),
            "skin_tone": spec.get("appearance", {}).get("skin_tone"), "hair": spec.get("hair", {}).get("style"),
            "hair_color": spec.get("hair", {}).get("color"), "beard": spec.get("appearance", {}).get("beard"),
            "accessories": spec.get("accessories", [])}


def main() -> None:
    _, profile, prof, params = stage_args(__doc__)
    cfg = prof["assets"]
    out = Path(f"data/{profile}/assets")
    model_path = str(Path(params["ict"].get("out", "data/ict")) / "ict_model.npz")
    head_cfg = {k: v for k, v in cfg.items() if k not in ("workers", "scheduler", "n_identities")}
    tasks = []
    for i in range(int(cfg["n_identities"])):
        seed = int(cfg["seed"]) * 1_000_003 + i
        tasks.append({"kind": "ict", "id": f"head_{i:05d}", "seed": seed, "model": model_path, "cfg": head_cfg})
    if cfg.get("scans_dir"):
        scans = sorted(p for p in Path(cfg["scans_dir"]).iterdir() if p.suffix.lower() in SCAN_SUFFIXES)
        for p in scans:
            tasks.append({"kind": "scan", "id": f"scan_{p.stem}", "path": str(p), "scan_options": cfg.get("scan_options", {})})
    for t in tasks:
        t["hash"] = plan_hash({k: v for k, v in t.items() if k != "model"})
        t["out"] = str(out / t["id"])
    out.mkdir(parents=True, exist_ok=True)
    wanted = {t["id"] for t in tasks}
    for stale in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in wanted):
        log.info("removing %s: no longer in the plan", stale)
        shutil.rmtree(stale)
    todo, index = [], []
    for t in tasks:
        meta_path = Path(t["out"]) / "meta.json"
        if meta_path.exists() and json.loads(meta_path.read_text()).get("plan_hash") == t["hash"]:
            log.info("skipping %s: already built with the same plan", t["id"])
            index.append(summary(t["id"], json.loads(meta_path.read_text())))
        else:
            todo.append(t)
    results, failures = map_tasks(build_one, todo, workers=int(cfg.get("workers", 1)), scheduler=cfg.get("scheduler"),
                                  desc="build_assets")
    index += results
    if failures:
        raise SystemExit(f"build_assets: {len(failures)} heads failed: " + "; ".join(f"{t['id']}: {e}" for t, e in failures))
    write_json(out / "index.json", sorted(index, key=lambda r: r["id"]))
    log.info("%d heads (%d built, %d up to date) in %s", len(index), len(results), len(index) - len(results), out)


if __name__ == "__main__":
    main()
