"""DVC stage shards: pack rendered heads into identity-disjoint webdataset shards, plus single-view
photo samples (split ``photos``) and normalised multi-view captures (split ``captures``); write the split
manifest (keys and hash per split) in data/<profile>/shards/."""
from __future__ import annotations

import logging
import shutil

from anyhead.cameras import CONVENTION
from anyhead.io import remove_orphan_temps, write_json
from anyhead.photos import write_photo_split
from anyhead.samples import folder_identity, folder_meta, read_folder
from anyhead.shards import assign_splits, split_hash, write_shards
from pipelines.common import read_index, stage_args

log = logging.getLogger("shards")


def main() -> None:
    _, cfg = stage_args(__doc__)
    paths, sc, pc = cfg.paths, cfg.shards, cfg.photos
    heads = read_index(paths.renders / "index.json", "render")
    metas = {h["id"]: folder_meta(paths.renders / h["id"]) for h in heads}
    ident = {k: m["identity_id"] for k, m in metas.items()}
    fixed = {ident[k]: s for k, m in metas.items() if (s := m.get("fixed_split"))}
    split_of = assign_splits(ident.values(), dict(sc.splits), sc.split_seed, fixed)
    manifest = {"convention": CONVENTION, "profile": cfg.name, "splits": {}}
    remove_orphan_temps(paths.shards, "shards")  # e.g. a splits.json temp file of a killed run
    active = [k for k, f in sc.splits.items() if f > 0]
    for stale in sorted(p for p in paths.shards.glob("*") if p.is_dir() and p.name not in (*active, "photos", "captures")):
        log.info("removing %s: split no longer in the plan", stale)
        shutil.rmtree(stale)
    for split in active:
        keys = sorted(k for k, i in ident.items() if split_of[i] == split)
        ids = sorted({ident[k] for k in keys})
        samples = [(k, lambda folder=paths.renders / k: read_folder(folder)) for k in keys]
        mans = write_shards(samples, paths.split(split), split, sc.samples_per_shard)
        manifest["splits"][split] = {"keys": keys, "identities": ids, "hash": split_hash(keys),
                                     "shards": [m["shard"] for m in mans], "single_view": False}
        log.info("%s: %d samples, %d identities, %d shards, hash %s", split, len(keys), len(ids), len(mans),
                 manifest["splits"][split]["hash"][:12])
    photos = write_photo_split(pc, paths.split("photos"), sc.samples_per_shard)
    if photos is not None:
        manifest["splits"]["photos"] = photos
    elif paths.split("photos").exists():
        log.info("removing %s: no photos configured", paths.split("photos"))
        shutil.rmtree(paths.split("photos"))
    caps = read_index(paths.captures / "index.json", "captures")["subjects"]
    if caps:  # their own split: their views need not match the renders' layout that the training cache expects
        keys = [c["id"] for c in caps]
        samples = [(k, lambda folder=paths.captures / k: read_folder(folder)) for k in keys]
        mans = write_shards(samples, paths.split("captures"), "captures", sc.samples_per_shard)
        ids = [folder_identity(paths.captures / k) for k in keys]
        manifest["splits"]["captures"] = {"keys": keys, "identities": ids, "hash": split_hash(keys),
                                          "shards": [m["shard"] for m in mans], "single_view": False,
                                          "sources": {c["id"]: c["source"] for c in caps}}
        log.info("captures: %d subjects", len(keys))
    elif paths.split("captures").exists():
        log.info("removing %s: no captures", paths.split("captures"))
        shutil.rmtree(paths.split("captures"))
    write_json(paths.splits_manifest, manifest)


if __name__ == "__main__":
    main()
