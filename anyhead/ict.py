"""ICT FaceKit: fetch, extract, load the upstream layout, sample identities.

The upstream archive (github.com/ICT-VGL/ICT-FaceKit, MIT) is fetched by the ``fetch_assets``
DVC stage, or taken from a local path (offline machines, tests and CI use
``../shared/ict-facekit/ICT-FaceKit-da5f95a.tar.gz``). The loader reads the extracted upstream
folder (``FaceXModel/*.obj``, ``vertex_indices.json``) and keeps the original vertex order of the
26,719-vertex topology: identity and expression deltas are applied per original vertex, quads are
split into triangles only in the face list.

Geometry is converted from upstream centimetres to the head frame: metres, +y up, +z out of the
face, origin at the head centre (:data:`HEAD_CENTER_CM`, the midpoint of crown/chin and of
back/nose-tip of the neutral mesh, i.e. roughly between the ears at eye level).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import InputError, atomic_path, sha256_file

log = logging.getLogger(__name__)

ICT_COMMIT = "da5f95a"
ICT_URL = f"https://github.com/ICT-VGL/ICT-FaceKit/archive/{ICT_COMMIT}.tar.gz"
ICT_LICENSE = "MIT (c) 2020 USC Institute for Creative Technologies"
# Archives whose content we have checked. Upstream's own archive of the pinned commit is the full
# repository (scripts and figures too): its digest is recorded on first download (see fetch_archive).
KNOWN_SHA256 = {
    "6318dd40052d99771acefb19017c1a0c4ef4228a14604516863db677a588d23b": "ICT-FaceKit-da5f95a light (data files only)",
}
N_VERTICES = 26719
N_IDENTITIES = 100
CM_TO_M = 0.01
HEAD_CENTER_CM = np.array([0.0, 3.47, 1.93])

# Vertex ranges of the topology (inclusive), from upstream's documentation.
REGIONS: dict[str, tuple[int, int]] = {
    "face": (0, 9408),
    "head_neck": (9409, 11247),
    "mouth_socket": (11248, 13293),
    "eye_sockets": (13294, 14061),
    "gums_tongue": (14062, 17038),
    "teeth": (17039, 21450),
    "eyeballs": (21451, 24590),
    "iris_left": (22221, 23020),
    "iris_right": (23791, 24590),
    "eye_blend": (24591, 25350),
    "eyelashes": (25351, 26718),
}
# Materials we render; the rest (eye blend, occlusion, lacrimal fluid) are transparent overlays.
RENDERED_MATERIALS = (
    "M_Face", "M_BackHead", "M_GumsTongue", "M_Teeth", "M_ScleraLeft", "M_IrisLeft",
    "M_ScleraRight", "M_IrisRight", "M_EyeLashes",
)


def fetch_archive(dest: str | os.PathLike[str], local_archive: str | os.PathLike[str] | None = None,
                  url: str = ICT_URL, sha256: str | None = None) -> dict[str, Any]:
    """Place the ICT FaceKit archive at ``dest``: copied from ``local_archive`` or downloaded.

    ``sha256``, when given, must match; otherwise the digest is returned so that a lock file or
    DVC can pin it. Returns provenance (source, digest, licence).
    """
    dest = Path(dest)
    if local_archive:
        src = Path(local_archive)
        if not src.is_file():
            raise InputError(src, "ICT FaceKit archive not found (give the .tar.gz from upstream or shared/ict-facekit)")
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        source = str(src)
    else:
        log.info("downloading %s", url)
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=120) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
        source = url
    digest = sha256_file(dest)
    if sha256 and digest != sha256:
        dest.unlink()
        raise InputError(source, f"sha256 {digest} does not match the pinned {sha256}")
    return {"source": source, "sha256": digest, "known_as": KNOWN_SHA256.get(digest, "unlisted"),
            "commit": ICT_COMMIT, "license": ICT_LICENSE}


def extract_archive(archive: str | os.PathLike[str], cache_dir: str | os.PathLike[str]) -> Path:
    """Extract the data files of the archive into ``cache_dir`` (once) and return the folder
    holding ``FaceXModel/``. Extraction goes to a temporary folder that is renamed when done."""
    archive, cache_dir = Path(archive), Path(cache_dir)
    if not archive.is_file():
        raise InputError(archive, "ICT FaceKit archive not found")
    key = sha256_file(archive)[:16]
    final = cache_dir / f"ict-{key}"
    if (final / ".complete").exists():
        return find_root(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ict-", dir=cache_dir))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and ("/FaceXModel/" in m.name or m.name.endswith("/LICENSE"))]
            if not any(m.name.endswith("generic_neutral_mesh.obj") for m in members):
                raise InputError(archive, "not an ICT FaceKit archive: no FaceXModel/generic_neutral_mesh.obj inside")
            tar.extractall(tmp, members=members, filter="data")
        (tmp / ".complete").touch()
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return find_root(final)


def find_root(path: str | os.PathLike[str]) -> Path:
    """The folder that holds ``FaceXModel/`` (the archive's top folder or a clone)."""
    path = Path(path)
    if (path / "FaceXModel").is_dir():
        return path
    hits = sorted(p.parent for p in path.glob("*/FaceXModel") if p.is_dir())
    if not hits:
        raise InputError(path, "no FaceXModel/ folder found (expected the extracted ICT-FaceKit layout)")
    return hits[0]


def read_obj_vertices(path: Path) -> np.ndarray:
    """Vertex positions of an OBJ in file order (fast path for the 153 shape files)."""
    try:
        with open(path, "rb") as f:
            lines = [ln for ln in f.read().split(b"\n") if ln.startswith(b"v ")]
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror}") from e
    v = np.array([ln.split()[1:4] for ln in lines], dtype=np.float64)
    if v.shape != (N_VERTICES, 3):
        raise InputError(path, f"expected {N_VERTICES} vertices, found {len(v)}")
    return v


