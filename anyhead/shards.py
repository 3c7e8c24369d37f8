"""webdataset shards: identity-disjoint splits, atomic resumable writing, manifests, verification.

Layout of a shard folder::

    <out>/splits.json                  split -> sorted sample keys, plus the hash of each split
    <out>/<split>/<split>-000000.tar   webdataset tar (members ``<key>.<file>``)
    <out>/<split>/<split>-000000.json  manifest: count, bytes, sha256, keys

A shard is written to a temporary name and renamed; its manifest is written after it. On a rerun a
shard whose manifest matches the plan (same keys) and whose tar matches the manifest's sha256 is
kept as is, so a killed build resumes without redoing or losing finished shards.

Integrity on read: :func:`verify_shard` checks a shard's sha256 against its manifest before first use
and caches a verification stamp (keyed by path, size, mtime, ctime, inode and the manifest's sha256)
in ``$ANYHEAD_SHARD_STAMPS`` (default ``~/.cache/anyhead/shard-stamps``), outside the DVC-tracked
shard folder, so an unchanged shard is hashed once. Manifests also list each member's sha256, so a
refused shard names the members that changed. Every read or decode error is a :class:`ShardError`
naming the shard and, where known, the member; :func:`check_split_identities` checks a split's
samples against the split manifest with their own ``meta.json``.

    python -m anyhead.shards verify data/default/shards
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import re
import sys
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm import tqdm

from .io import atomic_path, remove_orphan_temps, sha256_file, write_json

log = logging.getLogger(__name__)

STAMP_ENV = "ANYHEAD_SHARD_STAMPS"
KEY_MAX = 64  # member names are ``<key>.<file>``; USTAR allows 100 characters for a name without a folder
_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def check_key(key: str) -> str:
    """``key`` if it can be a webdataset sample key: only ``[A-Za-z0-9_-]`` (readers split a member name at its first
    dot, and a slash makes a folder), 1 to :data:`KEY_MAX` characters; else a ValueError naming it."""
    if not _KEY_RE.fullmatch(key or "") or len(key) > KEY_MAX:
        raise ValueError(f"sample key {key!r}: keys must be 1-{KEY_MAX} characters of [A-Za-z0-9_-] "
                         "(no dots: webdataset keys end at the first dot of a member name)")
    return key


class ShardError(OSError):
    """A shard that cannot be used. ``shard`` is its path, ``member`` the tar member (``<key>.<file>``)
    where known, ``problem`` what is wrong."""

    def __init__(self, shard: str | os.PathLike[str], problem: str, member: str | None = None) -> None:
        self.shard, self.problem, self.member = str(shard), problem, member
        super().__init__(f"{self.shard}" + (f" (member {member})" if member else "") + f": {problem}")

    def __reduce__(self):  # picklable across DataLoader workers (OSError's default reduce loses the fields)
        return (type(self), (self.shard, self.problem, self.member))


class ShardIntegrityError(ShardError):
    """A shard (or split) that does not match its manifest: modified, truncated, or mislabelled."""


def assign_splits(identities: Iterable[str], fractions: dict[str, float], seed: int = 0,
                  fixed: dict[str, str] | None = None) -> dict[str, str]:
    """Identity -> split. Identities are ordered by a seeded hash and cut by the fractions, so no
    identity is in two splits, the assignment is stable, and every split with a non-zero fraction
    gets at least one identity when there are enough. ``fixed`` identities (e.g. a release run's
    train-only heads) keep their given split and take no part in the cut, so adding them moves no
    other identity."""
    fixed = dict(fixed or {})
    unknown = sorted(set(fixed.values()) - set(fractions))
    if unknown:
        raise ValueError(f"fixed split {unknown[0]!r} is not one of {sorted(fractions)}")
    ids = sorted(set(identities) - set(fixed), key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
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
    out, i = dict(fixed), 0
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
                 per_shard: int, on_shard: Callable[[int], None] | None = None,
                 skip_errors: tuple[type[BaseException], ...] = ()) -> list[dict]:
    """Write ``samples`` ((key, loader) pairs, loader returning the files) into numbered shards.

    Returns the manifests. Up-to-date shards are skipped (logged); ``on_shard(i)`` is called after
    shard i is complete (tests use it to simulate a crash). A loader raising one of ``skip_errors``
    skips that sample with a log line naming it and the reason; the shard's manifest lists the keys
    written (``keys``), the keys planned (``planned``, what a rerun compares) and ``skipped``
    (key and reason), so a rerun does not retry a sample that failed under the same plan."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key, _ in samples:
        check_key(key)
    if len({k for k, _ in samples}) != len(samples):
        dup = sorted({k for k, _ in samples if sum(1 for j, _ in samples if j == k) > 1})
        raise ValueError(f"{folder}: duplicate sample keys {dup[:5]}")
    remove_orphan_temps(folder, f"shards {prefix}")
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
            if man.get("planned", man.get("keys")) == keys and man.get("sha256") == sha256_file(tar_path):
                log.info("skipping %s: complete and unchanged", tar_path.name)
                manifests.append(man)
                continue
        members: dict[str, str] = {}
        written, skipped = [], []
        with atomic_path(tar_path) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for key, load in group:
                    try:
                        files = load()
                    except skip_errors as e:
                        log.warning("skipping sample %s: %s", key, e)
                        skipped.append({"key": key, "reason": str(e)})
                        continue
                    for fname in sorted(files):
                        _add(tar, f"{key}.{fname}", files[fname])
                        members[f"{key}.{fname}"] = hashlib.sha256(files[fname]).hexdigest()
                    written.append(key)
        man = {"shard": tar_path.name, "count": len(written), "bytes": tar_path.stat().st_size,
               "sha256": sha256_file(tar_path), "keys": written, "planned": keys, "skipped": skipped, "members": members}
        write_json(man_path, man)
        manifests.append(man)
        if on_shard is not None:
            on_shard(i)
    return manifests


