"""DVC stage render: every head asset -> data/<profile>/renders/<id>/ (input portrait(s), dense 360-degree
targets, masks, depth, normals, cameras.json, GT surface points, meta.json).

Heads fan out over Dask. Resumable (anyhead.stages): a head rendered under the same plan is skipped
(logged), so a killed run resumes where it stopped; each head is written to a temporary folder and renamed."""
from __future__ import annotations

import logging

from anyhead.io import write_json
from anyhead.parallel import map_tasks
from anyhead.render.folder import render_head, render_tasks
from anyhead.stages import plan
from pipelines.common import read_index, stage_args
from recon.config import ProfileConfig

log = logging.getLogger("render")


def render(cfg: ProfileConfig) -> list[dict]:
    """The stage on a parsed profile (``render.workers`` / ``render.scheduler`` choose where heads are rendered);
    returns the index it writes. Raises SystemExit naming every head that failed."""
    paths = cfg.paths
    heads = read_index(paths.assets / "index.json", "build_assets")
    tasks = render_tasks(cfg.render, paths.assets, heads, paths.renders)
    todo = plan(paths.renders, tasks, "render")
    results, failures = map_tasks(render_head, todo, workers=cfg.render.workers, scheduler=cfg.render.scheduler,
                                  desc="render")
    if failures:
        raise SystemExit(f"render: {len(failures)} heads failed: " + "; ".join(f"{t.id}: {e}" for t, e in failures))
    index = [{"id": t.id, "hash": t.hash} for t in tasks]
    write_json(paths.renders / "index.json", index)
    log.info("%d heads rendered, %d up to date", len(results), len(tasks) - len(results))
    return index


def main() -> None:
    _, cfg = stage_args(__doc__)
    render(cfg)


if __name__ == "__main__":
    main()