def read_obj_topology(path: Path) -> dict[str, Any]:
    """Faces (triangulated, vertex order kept), UVs and per-face material names of an OBJ."""
    uv: list[list[float]] = []
    fv: list[list[int]] = []
    ft: list[list[int]] = []
    fm: list[int] = []
    materials: list[str] = []
    mat = -1
    with open(path) as f:
        for line in f:
            if line.startswith("vt "):
                uv.append([float(x) for x in line.split()[1:3]])
            elif line.startswith("usemtl"):
                name = line.split()[1]
                if name not in materials:
                    materials.append(name)
                mat = materials.index(name)
            elif line.startswith("f "):
                corners = [c.split("/") for c in line.split()[1:]]
                vi = [int(c[0]) - 1 for c in corners]
                ti = [int(c[1]) - 1 if len(c) > 1 and c[1] else -1 for c in corners]
                for k in range(1, len(vi) - 1):  # fan split of quads: (a,b,c), (a,c,d)
                    fv.append([vi[0], vi[k], vi[k + 1]])
                    ft.append([ti[0], ti[k], ti[k + 1]])
                    fm.append(mat)
    if not uv:
        raise InputError(path, "mesh has no texture coordinates (vt); a UV layout is required")
    return {"uv": np.array(uv, np.float32), "faces": np.array(fv, np.int32), "faces_uv": np.array(ft, np.int32),
            "face_material": np.array(fm, np.int16), "materials": materials}


