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

# Parts left out of surface samples by default: inside the head, or flyaway hair (sub-pixel wisps that a 64-256 px
# view's few rays per pixel mostly miss, so no depth map or mask reliably contains them).
INTERIOR_PARTS = ("mouth", "hair_flyaways")
# GT points leave out only the inside of the head: a flyaway that a target's depth map does record is in its mask
# (on a long-haired 64 px head, 6% of the covered pixels), so the GT surface has it too; the depth test below keeps
# exactly the flyaway points that some target records.
GT_EXCLUDED_PARTS = ("mouth",)
# ... and every card texel, transparent ones included: a pixel's depth is that of the card where its coverage reaches
# 0.5, and the second card a ray meets closes the pixel whatever its texel alpha (anyhead.render.raycast), so any
# texel can carry a target's depth; the depth test keeps those some target records.
GT_MIN_ALPHA = 0.0
GT_POINTS_VERSION = 2  # in the render plan hash: folders rendered under the old GT rule (inside every frame) are redone
GT_OVERSAMPLE = 3  # seen candidates per GT point, thinned to an even spread (even_subset)


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


def in_frame(pts: np.ndarray, views: list[ViewRecord]) -> np.ndarray:
    """(V, N): whether each point projects inside each view's image (in front of its camera)."""
    out = np.zeros((len(views), len(pts)), bool)
    for i, v in enumerate(views):
        uv, z = v.camera.project(pts)
        H, W = v.output.depth.shape
        out[i] = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    return out


def even_subset(pts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n`` of ``pts`` spread evenly in space: one point (the first in a random order) per cell of
    the coarsest cubic grid that still has ``n`` occupied cells, then ``n`` of those cells at random. Random area
    samples leave holes (Poisson gaps); an even spread bounds the distance from any sampled surface to the set."""
    if len(pts) <= n:
        return np.arange(len(pts))
    order = rng.permutation(len(pts))
    p = pts[order] - pts.min(0)

    def firsts(h: float) -> np.ndarray:
        k = np.floor(p / h).astype(np.int64)
        return np.unique(k[:, 0] | (k[:, 1] << 21) | (k[:, 2] << 42), return_index=True)[1]

    lo, hi = 1e-4, max(float(np.ptp(pts, 0).max()), 2e-4)  # metres: cells of 0.1 mm hold one sample each; hi: one cell
    for _ in range(14):  # bisection in log space: the cell size to within 0.1%
        mid = float(np.sqrt(lo * hi))
        lo, hi = (mid, hi) if len(firsts(mid)) >= n else (lo, mid)
    cells = firsts(lo)
    return np.sort(order[rng.choice(cells, n, replace=False)])


def skin_albedo(asset: HeadAsset) -> float | None:
    """Linear albedo of the head's lighter skin: the area-weighted 90th percentile, over the ``skin`` part's faces,
    of the brightest channel of its colour (texture at the face's UV centre, or vertex colours); None without skin."""
    if "skin" not in asset.names():
        return None
    p = asset.part("skin")
    from ..appearance import srgb_to_linear

    tri = p.vertices[p.faces].astype(np.float64)
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if p.texture is not None and p.face_uv is not None:
        rgb = _bilinear_flat(p.texture[..., :3].astype(np.float32) / 255.0, p.face_uv.mean(1))
    elif p.vertex_colors is not None:
        rgb = np.asarray(p.vertex_colors, np.float64)[p.faces].mean(1)
    else:
        return None
    val = srgb_to_linear(np.clip(rgb, 0, 1)).max(1)
    order = np.argsort(val)
    cum = np.cumsum(area[order])
    return float(val[order][np.searchsorted(cum, 0.9 * cum[-1])])


def render_sample(asset: HeadAsset, cfg: "RenderConfig", seed: int) -> dict[str, Any]:
    """Inputs, targets and GT points of one head, all with one lighting (drawn per head from
    ``cfg.lighting`` on a stream of its own, so cameras and GT points do not depend on it); the
    lighting is returned (``Lighting.to_dict``) for the sample's metadata.

    GT points (``points``: xyz + normal): the surface the targets' depth maps record, i.e. area samples of every part
    but the mouth that at least one target sees (depth test), anywhere in any target's frame (a torso that only the
    low views frame counts), thinned from ``GT_OVERSAMPLE`` x ``cfg.gt_points`` such samples to an even spread."""
    rng = np.random.default_rng(seed)
    light = Lighting.sample(np.random.default_rng([seed, 1]), cfg.lighting, shadows=cfg.shadows, skin_albedo=skin_albedo(asset))
    r = HeadRenderer(asset)
    ss = cfg.supersample
    views = []
    for _ in range(cfg.n_inputs):
        cam, info = sample_input_camera(rng, cfg.input_res, cfg.input_yaw, (-cfg.input_pitch_down, cfg.input_pitch),
                                        cfg.input_roll, cfg.focal_mm, cfg.distance_jitter)
        views.append(ViewRecord("input", cam, r.render(cam, light, ss), info["yaw"], info["pitch"], info))
    for cam, yaw, pitch in target_rig(cfg.n_targets, cfg.target_res, cfg.target_pitch):
        views.append(ViewRecord("target", cam, r.render(cam, light, ss), yaw, pitch, {}))
    n = cfg.gt_points
    want = GT_OVERSAMPLE * n
    targets = [v for v in views if v.role == "target"]
    pts, nrm, part = sample_surface(asset, 2 * want, rng, GT_EXCLUDED_PARTS, GT_MIN_ALPHA)
    seen = visible_points(pts, targets)
    for _ in range(4):  # hair layers hide most of their area: draw more until enough are seen
        if (seen >= 0).sum() >= want:
            break
        more = max(n, int((want - (seen >= 0).sum()) * len(seen) / max((seen >= 0).sum(), 1) * 1.3))
        p2, n2, q2 = sample_surface(asset, more, rng, GT_EXCLUDED_PARTS, GT_MIN_ALPHA)
        pts, nrm, part = np.concatenate([pts, p2]), np.concatenate([nrm, n2]), np.concatenate([part, q2])
        seen = np.concatenate([seen, visible_points(p2, targets)])
    cand = np.flatnonzero(seen >= 0)
    keep = cand[even_subset(pts[cand], n, rng)]
    # orient normals towards the camera that saw the point (part windings vary)
    centres = np.stack([v.camera.center for v in targets])[seen[keep]]
    flip = np.einsum("ij,ij->i", nrm[keep], centres - pts[keep]) < 0
    nrm[keep[flip]] *= -1
    points = np.concatenate([pts[keep], nrm[keep]], 1).astype(np.float32)
    return {"views": views, "points": points, "point_parts": part[keep].astype(np.int16), "lighting": light.to_dict()}