def read_tar_samples(path: str | os.PathLike[str], verify: bool = False,
                     stamp_dir: str | os.PathLike[str] | None = None) -> Iterable[dict[str, bytes]]:
    """Group a webdataset tar's members by key (keys are everything before the first dot).

    With ``verify`` the shard is first checked against its manifest (:func:`verify_shard`). A tar that
    cannot be read raises :class:`ShardError` naming the shard and the last member whose header was read."""
    if verify:
        verify_shard(path, stamp_dir)
    current: dict[str, bytes] = {}
    member = None
    try:
        with tarfile.open(path, "r") as tar:
            for m in tar:
                member = m.name
                if not m.isfile():
                    continue
                key, _, fname = Path(m.name).name.partition(".")
                if current and current["__key__"] != key:
                    yield current
                    current = {}
                current["__key__"] = key
                current[fname] = tar.extractfile(m).read()
    except ShardError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        # tarfile notices a truncated member only when it seeks past it to the next header: name the last one
        where = f" in or right after member {member}" if member else " before its first member"
        raise ShardError(path, f"unreadable{where} ({type(e).__name__}: {e})", member) from e
    if current:
        yield current


def stamp_dir_default() -> Path:
    """Where verification stamps live: ``$ANYHEAD_SHARD_STAMPS`` or ``~/.cache/anyhead/shard-stamps``."""
    return Path(os.environ.get(STAMP_ENV) or Path.home() / ".cache" / "anyhead" / "shard-stamps")


