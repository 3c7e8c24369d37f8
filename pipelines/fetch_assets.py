"""DVC stage fetch_assets: get the ICT FaceKit archive (local path or upstream download), extract it
to a cache and write the compact model (data/ict/ict_model.npz) plus its provenance."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from anyhead import ict
from anyhead.io import write_json
from pipelines.common import stage_args

log = logging.getLogger("fetch_assets")


def main() -> None:
    _, cfg = stage_args(__doc__)
    src, paths = cfg.ict, cfg.paths
    local = src.local_archive or None
    if local and not Path(local).exists():
        log.warning("local archive %s not found: downloading %s instead", local, src.url)
        local = None
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "ict.tar.gz"
        prov = ict.fetch_archive(archive, local_archive=local, url=src.url, sha256=src.sha256 or None)
        log.info("archive %s sha256 %s (%s)", prov["source"], prov["sha256"], prov["known_as"])
        root = ict.extract_archive(archive, Path(os.path.expanduser(src.cache_dir)))
    model = ict.ICTModel.from_folder(root)
    model.provenance.update(prov)
    model.save(paths.ict_model)
    write_json(paths.ict_source, prov)
    log.info("wrote %s", paths.ict_model)


if __name__ == "__main__":
    main()
