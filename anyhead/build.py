"""The work behind the ``build_assets`` stage, as pure functions of a typed config and paths: the task
list (with plan hashes, see :mod:`anyhead.stages`) and the worker that turns one task into one finished
head folder. ``pipelines/build_assets.py`` only wires these to the config, the planner and Dask
(the ``render`` stage's twin is :mod:`anyhead.render.folder`)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .config import AssetsConfig, to_dict
from .heads import HeadSpec, build_head
from .ict import ICTModel
from .io import source_key
from .scans import list_scans, load_scan
from .stages import Task, commit_folder, plan_hash, temp_folder


@functools.lru_cache(maxsize=1)
def _ict(path: str) -> ICTModel:
    return ICTModel.load(path)


# -- build_assets -------------------------------------------------------------------------------

def asset_tasks(cfg: AssetsConfig, out: Path, ict_model: Path) -> list[Task]:
    """One task per sampled ICT identity and per user scan. The plan hash covers the settings that
    shape a head, not how many heads there are or how they are scheduled."""
    shape = {k: v for k, v in to_dict(cfg).items()
             if k not in ("n_identities", "train_only_identities", "train_only_seed", "workers", "scheduler", "scans_dir")}
    tasks = []
    # (id prefix, seed base, count, fixed split): the split-assigned heads, then the train-only ones
    groups = (("head_", cfg.seed, cfg.n_identities, None),
              (f"train_s{cfg.train_only_seed}_", cfg.train_only_seed, cfg.train_only_identities, "train"))
    for prefix, base, count, split in groups:
        for i in range(count):
            seed, tid = base * 1_000_003 + i, f"{prefix}{i:05d}"
            tasks.append(Task(tid, out / tid, plan_hash("ict", seed, shape, *([split] if split else [])),
                              {"kind": "ict", "seed": seed, "model": str(ict_model), "cfg": cfg,
                               **({"fixed_split": split} if split else {})}))
    if cfg.scans_dir:
        for p in list_scans(cfg.scans_dir):
            tid = source_key("scan_", p.relative_to(cfg.scans_dir).as_posix())  # dots, duplicates, long names
            tasks.append(Task(tid, out / tid, plan_hash("scan", str(p), to_dict(cfg.scan_options)),
                              {"kind": "scan", "path": str(p), "cfg": cfg}))
    return tasks


def build_asset(task: Task) -> dict[str, Any]:
    """Build (or read and normalise) one head into ``task.out``; returns its index entry."""
    cfg: AssetsConfig = task.payload["cfg"]
    if task.payload["kind"] == "ict":
        model = _ict(task.payload["model"])
        spec = HeadSpec.sample(model, task.payload["seed"], cfg)
        asset = build_head(model, spec, cfg.texture_size, cfg.user_accessories)
    else:
        asset = load_scan(task.payload["path"], cfg.scan_options)
    asset.meta["plan_hash"] = task.hash
    asset.meta["asset_id"] = task.id
    if task.payload.get("fixed_split"):
        asset.meta["fixed_split"] = task.payload["fixed_split"]
    tmp = temp_folder(task.out)
    asset.save(tmp)  # meta.json last
    commit_folder(tmp, task.out)
    return asset_summary(task.id, asset.meta)


def asset_summary(asset_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The index.json entry of one head asset."""
    spec = meta.get("spec", {})
    return {"id": asset_id, "identity_id": meta.get("identity_id", asset_id), "source": meta.get("source"),
            "skin_tone": spec.get("appearance", {}).get("skin_tone"), "hair": spec.get("hair", {}).get("style"),
            "hair_color": spec.get("hair", {}).get("color"), "beard": spec.get("appearance", {}).get("beard"),
            "accessories": spec.get("accessories", [])}