def _stamp_record(tar: Path, manifest_sha: str) -> dict[str, object]:
    st = tar.stat()
    # ctime and inode too: editing a tar and restoring its mtime (touch -r) still changes its ctime
    return {"path": str(tar.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "inode": st.st_ino, "sha256": manifest_sha}


def _stamp_path(tar: Path, stamp_dir: str | os.PathLike[str] | None) -> Path:
    d = Path(stamp_dir) if stamp_dir is not None else stamp_dir_default()
    return d / f"{hashlib.sha256(str(tar.resolve()).encode()).hexdigest()[:32]}.json"


def _changed_members(tar: Path, man: dict) -> list[str]:
    """Members whose bytes differ from the manifest's member hashes (missing and extra ones too)."""
    want = man.get("members") or {}
    got: dict[str, str] = {}
    try:
        with tarfile.open(tar, "r") as t:
            for m in t:
                if m.isfile():
                    got[m.name] = hashlib.sha256(t.extractfile(m).read()).hexdigest()
    except (tarfile.TarError, OSError, EOFError) as e:
        return [f"(unreadable after {len(got)} members: {type(e).__name__})"]
    changed = [n for n in want if got.get(n) != want[n]]
    return changed + [f"{n} (not in the manifest)" for n in got if n not in want]


def verify_shard(path: str | os.PathLike[str], stamp_dir: str | os.PathLike[str] | None = None,
                 use_stamp: bool = True) -> dict:
    """Check a shard's sha256 against its manifest (``<split>-NNNNNN.json`` beside the tar); return the manifest.

    A verification stamp is kept in ``stamp_dir`` (default :func:`stamp_dir_default`); while the tar's
    path, size, mtime, ctime, inode and the manifest's sha256 are unchanged, the hash is not recomputed.
    Raises :class:`ShardIntegrityError` naming the shard (and the changed members, where the manifest
    lists member hashes)."""
    tar = Path(path)
    man_path = tar.with_suffix(".json")
    if not tar.is_file():
        raise ShardIntegrityError(tar, "missing")
    if not man_path.is_file():
        raise ShardIntegrityError(tar, f"no manifest {man_path.name} beside it: cannot verify the shard")
    try:
        man = json.loads(man_path.read_text())
        want = man["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ShardIntegrityError(tar, f"manifest {man_path.name} unreadable ({type(e).__name__}: {e})") from e
    record = _stamp_record(tar, want)
    stamp = _stamp_path(tar, stamp_dir)
    if use_stamp:
        try:
            if json.loads(stamp.read_text()) == record:
                return man
        except (OSError, ValueError):  # no stamp yet, or a broken one: verify
            pass
    digest = sha256_file(tar)
    if digest != want:
        changed = _changed_members(tar, man) if man.get("members") else []
        raise ShardIntegrityError(
            tar, f"sha256 {digest[:16]}... differs from its manifest {man_path.name} ({want[:16]}...): modified or "
                 "corrupted" + (f"; changed members: {', '.join(changed)}" if changed else ""),
            member=changed[0] if len(changed) == 1 else None)
    if _stamp_record(tar, want) == record:  # unchanged while we hashed it
        try:
            write_json(stamp, record)
        except OSError as e:  # a read-only cache only costs re-hashing next time
            log.debug("cannot write verification stamp %s: %s", stamp, e)
    return man


def verify_shards(shards: Iterable[str | os.PathLike[str]], stamp_dir: str | os.PathLike[str] | None = None
                  ) -> list[dict]:
    """:func:`verify_shard` for each shard; returns the manifests (raises on the first bad shard)."""
    return [verify_shard(s, stamp_dir) for s in shards]


def sample_identity(key: str, meta: dict) -> str:
    """A sample's identity from its own meta.json (``identity_id``; AnyHead renders and photos both write it)."""
    ident = meta.get("identity_id")
    if not ident:
        raise ShardIntegrityError(f"sample {key}", "meta.json has no identity_id", f"{key}.meta.json")
    return str(ident)


def check_split_identities(splits: dict | str | os.PathLike[str], split: str,
                           samples: Iterable[tuple[str, dict]]) -> None:
    """Check (key, meta) pairs of a split's samples against the split manifest (``splits.json`` or its dict):
    every key is listed in the split, every sample's own identity is one of the split's identities and of no
    other split's, and every listed key is present. Raises :class:`ShardIntegrityError` listing all problems."""
    src = "splits.json"
    if not isinstance(splits, dict):
        src = str(splits)
        splits = json.loads(Path(splits).read_text())
    info = splits["splits"].get(split)
    if info is None:
        raise ShardIntegrityError(src, f"no split {split!r}")
    keys, idents = set(info["keys"]), set(info.get("identities", []))
    others = {i: s for s, inf in splits["splits"].items() if s != split for i in inf.get("identities", [])}
    problems, seen = [], set()
    for key, meta in samples:
        seen.add(key)
        ident = meta.get("identity_id")
        if key not in keys:
            problems.append(f"sample {key} is not listed in split {split!r}")
        if not ident:
            problems.append(f"sample {key}: meta.json has no identity_id")
        elif ident in others:
            problems.append(f"sample {key}: identity {ident} belongs to split {others[ident]!r}")
        elif ident not in idents:
            problems.append(f"sample {key}: identity {ident} is not among split {split!r}'s identities")
    missing = sorted(keys - seen)
    if missing:
        problems.append(f"{len(missing)} listed samples missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if problems:
        raise ShardIntegrityError(src, f"split {split!r}: " + "; ".join(problems))


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
            try:
                verify_shard(tar_path, use_stamp=False)  # names the changed members where the manifest has them
            except ShardIntegrityError as e:
                problems.append(str(e))
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
