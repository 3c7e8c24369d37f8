"""The work behind the ``render`` stage, as pure functions of a typed config and paths: one task per
head asset (with a plan hash, see :mod:`anyhead.stages`) and the worker that renders one head into a
finished sample folder. ``pipelines/render.py`` only wires these to the config, the planner and Dask."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..assets import HeadAsset
from ..cameras import CONVENTION
from ..config import RenderConfig, to_dict
from ..samples import encode_json, encode_view, npy_bytes
from ..stages import Task, plan_hash, write_folder
from .views import GT_POINTS_VERSION, render_sample


def render_tasks(cfg: RenderConfig, assets: Path, heads: list[dict[str, Any]], out: Path) -> list[Task]:
    """One task per head asset. The plan hash covers the view settings, the head's seed and the
    asset's own meta.json (which carries its plan hash), so a rebuilt head is re-rendered, and the GT points' rule
    (``GT_POINTS_VERSION``), so a head rendered under an older rule is too."""
    view_cfg = {k: v for k, v in to_dict(cfg).items() if k not in ("workers", "scheduler")}
    tasks = []
    for i, h in enumerate(heads):
        seed = 7919 * i + 17
        asset_meta = (assets / h["id"] / "meta.json").read_bytes()
        tasks.append(Task(h["id"], out / h["id"], plan_hash(view_cfg, seed, asset_meta, {"gt_points_version": GT_POINTS_VERSION}),
                          {"asset": str(assets / h["id"]), "cfg": cfg, "seed": seed}))
    return tasks


def render_head(task: Task) -> dict[str, Any]:
    """Render one head into ``task.out``: input portrait(s), dense targets (colour, mask, depth,
    normals), ``cameras.json``, GT ``points.npy`` and ``meta.json`` (written last)."""
    asset = HeadAsset.load(task.payload["asset"])
    sample = render_sample(asset, task.payload["cfg"], task.payload["seed"])
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
    meta = {"asset_id": task.id, "identity_id": asset.meta.get("identity_id", task.id),
            "source": asset.meta.get("source"), "spec": asset.meta.get("spec", {}), "lighting": sample["lighting"],
            "provenance": asset.meta.get("provenance", {}), "single_view": False, "convention": CONVENTION,
            "plan_hash": task.hash, "n_inputs": n_in, "n_targets": n_t,
            **({"fixed_split": asset.meta["fixed_split"]} if asset.meta.get("fixed_split") else {})}
    write_folder(task.out, files, meta)
    return {"id": task.id, "identity_id": meta["identity_id"]}
