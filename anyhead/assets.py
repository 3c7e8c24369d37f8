"""The head asset container: textured or vertex-coloured mesh parts with materials and provenance.

A :class:`HeadAsset` is what every source (the ICT morphable model, a user scan) produces and
what the renderer consumes. It saves to one ``asset.npz`` plus a human-readable ``meta.json``
and exports to GLB for viewers.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cameras import CONVENTION
from .io import InputError, atomic_path, write_json

# Shading presets: (specular strength, Blinn-Phong exponent).
MATERIALS: dict[str, tuple[float, float]] = {
    "skin": (0.08, 24.0),
    "eye": (0.5, 200.0),
    "teeth": (0.15, 40.0),
    "hair": (0.12, 12.0),
    "cloth": (0.02, 6.0),
    "plastic": (0.35, 60.0),
    "metal": (0.8, 120.0),
    "glass": (0.9, 300.0),
    "default": (0.1, 20.0),
}


@dataclass
class Part:
    """One mesh part. Colour comes from ``texture`` sampled at ``face_uv`` or from ``vertex_colors``."""

    name: str
    vertices: np.ndarray  # (N, 3) float32, head frame, metres
    faces: np.ndarray  # (F, 3) int32
    material: str = "default"
    vertex_colors: np.ndarray | None = None  # (N, 3) float32 in [0, 1]
    face_uv: np.ndarray | None = None  # (F, 3, 2) float32, v up (OBJ convention)
    texture: np.ndarray | None = None  # (H, W, 3) uint8
    opacity: float = 1.0
    spec_map: np.ndarray | None = None  # (H, W, 2) uint8 over the texture's UVs: specular strength, shininess (128 = 1x)

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, np.float32)
        self.faces = np.asarray(self.faces, np.int32)
        if self.material not in MATERIALS:
            raise ValueError(f"part {self.name!r}: unknown material {self.material!r}")
        if self.vertex_colors is None and self.texture is None:
            raise ValueError(f"part {self.name!r}: needs vertex colours or a texture")
        if self.texture is not None and (self.face_uv is None or len(self.face_uv) != len(self.faces)):
            raise ValueError(f"part {self.name!r}: a texture needs one UV triple per face")
        if self.spec_map is not None and (self.face_uv is None or self.spec_map.ndim != 3 or self.spec_map.shape[2] != 2):
            raise ValueError(f"part {self.name!r}: a spec map is (H, W, 2) and needs UVs")

    def to_trimesh(self) -> Any:
        import trimesh

        if self.vertex_colors is not None:
            return trimesh.Trimesh(self.vertices, self.faces, vertex_colors=(self.vertex_colors * 255).astype(np.uint8),
                                   process=False)
        # Split corners so each face corner carries its own UV (what GLB needs).
        from PIL import Image

        v = self.vertices[self.faces].reshape(-1, 3)
        f = np.arange(len(v)).reshape(-1, 3)
        uv = self.face_uv.reshape(-1, 2)
        visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(self.texture))
        return trimesh.Trimesh(v, f, visual=visual, process=False)


@dataclass
class HeadAsset:
    """A full head (skin, eyes, hair, accessories) in the head frame with its provenance."""

    parts: list[Part]
    meta: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(name)

    def names(self) -> list[str]:
        return [p.name for p in self.parts]

    def bounds(self) -> np.ndarray:
        v = np.concatenate([p.vertices for p in self.parts])
        return np.stack([v.min(0), v.max(0)])

    def merged(self, names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Concatenated (vertices, faces) of the named parts (all parts by default)."""
        vs, fs, off = [], [], 0
        for p in self.parts:
            if names is not None and p.name not in names:
                continue
            vs.append(p.vertices)
            fs.append(p.faces + off)
            off += len(p.vertices)
        return np.concatenate(vs), np.concatenate(fs)

    # -- persistence -----------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str]) -> None:
        folder = Path(folder)
        arrays: dict[str, np.ndarray] = {}
        parts_meta = []
        for i, p in enumerate(self.parts):
            key = f"p{i}"
            arrays[f"{key}_vertices"] = p.vertices
            arrays[f"{key}_faces"] = p.faces
            for attr in ("vertex_colors", "face_uv", "texture", "spec_map"):
                val = getattr(p, attr)
                if val is not None:
                    arrays[f"{key}_{attr}"] = val
            parts_meta.append({"name": p.name, "material": p.material, "opacity": p.opacity, "key": key})
        meta = dict(self.meta)
        meta["parts"] = parts_meta
        meta["convention"] = CONVENTION
        with atomic_path(folder / "asset.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        write_json(folder / "meta.json", meta)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "HeadAsset":
        folder = Path(folder)
        npz, meta_path = folder / "asset.npz", folder / "meta.json"
        for p in (npz, meta_path):
            if not p.exists():
                raise InputError(p, "missing (a head asset folder holds asset.npz and meta.json)")
        meta = json.loads(meta_path.read_text())
        z = np.load(npz)
        parts = []
        for pm in meta["parts"]:
            k = pm["key"]
            get = lambda a, k=k: z[f"{k}_{a}"] if f"{k}_{a}" in z else None  # noqa: E731
            parts.append(Part(pm["name"], z[f"{k}_vertices"], z[f"{k}_faces"], pm["material"], get("vertex_colors"),
                              get("face_uv"), get("texture"), pm["opacity"], get("spec_map")))
        meta.pop("parts")
        return cls(parts, meta)

    def export_glb(self, path: str | os.PathLike[str]) -> None:
        """GLB for viewers (glTF is +y up; our head frame already is, so no conversion)."""
        import trimesh

        scene = trimesh.Scene()
        for p in self.parts:
            scene.add_geometry(p.to_trimesh(), node_name=p.name, geom_name=p.name)
        scene.metadata["anyhead"] = {"convention": CONVENTION, **{k: v for k, v in self.meta.items() if k != "parts"}}
        with atomic_path(path) as tmp:
            tmp.write_bytes(scene.export(file_type="glb"))
