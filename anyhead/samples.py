"""One multi-view sample on disk and in a shard: file names, encodings and decoding.

A sample is a set of files sharing a key (webdataset style):

    input_000.png  input_000.mask.png  input_000.depth.png  input_000.normal.png
    view_000.png   view_000.mask.png   view_000.depth.png   view_000.normal.png   ...
    cameras.json   points.npy   meta.json

Depth is camera z in units of 0.1 mm (uint16 PNG, 0 = empty); normals are world-space, stored
as (n + 1) / 2 in 8-bit PNG; masks are coverage (alpha) in 8 bits. ``cameras.json`` and
``meta.json`` record :data:`anyhead.cameras.CONVENTION`.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .cameras import CONVENTION, Camera

DEPTH_UNIT = 1e-4  # metres per depth step


class SampleError(ValueError):
    """A sample file that is missing or cannot be decoded; ``member`` is its name ``<key>.<file>``."""

    def __init__(self, member: str, problem: str) -> None:
        self.member, self.problem = member, problem
        super().__init__(f"{member}: {problem}")

    def __reduce__(self):  # picklable across DataLoader workers
        return (type(self), (self.member, self.problem))


def _member(files: dict[str, bytes], name: str, decode: Any) -> Any:
    """``decode(files[name])``, with any failure named by the member."""
    key = files.get("__key__")
    member = f"{key}.{name}" if key is not None else name
    if name not in files:
        raise SampleError(member, "missing")
    try:
        return decode(files[name])
    except Exception as e:  # PIL, numpy and json raise many types; the caller needs the member's name
        raise SampleError(member, f"cannot decode ({type(e).__name__}: {e})") from e


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def encode_view(name: str, rgb: np.ndarray, alpha: np.ndarray, depth: np.ndarray | None = None,
                normal: np.ndarray | None = None) -> dict[str, bytes]:
    out = {f"{name}.png": png_bytes(rgb), f"{name}.mask.png": png_bytes((np.clip(alpha, 0, 1) * 255 + 0.5).astype(np.uint8))}
    if depth is not None:
        out[f"{name}.depth.png"] = png_bytes(np.clip(np.round(depth / DEPTH_UNIT), 0, 65535).astype(np.uint16))
    if normal is not None:
        n = np.where(np.linalg.norm(normal, axis=-1, keepdims=True) > 0, (normal + 1) / 2, 0)
        out[f"{name}.normal.png"] = png_bytes((np.clip(n, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def decode_image(b: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(b)))


@dataclass
class View:
    """One decoded view of a sample."""

    name: str  # "input_000", "view_003", ...
    role: str  # "input" or "target"
    camera: Camera
    rgb: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) float32 coverage in [0, 1]
    yaw: float | None = None  # degrees, as rendered (None for photos)
    pitch: float | None = None
    depth: np.ndarray | None = None  # (H, W) float32 camera z in metres, 0 = empty
    normal: np.ndarray | None = None  # (H, W, 3) float32 world-space unit normals


@dataclass
class Sample:
    """One decoded multi-view sample (or single-view photo)."""

    key: str | None
    meta: dict[str, Any]
    views: list[View]
    points: np.ndarray | None = None  # (N, 6) GT surface points + normals, metres

    @property
    def inputs(self) -> list[View]:
        return [v for v in self.views if v.role == "input"]

    @property
    def targets(self) -> list[View]:
        return [v for v in self.views if v.role == "target"]

    @property
    def input(self) -> View:
        """The first input portrait."""
        for v in self.views:
            if v.role == "input":
                return v
        raise SampleError(f"{self.key}.cameras.json", "no input view")


def decode_sample(files: dict[str, bytes], views: set[str] | None = None, geometry: bool = True) -> Sample:
    """Decode a sample's files into a :class:`Sample` (numpy arrays and camera objects).

    ``views`` limits decoding to those view names; ``geometry=False`` skips depth and normal maps and
    the GT points (training needs only colour and masks). Raises :class:`SampleError` (a ``ValueError``)
    naming the member for a missing or undecodable file, and for a sample from another camera convention.
    """
    cams = _member(files, "cameras.json", json.loads)
    conv = cams.get("convention", {})
    if conv.get("camera") != CONVENTION["camera"] or conv.get("world") != CONVENTION["world"]:
        raise SampleError(f"{files.get('__key__')}.cameras.json", f"sample uses convention {conv}, expected {CONVENTION}")
    decoded = []
    for v in cams["views"]:
        n = v["name"]
        if views is not None and n not in views:
            continue
        rec = View(n, v["role"], _member(files, "cameras.json", lambda _, v=v: Camera.from_dict(v)),
                   _member(files, f"{n}.png", decode_image), _member(files, f"{n}.mask.png", decode_image).astype(np.float32) / 255,
                   v.get("yaw"), v.get("pitch"))
        if geometry and f"{n}.depth.png" in files:
            rec.depth = _member(files, f"{n}.depth.png", decode_image).astype(np.float32) * DEPTH_UNIT
        if geometry and f"{n}.normal.png" in files:
            rec.normal = _member(files, f"{n}.normal.png", decode_image).astype(np.float32) / 255 * 2 - 1
        decoded.append(rec)
    points = _member(files, "points.npy", lambda b: np.load(io.BytesIO(b))) if geometry and "points.npy" in files else None
    return Sample(files.get("__key__"), _member(files, "meta.json", json.loads), decoded, points)


def read_folder(folder: str | Path) -> dict[str, bytes]:
    """All files of a rendered sample folder (``data/<profile>/renders/<id>``): what a shard sample holds."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def folder_meta(folder: str | Path) -> dict[str, Any]:
    """A rendered sample folder's meta.json."""
    return json.loads((Path(folder) / "meta.json").read_text())


def folder_identity(folder: str | Path) -> str:
    """The identity a rendered sample folder belongs to (splits are by identity)."""
    return folder_meta(folder)["identity_id"]
