"""webdataset shards: identity-disjoint splits, atomic resumable writing, manifests, verification.

Layout of a shard folder::

    <out>/splits.json                  split -> sorted sample keys, plus the hash of each split
    <out>/<split>/<split>-000000.tar   webdataset tar (members ``<key>.<file>``)
    <out>/<split>/<split>-000000.json  manifest: count, bytes, sha256, keys

A shard is written to a temporary name and renamed; its manifest is written after it. On a rerun a
shard whose manifest matches the plan (same keys) and whose tar matches the manifest's sha256 is
kept as is, so a killed build resumes without redoing or losing finished shards.

    python -m anyhead.shards verify data/default/shards
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import sys
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm import tqdm

from .io import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)


def assign_splits(identities: Iterable[str], fractions: dict[str, float], seed: int = 0) -> dict[str, str]:
    """Identity -> split. Identities are ordered by a seeded hash and cut by the fractions, so no
    identity is in two splits, the assignment is stable, and every split with a non-zero fraction
    gets at least one identity when there are enough."""
    ids = sorted(set(identities), key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    names = [k for k, f in fractions.items() if f > 0]
    total = sum(fractions[k] for k in names)
    counts = {k: int(round(fractions[k] / total * len(ids))) for k in names}
    if len(ids) >= len(names):
        for k in names:
            counts[k] = max(counts[k], 1)
    while sum(counts.values()) > len(ids):  # rounding: take from the largest split
        counts[max(counts, key=counts.get)] -= 1
    while sum(counts.values()) < len(ids):
        counts[names[0]] += 1
    out, i = {}, 0
    for k in names:
        for ident in ids[i:i + counts[k]]:
            out[ident] = k
        i += counts[k]
    return out


def split_hash(keys: list[str]) -> str:
    """The hash that pins a split: sha256 of its sorted keys, newline-joined."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # reproducible tars: same content, same bytes
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shards(samples: list[tuple[str, Callable[[], dict[str, bytes]]]], folder: str | os.PathLike[str], prefix: str,
                 per_shard: int, on_shard: Callable[[int], None] | None = None) -> list[dict]:
    """Write ``samples`` ((key, loader) pairs, loader returning the files) into numbered shards.

    Returns the manifests. Up-to-date shards are skipped (logged); ``on_shard(i)`` is called after
    shard i is complete (tests use it to simulate a crash)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(".*.tmp-*"):
        log.info("removing leftover temporary file %s", tmp)
        tmp.unlink()
    manifests = []
    groups = [samples[i:i + per_shard] for i in range(0, len(samples), per_shard)]
    wanted = {f"{prefix}-{i:06d}" for i in range(len(groups))}
    for stale in folder.glob(f"{prefix}-*.*"):
        if stale.name.split(".")[0] not in wanted:
            log.info("removing %s: not in the plan", stale)
            stale.unlink()
    for i, group in enumerate(tqdm(groups, desc=f"shards {prefix}")):
        name = f"{prefix}-{i:06d}"
        tar_path, man_path = folder / f"{name}.tar", folder / f"{name}.json"
        keys = [k for k, _ in group]
        if tar_path.exists() and man_path.exists():
            man = json.loads(man_path.read_text())
            if man.get("keys") == keys and man.get("sha256") == sha256_file(tar_path):
                log.info("skipping %s: complete and unchanged", tar_path.name)
                manifests.append(man)
                continue
        with atomic_path(tar_path) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for key, load in group:
                    files = load()
                    for fname in sorted(files):
                        _add(tar, f"{key}.{fname}", files[fname])
        man = {"shard": tar_path.name, "count": len(keys), "bytes": tar_path.stat().st_size,
               "sha256": sha256_file(tar_path), "keys": keys}
        write_json(man_path, man)
        manifests.append(man)
        if on_shard is not None:
            on_shard(i)
    return manifests


def read_tar_samples(path: str | os.PathLike[str]) -> Iterable[dict[str, bytes]]:
    """Group a webdataset tar's members by key (keys are everything before the first dot)."""
    current: dict[str, bytes] = {}
    with tarfile.open(path, "r") as tar:
        for m in tar:
            if not m.isfile():
                continue
            key, _, fname = Path(m.name).name.partition(".")
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            current[fname] = tar.extractfile(m).read()
    if current:
        yield current


def verify(folder: str | os.PathLike[str]) -> list[str]:
    """Check every shard against its manifest and the split manifest; returns a list of problems."""
    folder = Path(folder)
    problems = []
    splits_path = folder / "splits.json"
    if not splits_path.exists():
        return [f"{splits_path}: missing split manifest"]
    splits = json.loads(splits_path.read_text())
    for split, info in splits["splits"].items():
        if split_hash(info["keys"]) != info["hash"]:
            problems.append(f"{splits_path}: hash of split {split!r} does not match its keys")
        seen = []
        for man_path in sorted((folder / split).glob(f"{split}-*.json")):
            man = json.loads(man_path.read_text())
            tar_path = man_path.with_suffix(".tar")
            if not tar_path.exists():
                problems.append(f"{tar_path}: missing")
                continue
            if sha256_file(tar_path) != man["sha256"]:
                problems.append(f"{tar_path}: sha256 differs from {man_path.name}")
                continue
            try:
                keys = [s["__key__"] for s in read_tar_samples(tar_path)]
            except (tarfile.TarError, OSError) as e:
                problems.append(f"{tar_path}: unreadable ({e})")
                continue
            if keys != man["keys"]:
                problems.append(f"{tar_path}: keys differ from {man_path.name}")
            seen += keys
        if sorted(seen) != sorted(info["keys"]):
            problems.append(f"{folder / split}: shards hold {len(seen)} samples, split manifest lists {len(info['keys'])}")
    ids = {}
    for split, info in splits["splits"].items():
        for ident in info.get("identities", []):
            if ident in ids and ids[ident] != split:
                problems.append(f"identity {ident} is in splits {ids[ident]} and {split}")
            ids[ident] = split
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="AnyHead shard tools")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check shards against their manifests")
    v.add_argument("folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    problems = verify(args.folder)
    for p in problems:
        print(f"PROBLEM {p}")
    print(f"{'OK' if not problems else 'FAILED'}: {args.folder} ({len(problems)} problems)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