@dataclass
class ICTModel:
    """The ICT FaceKit morphable model in the head frame (metres)."""

    neutral: np.ndarray  # (V, 3) float32
    identity_basis: np.ndarray  # (100, V, 3) float32: one standard deviation per mode
    expression_names: list[str]
    expression_basis: np.ndarray  # (E, V, 3) float32
    faces: np.ndarray  # (F, 3) int32, triangulated, original vertex indices
    faces_uv: np.ndarray  # (F, 3) int32 into uv
    uv: np.ndarray  # (T, 2) float32
    face_material: np.ndarray  # (F,) int16 into materials
    materials: list[str]
    landmarks: np.ndarray  # (68,) Multi-PIE landmark vertex indices
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, root: str | os.PathLike[str], with_expressions: bool = True) -> "ICTModel":
        """Read the extracted upstream layout (``<root>/FaceXModel``)."""
        fx = find_root(root) / "FaceXModel"
        neutral_path = fx / "generic_neutral_mesh.obj"
        if not neutral_path.exists():
            raise InputError(neutral_path, "missing: the ICT FaceKit neutral mesh is required")
        idx_path = fx / "vertex_indices.json"
        if not idx_path.exists():
            raise InputError(idx_path, "missing: landmark and expression indices are required")
        meta = json.loads(idx_path.read_text())
        topo = read_obj_topology(neutral_path)
        neutral = read_obj_vertices(neutral_path)
        ident = []
        for k in range(N_IDENTITIES):
            p = fx / f"identity{k:03d}.obj"
            if not p.exists():
                raise InputError(p, "missing identity mode (the archive is incomplete)")
            ident.append(read_obj_vertices(p) - neutral)
        names = list(meta.get("expressions", [])) if with_expressions else []
        expr = [read_obj_vertices(fx / f"{n}.obj") - neutral for n in names]
        to_m = lambda x: (x * CM_TO_M).astype(np.float32)  # noqa: E731 - deltas only scale
        return cls(
            neutral=to_m(neutral - HEAD_CENTER_CM),
            identity_basis=to_m(np.stack(ident)),
            expression_names=names,
            expression_basis=to_m(np.stack(expr)) if expr else np.zeros((0, N_VERTICES, 3), np.float32),
            faces=topo["faces"], faces_uv=topo["faces_uv"], uv=topo["uv"],
            face_material=topo["face_material"], materials=topo["materials"],
            landmarks=np.array(meta["idx_to_landmark_verts"], np.int32),
            provenance={"source": "ICT-FaceKit", "commit": ICT_COMMIT, "license": ICT_LICENSE, "folder": str(fx)},
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Compact cache of the model (one .npz, ~50 MB) so stages need not re-parse 153 OBJs."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, neutral=self.neutral, identity_basis=self.identity_basis,
                         expression_basis=self.expression_basis, expression_names=np.array(self.expression_names),
                         faces=self.faces, faces_uv=self.faces_uv, uv=self.uv, face_material=self.face_material,
                         materials=np.array(self.materials), landmarks=self.landmarks,
                         provenance=np.array(json.dumps(self.provenance)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ICTModel":
        path = Path(path)
        if not path.exists():
            raise InputError(path, "ICT model cache not found (run the fetch_assets stage)")
        z = np.load(path)
        return cls(neutral=z["neutral"], identity_basis=z["identity_basis"].astype(np.float32),
                   expression_basis=z["expression_basis"].astype(np.float32),
                   expression_names=[str(s) for s in z["expression_names"]], faces=z["faces"], faces_uv=z["faces_uv"],
                   uv=z["uv"], face_material=z["face_material"], materials=[str(s) for s in z["materials"]],
                   landmarks=z["landmarks"], provenance=json.loads(str(z["provenance"])))

    # -- geometry ---------------------------------------------------------------------------
    def vertices(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """Vertices (V, 3) for identity weights (in standard deviations) and expression weights."""
        v = self.neutral.astype(np.float64).copy()
        if identity is not None:
            w = np.asarray(identity, dtype=np.float64)
            v += np.tensordot(w, self.identity_basis[: len(w)], axes=1)
        if expression is not None and len(expression):
            w = np.asarray(expression, dtype=np.float64)
            v += np.tensordot(w, self.expression_basis[: len(w)], axes=1)
        return v.astype(np.float32)

    def sample_identity(self, rng: np.random.Generator, n_modes: int = N_IDENTITIES, scale: float = 1.0) -> np.ndarray:
        """Identity weights drawn from a standard normal (upstream's recipe), truncated at 3 sd."""
        w = np.zeros(N_IDENTITIES)
        w[:n_modes] = np.clip(rng.standard_normal(n_modes) * scale, -3.0, 3.0)
        return w

    def sample_expression(self, rng: np.random.Generator, max_active: int = 3, max_weight: float = 0.6) -> np.ndarray:
        """A mild random expression: a few blendshapes at small weights (zeros if none loaded)."""
        w = np.zeros(len(self.expression_names))
        if len(w) and max_active > 0:
            k = rng.integers(0, max_active + 1)
            idx = rng.choice(len(w), size=k, replace=False)
            w[idx] = rng.uniform(0.0, max_weight, size=k)
        return w

    def face_mask(self, materials: tuple[str, ...] = RENDERED_MATERIALS) -> np.ndarray:
        """Boolean mask of faces whose material is in ``materials``."""
        keep = np.array([m in materials for m in self.materials])
        return keep[self.face_material]

    def region(self, name: str) -> np.ndarray:
        a, b = REGIONS[name]
        return np.arange(a, b + 1)


def save_compact(model: ICTModel, path: str | os.PathLike[str], expressions: bool = True) -> None:
    """A smaller cache for machines the archive cannot reach (the GPU device): identity and
    expression deltas in float16 (at most 0.02 mm off for deltas under 2 cm), compressed."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f, neutral=model.neutral, identity_basis=model.identity_basis.astype(np.float16),
                expression_basis=(model.expression_basis if expressions else model.expression_basis[:0]).astype(np.float16),
                expression_names=np.array(model.expression_names if expressions else []), faces=model.faces,
                faces_uv=model.faces_uv, uv=model.uv, face_material=model.face_material, materials=np.array(model.materials),
                landmarks=model.landmarks, provenance=np.array(json.dumps({**model.provenance, "compact": "float16 deltas"})))


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "compact":
        raise SystemExit("usage: python -m anyhead.ict compact MODEL.npz OUT.npz")
    save_compact(ICTModel.load(sys.argv[2]), sys.argv[3])
