"""Generic scan adapter: a folder of textured (or vertex-coloured) OBJ/PLY/GLB head scans.

Each scan is normalised into the head frame: units detected from its size (or given), axes
remapped from a declared up/forward (default +y up, +z forward, the glTF/ICT convention), centred
so that the crown sits 0.11 m above the origin like the ICT neutral head, and checked for a
plausible head size.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .assets import HeadAsset, Part
from .io import InputError, load_triangle_mesh, sha256_file

if TYPE_CHECKING:
    from .config import ScanOptions

SCAN_SUFFIXES = (".obj", ".ply", ".glb", ".gltf")
_AXES = {"+x": [1, 0, 0], "-x": [-1, 0, 0], "+y": [0, 1, 0], "-y": [0, -1, 0], "+z": [0, 0, 1], "-z": [0, 0, -1]}
CROWN_HEIGHT = 0.11  # metres above the head centre (ICT neutral)
HEAD_HEIGHT_RANGE = (0.12, 0.65)  # metres: from a face-only scan to a head with shoulders


def _axis_matrix(up: str, forward: str) -> np.ndarray:
    if up not in _AXES or forward not in _AXES:
        raise ValueError(f"axes must be one of {sorted(_AXES)}")
    u, f = np.array(_AXES[up], float), np.array(_AXES[forward], float)
    if abs(u @ f) > 0:
        raise ValueError(f"up {up} and forward {forward} must be perpendicular")
    x = np.cross(u, f)
    return np.stack([x, u, f])  # rows: file axes -> head-frame x, y, z


def load_scan(path: str | os.PathLike[str], options: "ScanOptions") -> HeadAsset:
    """Read one scan into a :class:`HeadAsset` with a single ``scan`` part (``options``: units and axes)."""
    up, forward, units = options.up, options.forward, options.units
    path = Path(path)
    if not path.exists():
        raise InputError(path, "scan not found")
    if path.suffix.lower() not in SCAN_SUFFIXES:
        raise InputError(path, f"unsupported scan format {path.suffix!r}; use one of {SCAN_SUFFIXES}")
    mesh = load_triangle_mesh(path)
    v = np.asarray(mesh.vertices, np.float64) @ _axis_matrix(up, forward).T
    extent = float(np.ptp(v[:, 1]))
    if units == "auto":
        scale = 0.001 if extent > 20 else 0.01 if extent > 2 else 1.0
    else:
        scale = {"m": 1.0, "cm": 0.01, "mm": 0.001}[units]
    v *= scale
    height = float(np.ptp(v[:, 1]))
    if not HEAD_HEIGHT_RANGE[0] <= height <= HEAD_HEIGHT_RANGE[1]:
        raise InputError(path, f"not a head scale: {height:.3f} m tall after unit conversion "
                               f"(expected {HEAD_HEIGHT_RANGE[0]}-{HEAD_HEIGHT_RANGE[1]} m; set scan_options.units)")
    centre = np.array([(v[:, 0].max() + v[:, 0].min()) / 2, v[:, 1].max() - CROWN_HEIGHT, (v[:, 2].max() + v[:, 2].min()) / 2])
    v -= centre
    faces = np.asarray(mesh.faces, np.int32)
    visual = mesh.visual
    uv = getattr(visual, "uv", None)
    image = getattr(getattr(visual, "material", None), "image", None)
    if image is None:
        image = getattr(getattr(visual, "material", None), "baseColorTexture", None)
    if uv is not None and image is not None:
        tex = np.asarray(image.convert("RGB"))
        part = Part("scan", v, faces, "skin", face_uv=np.asarray(uv, np.float32)[faces], texture=tex)
    elif getattr(visual, "kind", None) == "vertex":
        part = Part("scan", v, faces, "skin", vertex_colors=np.asarray(visual.vertex_colors)[:, :3].astype(np.float32) / 255)
    else:
        raise InputError(path, "mesh has no UVs with a texture and no vertex colours; a coloured scan is required")
    meta = {"source": "scan", "identity_id": f"scan-{path.stem}",
            "provenance": {"source": str(path), "sha256": sha256_file(path), "units_scale": scale, "up": up,
                           "forward": forward, "license": "as provided by the scan's owner"}}
    return HeadAsset([part], meta)


def list_scans(folder: str | os.PathLike[str]) -> list[Path]:
    """The scan files in ``folder``, sorted by name; an error naming the folder when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "scan folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SCAN_SUFFIXES)
    if not files:
        raise InputError(folder, f"no scans ({', '.join(SCAN_SUFFIXES)}) in folder")
    return files


def iter_scans(folder: str | os.PathLike[str], options: "ScanOptions") -> Iterator[HeadAsset]:
    """Every scan in ``folder`` (sorted by name); see :func:`load_scan` for the options."""
    for p in list_scans(folder):
        yield load_scan(p, options)
