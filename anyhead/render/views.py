"""Render one head asset into a multi-view sample: input portrait(s), dense targets, GT points."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..assets import HeadAsset
from ..cameras import Camera
from .raycast import HeadRenderer, Lighting, RenderOutput, _bilinear_flat
from .rigs import sample_input_camera, target_rig

if TYPE_CHECKING:
    from ..config import RenderConfig

# Parts that never count as visible surface for geometry metrics: inside the head, or flyaway hair (sub-pixel wisps
# that a 64-256 px view's few rays per pixel mostly miss, so no depth map or mask reliably contains them).
INTERIOR_PARTS = ("mouth", "hair_flyaways")


@dataclass
class ViewRecord:
    role: str  # "input" or "target"
    camera: Camera
    output: RenderOutput
    yaw: float
    pitch: float
    extra: dict[str, Any]


def sample_surface(asset: HeadAsset, n: int, rng: np.random.Generator, exclude: tuple[str, ...] = INTERIOR_PARTS,
                   min_alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted surface samples over all parts: (points, normals, part index).

    On alpha-textured parts (hair cards) only points whose texel alpha is at least ``min_alpha`` are
    kept (rejection sampling): the gaps between strand clumps are not surface, and a point there is
    neither seen by the renderer (rays pass through) nor in any depth map."""
    tris, parts, uvs, tex = [], [], [], {}
    for i, p in enumerate(asset.parts):
        if p.name in exclude:
            continue
        tris.append(p.vertices[p.faces].astype(np.float64))
        parts.append(np.full(len(p.faces), i))
        alpha = p.texture is not None and p.texture.ndim == 3 and p.texture.shape[-1] == 4
        uvs.append(p.face_uv.astype(np.float64) if alpha else np.zeros((len(p.faces), 3, 2)))
        if alpha:
            tex[i] = p.texture[..., 3:].astype(np.float32) / 255.0
    tri = np.concatenate(tris)
    part = np.concatenate(parts)
    face_uv = np.concatenate(uvs)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1) / 2
    prob = area / area.sum()
    idx_all, w_all, kept = [], [], 0
    while kept < n:
        m = (n - kept) * (2 if tex else 1)
        idx = rng.choice(len(tri), size=m, p=prob)
        r1, r2 = rng.random(m), rng.random(m)
        s = np.sqrt(r1)
        w = np.stack([1 - s, s * (1 - r2), s * r2], 1)
        ok = np.ones(m, bool)
        for i, t in tex.items():
            sel = np.flatnonzero(part[idx] == i)
            uv = np.einsum("nk,nkc->nc", w[sel], face_uv[idx[sel]])
            ok[sel] = _bilinear_flat(t, uv)[:, 0] >= min_alpha
        idx_all.append(idx[ok])
        w_all.append(w[ok])
        kept += int(ok.sum())
    idx, w = np.concatenate(idx_all)[:n], np.concatenate(w_all)[:n]
    pts = np.einsum("nk,nkc->nc", w, tri[idx])
    nrm = cross[idx] / np.maximum(np.linalg.norm(cross[idx], axis=1, keepdims=True), 1e-12)
    return pts, nrm, part[idx]


def visible_points(pts: np.ndarray, views: list[ViewRecord], tol: float = 0.002) -> np.ndarray:
    """Index of the first view that sees each point (depth test against its depth map), -1 if none."""
    seen = np.full(len(pts), -1)
    for i, v in enumerate(views):
        uv, z = v.camera.project(pts)
        H, W = v.output.depth.shape
        col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        inside = (col >= 0) & (col < W) & (row >= 0) & (row < H) & (z > 0)
        d = np.zeros(len(pts))
        d[inside] = v.output.depth[row[inside], col[inside]]
        ok = inside & (d > 0) & (np.abs(d - z) < tol) & (seen < 0)
        seen[ok] = i
    return seen


def in_all_frames(pts: np.ndarray, views: list[ViewRecord]) -> np.ndarray:
    """Points that project inside every view's image (in front of its camera)."""
    ok = np.ones(len(pts), bool)
    for v in views:
        uv, z = v.camera.project(pts)
        H, W = v.output.depth.shape
        ok &= (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    return ok


def _seen(pts: np.ndarray, targets: list[ViewRecord]) -> np.ndarray:
    seen = visible_points(pts, targets)
    seen[~in_all_frames(pts, targets)] = -1  # the shoulders leave the frame differently at each pitch
    return seen


def render_sample(asset: HeadAsset, cfg: "RenderConfig", seed: int) -> dict[str, Any]:
    """Inputs, targets and GT points of one head, all with one lighting (drawn per head from
    ``cfg.lighting`` on a stream of its own, so cameras and GT points do not depend on it); the
    lighting is returned (``Lighting.to_dict``) for the sample's metadata."""
    rng = np.random.default_rng(seed)
    light = Lighting.sample(np.random.default_rng([seed, 1]), cfg.lighting, shadows=cfg.shadows)
    r = HeadRenderer(asset)
    ss = cfg.supersample
    views = []
    for _ in range(cfg.n_inputs):
        cam, info = sample_input_camera(rng, cfg.input_res, cfg.input_yaw, (-cfg.input_pitch_down, cfg.input_pitch),
                                        cfg.input_roll, cfg.focal_mm, cfg.distance_jitter)
        views.append(ViewRecord("input", cam, r.render(cam, light, ss), info["yaw"], info["pitch"], info))
    for cam, yaw, pitch in target_rig(cfg.n_targets, cfg.target_res, cfg.target_pitch):
        views.append(ViewRecord("target", cam, r.render(cam, light, ss), yaw, pitch, {}))
    # GT points: oversample the surface, keep what the dense rig sees (the "visible head surface") inside
    # every target's frame
    n = cfg.gt_points
    pts, nrm, part = sample_surface(asset, n * 3, rng)
    targets = [v for v in views if v.role == "target"]
    seen = _seen(pts, targets)
    for _ in range(4):  # shoulders and a long torso are mostly out of frame: draw more until n are seen
        if (seen >= 0).sum() >= n:
            break
        more = max(n, int((n - (seen >= 0).sum()) * len(seen) / max((seen >= 0).sum(), 1) * 1.3))
        p2, n2, q2 = sample_surface(asset, more, rng)
        pts, nrm, part = np.concatenate([pts, p2]), np.concatenate([nrm, n2]), np.concatenate([part, q2])
        seen = np.concatenate([seen, _seen(p2, targets)])
    keep = np.flatnonzero(seen >= 0)[:n]
    # orient normals towards the camera that saw the point (part windings vary)
    centres = np.stack([v.camera.center for v in targets])[seen[keep]]
    flip = np.einsum("ij,ij->i", nrm[keep], centres - pts[keep]) < 0
    nrm[keep[flip]] *= -1
    points = np.concatenate([pts[keep], nrm[keep]], 1).astype(np.float32)
    return {"views": views, "points": points, "point_parts": part[keep].astype(np.int16), "lighting": light.to_dict()}
