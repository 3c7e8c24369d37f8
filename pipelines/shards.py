"""DVC stage shards: pack rendered heads into identity-disjoint webdataset shards plus single-view
photo samples; write the split manifest (keys and hash per split) in data/<profile>/shards/."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from anyhead.cameras import CONVENTION
from anyhead.io import write_json
from anyhead.photos import photo_sources, portrait_sample
from anyhead.shards import assign_splits, split_hash, write_shards
from pipelines.common import read_index, stage_args

log = logging.getLogger("shards")


def _folder_loader(folder: Path):
    return lambda: {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def main() -> None:
    _, profile, prof, _ = stage_args(__doc__)
    cfg = prof["shards"]
    renders = Path(f"data/{profile}/renders")
    out = Path(f"data/{profile}/shards")
    heads = read_index(renders / "index.json", "render")
    ident = {h["id"]: json.loads((renders / h["id"] / "meta.json").read_text())["identity_id"] for h in heads}
    split_of = assign_splits(ident.values(), cfg["splits"], int(cfg.get("split_seed", 0)))
    manifest = {"convention": CONVENTION, "profile": profile, "splits": {}}
    for split in [k for k, f in cfg["splits"].items() if f > 0]:
        keys = sorted(k for k, i in ident.items() if split_of[i] == split)
        ids = sorted({ident[k] for k in keys})
        samples = [(k, _folder_loader(renders / k)) for k in keys]
        mans = write_shards(samples, out / split, split, int(cfg["samples_per_shard"]))
        manifest["splits"][split] = {"keys": keys, "identities": ids, "hash": split_hash(keys),
                                     "shards": [m["shard"] for m in mans], "single_view": False}
        log.info("%s: %d samples, %d identities, %d shards, hash %s", split, len(keys), len(ids), len(mans),
                 manifest["splits"][split]["hash"][:12])
    photos_cfg = prof.get("photos", {"builtin_astronaut": True})
    samples = [(k, (lambda load=load, k=k: portrait_sample(load(), k, int(photos_cfg.get("res", 256)),
                                                              background=photos_cfg.get("background", "estimate"))))
               for k, load in photo_sources(photos_cfg)]
    if samples:
        mans = write_shards(samples, out / "photos", "photos", int(cfg["samples_per_shard"]))
        keys = [k for k, _ in samples]
        manifest["splits"]["photos"] = {"keys": keys, "identities": [f"photo-{k}" for k in keys], "hash": split_hash(keys),
                                        "shards": [m["shard"] for m in mans], "single_view": True}
    write_json(out / "splits.json", manifest)


if __name__ == "__main__":
    main()
