"""Mesh-building and ray-casting helpers shared by hair, accessories and the renderer."""
from __future__ import annotations

import numpy as np


class RayCaster:
    """First-hit ray casting against a triangle soup through Embree (embreex)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        self.scene = rtcore_scene.EmbreeScene()
        self.triangles = np.ascontiguousarray(np.asarray(vertices, np.float32)[np.asarray(faces)])
        TriangleMesh(scene=self.scene, vertices=self.triangles)

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> dict[str, np.ndarray]:
        """Returns ``primID`` (-1 for a miss), ``tfar`` (distance), ``u``, ``v`` (barycentrics).

        ``origins`` and ``directions`` are (N, 3) or (1, 3) (shared); float32 arrays of any strides (transposed
        views, broadcasts) are read in place."""
        o, d = self._rays(origins, directions)
        if len(d) != len(o):
            d = np.broadcast_to(d, o.shape)
        return self.scene.run(o, d, output=1)

    def occluded(self, origins: np.ndarray, directions: np.ndarray, tfar: np.ndarray | None = None) -> np.ndarray:
        """Whether each ray hits anything (an any-hit query: about twice as fast as :meth:`cast`; shadow rays),
        within ``tfar`` (per ray, in units of the direction's length) if given."""
        o, d = self._rays(origins, directions)  # one shared direction is read as such
        if tfar is not None:
            tfar = np.ascontiguousarray(tfar, np.float32).reshape(-1)
        return self.scene.run(o, d, dists=tfar, query="OCCLUDED") >= 0

    @staticmethod
    def _rays(origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        o = np.asarray(origins, dtype=np.float32).reshape(-1, 3)
        d = np.asarray(directions, dtype=np.float32).reshape(-1, 3)
        if len(o) != len(d):
            o = np.broadcast_to(o, (max(len(o), len(d)), 3))
        return o, d

    def outer_surface(self, centre: np.ndarray, directions: np.ndarray, reach: float = 1.0) -> np.ndarray:
        """Distance from ``centre`` to the outermost surface along each direction (NaN on a miss).

        Casts inwards from far outside, so inner shells (eyes, mouth) never count.
        """
        d = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        origins = centre + d * reach
        hit = self.cast(origins, -d)
        r = reach - hit["tfar"].astype(np.float64)
        r[hit["primID"] < 0] = np.nan
        return r


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals."""
    v = np.asarray(vertices, np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def grid_faces(rows: int, cols: int, wrap_cols: bool = False) -> np.ndarray:
    """Two triangles per cell of a rows x cols vertex grid (row-major)."""
    c_end = cols if wrap_cols else cols - 1
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(c_end), indexing="ij")
    r, c = r.ravel(), c.ravel()
    c1 = (c + 1) % cols
    a, b, cc, d = r * cols + c, r * cols + c1, (r + 1) * cols + c, (r + 1) * cols + c1
    return np.concatenate([np.stack([a, cc, b], 1), np.stack([b, cc, d], 1)]).astype(np.int32)


def drop_degenerate(vertices: np.ndarray, faces: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    v = vertices[faces]
    area = np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    return faces[area > eps]


def tube(path: np.ndarray, radius: float | np.ndarray, sides: int = 10, closed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A tube of circular cross-section swept along a polyline (frames by parallel transport)."""
    path = np.asarray(path, np.float64)
    n = len(path)
    radius = np.broadcast_to(np.asarray(radius, np.float64), (n,))
    tang = np.gradient(path, axis=0) if not closed else np.roll(path, -1, 0) - np.roll(path, 1, 0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-12)
    ref = np.array([0.0, 1.0, 0.0]) if abs(tang[0, 1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normal = np.cross(tang[0], ref)
    normal /= np.linalg.norm(normal)
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    verts = []
    for i in range(n):
        normal = normal - tang[i] * (normal @ tang[i])
        normal /= max(np.linalg.norm(normal), 1e-12)
        binormal = np.cross(tang[i], normal)
        ring = path[i] + radius[i] * (np.cos(ang)[:, None] * normal + np.sin(ang)[:, None] * binormal)
        verts.append(ring)
    v = np.concatenate(verts)
    f = grid_faces(n + (1 if closed else 0), sides, wrap_cols=True)
    if closed:
        f = f % len(v)
    return v.astype(np.float32), f


def ellipse(center: np.ndarray, axis_u: np.ndarray, axis_v: np.ndarray, ru: float, rv: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return center + ru * np.cos(t)[:, None] * axis_u + rv * np.sin(t)[:, None] * axis_v


def fan(boundary: np.ndarray, center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A flat triangle fan closing a boundary loop (lenses, caps)."""
    v = np.concatenate([[center], boundary]).astype(np.float32)
    n = len(boundary)
    i = np.arange(n)
    f = np.stack([np.zeros(n, int), 1 + i, 1 + (i + 1) % n], 1).astype(np.int32)
    return v, f


def cylinder(center: np.ndarray, axis: np.ndarray, radius: float, length: float, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A closed cylinder (ear cups, studs)."""
    import trimesh

    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    T = trimesh.geometry.align_vectors([0, 0, 1], axis)
    T[:3, 3] = center
    m = trimesh.creation.cylinder(radius=radius, height=length, sections=n, transform=T)
    return m.vertices.astype(np.float32), m.faces.astype(np.int32)


def sphere(center: np.ndarray, radius: float | np.ndarray, subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    return (m.vertices * radius + center).astype(np.float32), m.faces.astype(np.int32)


def spherical_dirs(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Unit vectors; azimuth 0 = +z (face), +90 deg = +x (subject's left); elevation up from horizontal."""
    az, el = np.radians(azimuth), np.radians(elevation)
    return np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], -1)


def orient_outward(points: np.ndarray, normals: np.ndarray, caster: RayCaster, centre: np.ndarray = (0.0, 0.0, 0.0)
                   ) -> np.ndarray:
    """Flip normals that point into a closed-ish surface: a ray along an outward normal escapes,
    one along an inward normal hits the far side. Where both or neither escape (ears, open
    borders), the normal is made to point away from ``centre``."""
    p = np.asarray(points, np.float64)
    n = np.asarray(normals, np.float64)
    eps = 1e-4
    out_hit = caster.cast(p + n * eps, n)["primID"] >= 0
    in_hit = caster.cast(p - n * eps, -n)["primID"] >= 0
    flip = out_hit & ~in_hit
    ambiguous = out_hit == in_hit
    flip |= ambiguous & (np.einsum("ij,ij->i", p - np.asarray(centre), n) < 0)
    return np.where(flip[:, None], -n, n).astype(np.float32)
