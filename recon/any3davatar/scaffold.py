"""The structured 3D Gaussian scaffold: anchor points on a template head.

The template is the ICT mean head's skin plus a hair shell (the ``short`` style fitted to the
neutral scalp), sampled area-uniformly and thinned by farthest-point sampling to ``n_anchors``
evenly spread anchors, each carrying its outward normal. The ``random`` ablation draws anchors
uniformly inside the template's bounding ellipsoid instead (no structure).
"""
from __future__ import annotations

import numpy as np
import torch


def farthest_points(points: np.ndarray, n: int, seed: int = 0, weights: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``n`` farthest-point samples (greedy; O(n * len(points))). With ``weights`` (one
    per point) the next sample maximises weight * distance to the chosen set: where the weight is w
    the samples end up about w times closer together (w^2 times denser on a surface)."""
    rng = np.random.default_rng(seed)
    w = np.ones(len(points)) if weights is None else np.asarray(weights, np.float64)
    idx = np.empty(n, np.int64)
    idx[0] = rng.integers(len(points))
    d = np.linalg.norm(points - points[idx[0]], axis=1)
    for i in range(1, n):
        idx[i] = int(np.argmax(w * d))
        d = np.minimum(d, np.linalg.norm(points - points[idx[i]], axis=1))
    return idx


def face_region(points: np.ndarray) -> np.ndarray:
    """(M,) bool: the face (front of the head between chin and brows) in the head frame."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return (z > 0.03) & (y > -0.09) & (y < 0.06) & (np.abs(x) < 0.075)


def torso_region(points: np.ndarray) -> np.ndarray:
    """(M,) bool: shoulders and chest, below the neck and wider than it (head frame)."""
    return (points[:, 1] < -0.19) & (np.hypot(points[:, 0], points[:, 2] + 0.01) > 0.085)


def region_offset_limits(points: np.ndarray, max_offset: float, hair_offset: float, shoulders: bool = False) -> np.ndarray:
    """(M,) metres each anchor's Gaussians may move: ``max_offset`` on the face and neck, where the
    template is close to every head, ``hair_offset`` over the scalp, sides and back, where hair volume,
    buns, cap brims and headphones stand off the template's hair shell; with ``shoulders``, also over the
    torso, whose width (+-2 cm), garment thickness and hoods vary from head to head."""
    y = points[:, 1]
    tight = face_region(points) | (y < -0.09)
    if shoulders:
        tight &= ~torso_region(points)
    return np.where(tight, max_offset, max(hair_offset, max_offset)).astype(np.float32)


def torso_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0, floor: float = -0.34,
                  half_width: float = 0.21) -> tuple[np.ndarray, np.ndarray]:
    """(points (n', 3), outward normals) sampled on the torso AnyHead grows from the neck of the head skin
    (``vertices``, ``faces``: :class:`anyhead.look.Torso`, the mean shoulder half-width of its draws), above
    ``floor`` (metres)."""
    import trimesh

    from anyhead.geometry import grid_faces
    from anyhead.look import Torso

    torso = Torso(np.asarray(vertices, np.float64), faces, half_width)
    rows = 44
    mesh = trimesh.Trimesh(torso.grid(np.zeros(torso.M), rows), grid_faces(rows, torso.M, wrap_cols=True), process=False)
    p, f = trimesh.sample.sample_surface(mesh, n, seed=seed + 2)
    nrm = mesh.face_normals[f]
    out = p - np.array([torso.centre[0], 0.0, torso.centre[2]])
    out[:, 1] = 0.0  # away from the body's vertical axis
    nrm = nrm * (1.0 if np.einsum("ij,ij->i", nrm, out).sum() > 0 else -1.0)  # one winding: flip all or none
    keep = p[:, 1] > floor
    return p[keep], nrm[keep]


