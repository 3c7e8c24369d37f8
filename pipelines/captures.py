"""DVC stage captures: calibrated multi-view captures (``captures.dirs``: nerfstudio transforms.json or COLMAP
text models, one subject per folder) -> data/<profile>/captures/<key>/, samples in the rendered heads' format,
normalised into the head frame (anyhead.captures).

Resumable (anyhead.stages): a subject built under the same plan (settings and its files) is skipped. A subject
that cannot be used (unreadable files, no face to place the head, distorted lenses) is skipped with a log line
naming its folder and the reason, and listed under ``skipped`` in index.json; the rest go on."""
from __future__ import annotations

import logging

from anyhead.captures import build_capture, capture_tasks
from anyhead.io import InputError, write_json
from anyhead.stages import plan, recorded_hash
from pipelines.common import stage_args

log = logging.getLogger("captures")


def main() -> None:
    _, cfg = stage_args(__doc__)
    paths = cfg.paths
    tasks = capture_tasks(cfg.captures, paths.captures)
    skipped = []
    for t in plan(paths.captures, tasks, "captures"):
        try:
            build_capture(t)
        except InputError as e:
            log.warning("captures: skipping %s: %s", t.payload["folder"], e)
            skipped.append({"key": t.id, "source": t.payload["folder"], "reason": str(e)})
    built = [t for t in tasks if recorded_hash(t.out) == t.hash]
    write_json(paths.captures / "index.json", {"subjects": [{"id": t.id, "hash": t.hash, "source": t.payload["folder"]}
                                                            for t in built], "skipped": skipped})
    log.info("%d capture subjects ready, %d skipped", len(built), len(skipped))


if __name__ == "__main__":
    main()
