"""Resumable folder stages: one planner for every stage that builds one folder per item.

A stage lists its tasks (an id, the folder it produces, and a *plan hash* of everything the folder
depends on). :func:`plan` removes folders that are no longer in the plan and temporary folders a
killed run left behind, and returns the tasks whose folder is missing or was built under another
plan; finished folders are skipped with a log line. Workers build a folder under a temporary name
and :func:`commit_folder` renames it into place, ``meta.json`` (which records the plan hash) last,
so a folder either is complete or does not exist.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import remove_orphan_temps

log = logging.getLogger(__name__)
MARKER = "meta.json"  # written last; carries "plan_hash"


@dataclass(frozen=True, repr=False)
class Task:
    """One unit of a folder stage."""

    id: str
    out: Path  # the folder it produces
    hash: str  # plan hash: the folder is current when its meta.json records this
    payload: dict[str, Any] = field(default_factory=dict)  # what the worker needs (picklable)

    def __repr__(self) -> str:  # failure logs name the item, not its whole payload
        return f"Task({self.id})"


def plan_hash(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (bytes are hashed as they are)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def recorded_hash(folder: Path) -> str | None:
    """The plan hash a finished folder records, or None (missing, incomplete or unreadable)."""
    try:
        return json.loads((folder / MARKER).read_text()).get("plan_hash")
    except (OSError, ValueError):
        return None


def plan(root: str | os.PathLike[str], tasks: list[Task], stage: str) -> list[Task]:
    """Prepare ``root`` for ``tasks`` and return those still to do (see the module docstring)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_orphan_temps(root, stage)
    wanted = {t.out.name for t in tasks}
    for p in sorted(root.iterdir()):
        if not p.is_dir() or p.name.startswith("."):
            continue
        if p.name not in wanted:
            log.info("%s: removing %s: no longer in the plan", stage, p)
            shutil.rmtree(p)
    todo = []
    for t in tasks:
        if recorded_hash(t.out) == t.hash:
            log.info("%s: skipping %s: already built with the same plan", stage, t.id)
        else:
            todo.append(t)
    return todo


def temp_folder(out: Path) -> Path:
    """A fresh temporary folder beside ``out`` (hidden, so :func:`plan` cleans it up after a crash)."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit_folder(tmp: Path, out: Path) -> None:
    """Move a completed temporary folder onto ``out`` (its marker file must be there)."""
    if not (tmp / MARKER).exists():
        raise RuntimeError(f"{tmp}: no {MARKER}; the folder is incomplete and is not committed")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def write_folder(out: Path, files: dict[str, bytes], meta: dict[str, Any]) -> None:
    """Write ``files`` and ``meta`` (as meta.json, last) into ``out`` through a temporary folder."""
    tmp = temp_folder(out)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    (tmp / MARKER).write_bytes(json.dumps(meta, sort_keys=True, default=str).encode())
    commit_folder(tmp, out)