def template_scaffold(model, n_anchors: int, seed: int = 0, neck_floor: float = -0.16,
                      face_density: float = 1.0, shoulders: bool = False, torso_floor: float = -0.34,
                      torso_density: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """(anchors (M, 3), normals (M, 3)) on the ICT mean head + hair shell, in the head frame.

    Skin below ``neck_floor`` (metres, y) is left out (v1: -0.16 drops the lower neck; the ICT
    skin reaches -0.23); ``face_density`` > 1 spaces face anchors that many times closer. With
    ``shoulders``, the mean torso down to ``torso_floor`` joins, its anchors ``torso_density`` times as
    close together (< 1: sparser: it is large, smooth and mostly garment)."""
    import trimesh

    from anyhead.hair import HairParams, build_hair

    skin = model.face_mask(("M_Face", "M_BackHead"))
    faces = model.faces[skin]
    verts = model.neutral
    hair = build_hair(verts, faces, HairParams("short", "black", 0.012, 0.0, 0.0, seed))[0]
    # head surface below the hairline stays; the scalp under the shell is replaced by the shell
    head = trimesh.Trimesh(verts, faces, process=False)
    shell = trimesh.Trimesh(hair.vertices, hair.faces, process=False)
    n_pool = max(20 * n_anchors, 20000)
    p_head, f_head = trimesh.sample.sample_surface(head, n_pool, seed=seed)
    # ICT's windings are not consistent (much of the back of the head faces inwards): orient by ray casting
    from anyhead.geometry import RayCaster, orient_outward

    n_head = orient_outward(p_head, head.face_normals[f_head], RayCaster(verts, faces))
    keep = p_head[:, 1] > neck_floor
    p_head, n_head = p_head[keep], n_head[keep]
    p_hair, f_hair = trimesh.sample.sample_surface(shell, n_pool // 2, seed=seed + 1)
    n_hair = shell.face_normals[f_hair]
    n_hair *= np.sign(np.einsum("ij,ij->i", n_hair, p_hair))[:, None]  # outwards
    # skin points under the shell are hidden by hair: drop those within 2 cm below it
    from scipy.spatial import cKDTree

    d, _ = cKDTree(p_hair).query(p_head)
    under = (d < 0.02) & (p_head[:, 1] > 0.03)
    pts = np.concatenate([p_head[~under], p_hair])
    nrm = np.concatenate([n_head[~under], n_hair])
    if shoulders:
        p_t, n_t = torso_surface(verts, faces, n_pool, seed, torso_floor)
        pts, nrm = np.concatenate([pts, p_t]), np.concatenate([nrm, n_t])
    weights = np.where(face_region(pts), face_density, 1.0) if face_density != 1.0 else None
    if shoulders:
        weights = np.where(torso_region(pts), torso_density, 1.0 if weights is None else weights)
    idx = farthest_points(pts, n_anchors, seed, weights)
    return pts[idx].astype(np.float32), nrm[idx].astype(np.float32)


def random_scaffold(n_anchors: int, seed: int = 0, radii: tuple[float, float, float] = (0.1, 0.14, 0.12)) -> tuple[np.ndarray, np.ndarray]:
    """Ablation: anchors uniform inside an ellipsoid around the head, normals pointing outwards."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_anchors, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    p = u * rng.random((n_anchors, 1)) ** (1 / 3) * np.array(radii)
    return p.astype(np.float32), u.astype(np.float32)


def sphere_scaffold(n_anchors: int, radius: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic scaffold for unit tests: Fibonacci points on a sphere."""
    i = np.arange(n_anchors) + 0.5
    phi = np.arccos(1 - 2 * i / n_anchors)
    theta = np.pi * (1 + 5**0.5) * i
    n = np.stack([np.cos(theta) * np.sin(phi), np.cos(phi), np.sin(theta) * np.sin(phi)], 1)
    return (n * radius).astype(np.float32), n.astype(np.float32)


def group_order(points: np.ndarray, g: int) -> np.ndarray:
    """Indices ordering points so that each run of ``g`` is a compact neighbourhood: the leaves of a
    balanced k-d split (widest axis, left part a multiple of ``g``), each leaf in lexicographic order.
    The order depends only on the set of points, so ordering ordered points is the identity (a
    checkpoint's stored anchors keep their order). ``len(points)`` must be a multiple of ``g``."""
    out: list[np.ndarray] = []

    def lex(idx: np.ndarray, first: int | None = None) -> np.ndarray:
        p = points[idx]
        keys = (p[:, 2], p[:, 1], p[:, 0]) + ((p[:, first],) if first is not None else ())
        return idx[np.lexsort(keys)]

    def split(idx: np.ndarray) -> None:
        if len(idx) <= g:
            out.append(lex(idx))
            return
        p = points[idx]
        o = lex(idx, int(np.argmax(p.max(0) - p.min(0))))
        k = max(g, (len(idx) // g // 2) * g)
        split(o[:k])
        split(o[k:])

    split(np.arange(len(points)))
    return np.concatenate(out)


def anchor_spacing(anchors: torch.Tensor) -> torch.Tensor:
    """Mean distance from each anchor to its nearest neighbour (sets initial Gaussian scales)."""
    d = torch.cdist(anchors, anchors)
    d.fill_diagonal_(float("inf"))
    return d.min(1).values.mean()
