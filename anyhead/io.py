"""Small file helpers shared by every stage: atomic writes and hashing.

Every file the project writes goes through :func:`atomic_path` so that a crash never leaves a
partial file under the final name (write to ``name.tmp-<pid>``, fsync, then rename).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Bad user input: the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success. The temporary
    name keeps the suffix (``.name.tmp-<pid>.ply``) for writers that pick a format by it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of our temporary names: ``.<name>.tmp-<pid>[<suffix>]`` from
    :func:`anyhead.stages.temp_folder` and :func:`atomic_path`."""
    return name.startswith(".") and ".tmp-" in name


def remove_orphan_temps(folder: str | os.PathLike[str], stage: str) -> list[Path]:
    """Remove the temporary files and folders a killed run left directly in ``folder``; returns them.

    Only safe while this profile's build lock is held (:func:`profile_lock`, taken by every
    pipelines/ stage): another live build's temporaries look the same."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        if not is_temp_name(p.name):
            continue
        log.info("%s: removing %s: leftover temporary %s of a killed run", stage, p, "folder" if p.is_dir() else "file")
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        removed.append(p)
    return removed


KEY_STEM_MAX = 40  # characters of the sanitised relative path kept in a key (keys stay well inside tar name limits)
KEY_HASH_LEN = 6


def source_key(prefix: str, rel_path: str, salt: str = "", strip_suffix: bool = True) -> str:
    """A sample/asset key for an input file at ``rel_path`` (relative to its configured folder, ``/``-separated):
    ``<prefix><sanitised path without suffix>_<hash>``, e.g. ``photo_my-portrait_3f2a1c``. Only ``[a-z0-9_-]``
    (no dots: webdataset keys end at the first dot of a member name), at most ``len(prefix) + KEY_STEM_MAX + 1 +
    KEY_HASH_LEN`` characters, and stable: the hash is of the whole relative path (suffix included, so
    ``astro.png`` and ``astro.jpg`` get different keys) plus ``salt``. ``strip_suffix=False`` for folders
    (``john.doe/`` keeps its ``doe``)."""
    name = rel_path.rsplit("/", 1)[-1]
    stem = rel_path[: len(rel_path) - len(name)] + (name.rsplit(".", 1)[0] if strip_suffix and "." in name[1:] else name)
    slug = re.sub(r"[^a-z0-9_]+", "-", stem.lower()).strip("-_")[:KEY_STEM_MAX].strip("-_") or "file"
    digest = hashlib.sha256(f"{salt}{rel_path}".encode()).hexdigest()[:KEY_HASH_LEN]
    return f"{prefix}{slug}_{digest}"


class LockHeld(RuntimeError):
    """Another live process holds a build lock; the message names the lock file and the holder's pid."""

    def __init__(self, path: str | os.PathLike[str], holder: str) -> None:
        self.path, self.holder = str(path), holder
        super().__init__(f"{self.path}: another build of this profile is running (pid {holder}); wait for it to "
                         "finish or stop it. Two builds of one profile would delete each other's temporary files.")


_HELD_LOCKS: dict[str, int] = {}  # resolved lock path -> open fd, for locks this process holds until it exits


def profile_lock(path: str | os.PathLike[str]) -> Path:
    """Take the exclusive build lock ``path`` (``data/<profile>/.lock``) for the rest of this process, or raise
    :class:`LockHeld` at once (no waiting) naming the pid recorded by the process that holds it.

    ``fcntl.flock`` on an open file: the kernel drops the lock when its holder exits, even when killed, so a
    stale lock file never blocks a later build. Taking a lock this process already holds is a no-op."""
    import fcntl

    path = Path(path)
    key = str(path.resolve())
    if key in _HELD_LOCKS:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LockHeld(path, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD_LOCKS[key] = fd
    return path


def release_lock(path: str | os.PathLike[str]) -> None:
    """Give back a lock taken with :func:`profile_lock` before this process exits (tests; stages just exit)."""
    fd = _HELD_LOCKS.pop(str(Path(path).resolve()), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def save_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def load_triangle_mesh(path: str | os.PathLike[str]) -> Any:
    """A trimesh.Trimesh from OBJ/PLY/GLB (vertex order kept), or an InputError naming the file."""
    import trimesh

    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as e:  # trimesh raises many types for bad files
        raise InputError(path, f"cannot read mesh: {e}") from e
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(path, "file holds no triangle mesh")
    return mesh


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
