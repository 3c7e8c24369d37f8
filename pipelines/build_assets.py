"""DVC stage build_assets: sample identity-diverse heads (ICT identities, appearance, hair,
accessories) and/or normalise user scans into data/<profile>/assets/<id>/{asset.npz, meta.json}.

Resumable (anyhead.stages): a head built under the same plan is skipped (and logged), heads no longer
in the plan are removed. Work fans out over Dask (anyhead.parallel)."""
from __future__ import annotations

import json
import logging

from anyhead.build import asset_summary, asset_tasks, build_asset
from anyhead.io import write_json
from anyhead.parallel import map_tasks
from anyhead.stages import MARKER, plan
from pipelines.common import stage_args
from recon.config import ProfileConfig

log = logging.getLogger("build_assets")


def build_assets(cfg: ProfileConfig) -> list[dict]:
    """The stage on a parsed profile (``assets.workers`` / ``assets.scheduler`` choose where heads are built);
    returns the index it writes. Raises SystemExit naming every head that failed."""
    out = cfg.paths.assets
    tasks = asset_tasks(cfg.assets, out, cfg.paths.ict_model)
    todo = plan(out, tasks, "build_assets")
    results, failures = map_tasks(build_asset, todo, workers=cfg.assets.workers, scheduler=cfg.assets.scheduler,
                                  desc="build_assets")
    # a user scan that cannot be used (unreadable, no colour, not head-sized) is skipped, not the whole stage
    bad_scans = [(t, e) for t, e in failures if t.payload["kind"] == "scan" and e.startswith("InputError:")]
    for t, e in bad_scans:
        log.warning("build_assets: skipping scan %s: %s", t.payload["path"], e)
    failures = [f for f in failures if f not in bad_scans]
    if failures:
        raise SystemExit(f"build_assets: {len(failures)} heads failed: " + "; ".join(f"{t.id}: {e}" for t, e in failures))
    skipped = {t.id for t, _ in bad_scans}
    index = [asset_summary(t.id, json.loads((t.out / MARKER).read_text())) for t in tasks if t.id not in skipped]
    write_json(out / "index.json", index)
    log.info("%d heads (%d built, %d up to date, %d scans skipped) in %s", len(index), len(results),
             len(index) - len(results), len(skipped), out)
    return index


def main() -> None:
    _, cfg = stage_args(__doc__)
    build_assets(cfg)


if __name__ == "__main__":
    main()
