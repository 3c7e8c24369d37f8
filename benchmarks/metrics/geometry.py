"""Geometry against GT surface points (metres in, millimetres out).

v1 (below, still used by ``benchmarks.run``):

* Predicted surface: centres of Gaussians with opacity > 0.5 (``gaussian_points``), or a TSDF
  fusion of rendered depth with open3d (``tsdf_mesh``, also a mesh export).
* Chamfer-L1: mean of accuracy (pred -> GT) and completeness (GT -> pred) nearest distances, mm.
* F-score at 2.5 mm and 5 mm: harmonic mean of precision and recall at the threshold.
* Normal consistency: mean |n_pred . n_gt| over nearest neighbours, both directions. Gaussian
  normals are their shortest axes; mesh normals are vertex normals.

v2 (``geometry_v2`` and its parts; card: ``card_v2()``): rendered expected depth and alpha against the
shards' GT depth and mask maps per target view: depth error (mm) and alpha IoU, Chamfer-L1 and F-score
at 5 / 10 mm on the back-projected visible surface, normal consistency of rendered-depth normals vs GT
normal maps.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from recon.gaussians import Gaussians, quat_to_rotmat
from recon.mesh import mesh_points, tsdf_mesh  # noqa: F401  (moved to recon: recon.infer uses it)

CARD = {"predicted_surface": "Gaussian centres with opacity > 0.5 (normals: shortest axis)",
        "gt": "visible-surface points with normals from the shard (points.npy): samples of the surface some target "
              "view's depth map records, anywhere in any target's frame (anyhead.render.views.render_sample); predicted "
              "centres outside every target's frame should be cropped before comparing (crop_to_frames)", "units": "mm",
        "chamfer": "L1: (mean acc + mean comp) / 2", "fscore_thresholds_mm": [2.5, 5.0],
        "normal_consistency": "mean |cos| of nearest-neighbour normals, both directions"}


def gaussian_points(g: Gaussians, min_opacity: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Centres and shortest-axis normals (N, 3) of one unbatched Gaussian set."""
    keep = g.opacities > min_opacity
    R = quat_to_rotmat(g.quats[keep])
    axis = torch.argmin(g.log_scales[keep], dim=-1)
    n = torch.gather(R, 2, axis[:, None, None].expand(-1, 3, 1))[..., 0]
    return g.means[keep].detach().cpu().numpy().astype(np.float64), n.detach().cpu().numpy().astype(np.float64)


def crop_to_frames(pts: np.ndarray, w2cs: object, Ks: object, size: tuple[int, int]) -> np.ndarray:
    """Mask (N,) of points (N, 3) that project inside at least one view's image (W, H) = ``size`` in front of its
    camera: the domain of the shards' GT points, for predicted points before ``geometry_metrics``."""
    w2cs, Ks = _stack(w2cs, (4, 4)), _stack(Ks, (3, 3))
    W, H = size
    ok = np.zeros(len(pts), bool)
    for w2c, K in zip(w2cs, Ks):
        pc = np.asarray(pts, np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
        z = pc[:, 2]
        uv = (pc @ K.T)[:, :2] / np.where(z > 0, z, 1.0)[:, None]
        ok |= (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    return ok


def geometry_metrics(pred: np.ndarray, pred_n: np.ndarray, gt: np.ndarray, gt_n: np.ndarray,
                     thresholds_mm: tuple[float, ...] = (2.5, 5.0)) -> dict[str, float]:
    if len(pred) == 0:
        return {"chamfer_mm": float("nan"), **{f"fscore_{t}mm": 0.0 for t in thresholds_mm}, "normal_consistency": float("nan"),
                "n_pred_points": 0}
    d_acc, i_acc = cKDTree(gt).query(pred)
    d_comp, i_comp = cKDTree(pred).query(gt)
    d_acc, d_comp = d_acc * 1000, d_comp * 1000
    out = {"chamfer_mm": float((d_acc.mean() + d_comp.mean()) / 2), "n_pred_points": int(len(pred))}
    for t in thresholds_mm:
        p, r = (d_acc < t).mean(), (d_comp < t).mean()
        out[f"fscore_{t}mm"] = float(2 * p * r / (p + r)) if p + r > 0 else 0.0
    nc1 = np.abs(np.einsum("ij,ij->i", pred_n, gt_n[i_acc]))
    nc2 = np.abs(np.einsum("ij,ij->i", gt_n, pred_n[i_comp]))
    out["normal_consistency"] = float((nc1.mean() + nc2.mean()) / 2)
    return out


# ------------------------------------------------------------------ v2: rendered depth against GT maps
#
# v1 above compares all Gaussian centres with GT points seen by the target cameras, so even a perfect
# surface sample scores a few millimetres and interior centres are punished. v2 measures what the target
# cameras see: each method's rendered expected depth and alpha against the shards' GT depth and masks,
# view by view, with the same pixels on both sides, so a renderer that returns the ground truth scores
# exactly 0 mm / IoU 1 / F-score 1.

GEOMETRY_V2_THRESHOLDS_MM: tuple[float, ...] = (5.0, 10.0)


def card_v2(thresholds_mm: tuple[float, ...] = GEOMETRY_V2_THRESHOLDS_MM, alpha_threshold: float = 0.5,
            max_jump_m: float = 0.01, pixel_stride: int = 1) -> dict[str, object]:
    """The v2 geometry card with the parameters actually used."""
    return {
        "units": "mm (depth, Chamfer), degrees (normals)",
        "coverage": f"a pixel is covered by the GT where GT mask > {alpha_threshold} and GT depth > 0, by the "
                    f"prediction where rendered alpha > {alpha_threshold}",
        "depth_error": "mean (and median) |rendered expected camera-z depth - GT depth| over pixels both cover, per view",
        "alpha_iou": f"IoU of rendered alpha > {alpha_threshold} and GT mask > {alpha_threshold}, per view",
        "domain": "the surface the target views show: GT side, pixels the GT covers; predicted side, pixels the "
                  "prediction covers; the same target cameras and pixel grid on both sides, all views pooled, no 3D crop. "
                  "The shards' points.npy samples the same domain (the surface some target's depth map records, anywhere "
                  "in any target's frame), so Chamfer against it measures the same thing",
        "points": "pixel centres of covered pixels back-projected with their depth (visible surface), all target "
                  "views pooled; GT points the same from GT depth (pixel-aligned: the same weighting on both sides)"
                  + (f"; every {pixel_stride}th pixel in u and v, the same pixels on both sides" if pixel_stride > 1
                     else ""),
        "chamfer": "L1: (mean pred->GT nearest distance + mean GT->pred nearest distance) / 2",
        "fscore_thresholds_mm": list(thresholds_mm),
        "fscore": "harmonic mean of precision (pred points within t of GT) and recall (GT points within t of pred); "
                  "thresholds above the model's anchor spacing (~4 mm)",
        "normals": f"rendered-depth normals (cross product of central differences of back-projected points; pixels "
                   f"whose 4 neighbours are covered and within {max_jump_m * 1000:g} mm in depth) vs GT world normal "
                   "maps, both turned towards the camera; mean angle (degrees) and mean cosine over pixels both cover",
        "aggregation": "per view, then mean over a head's views; NaN where a view has no covered pixel",
    }


def as_views(x: object) -> np.ndarray:
    """(V, H, W) float64 from numpy/torch maps shaped (H, W), (V, H, W) or (V, 1, H, W)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected maps (V, H, W) or (V, 1, H, W), got shape {a.shape}")
    return a


def _stack(x: object, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1, *shape)


def depth_error_mm(pred_depth: object, pred_alpha: object, gt_depth: object, gt_mask: object,
                   alpha_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per-view depth error where both cover.

    Args: maps (V, H, W) or (V, 1, H, W), numpy or torch; depths are camera z in metres (0 = empty).
    Returns: ``depth_mae_mm`` (V,), ``depth_median_mm`` (V,) (NaN where no pixel is covered by both),
    ``depth_coverage`` (V,): fraction of GT-covered pixels that the prediction covers too."""
    pd_, pa, gd, gm = as_views(pred_depth), as_views(pred_alpha), as_views(gt_depth), as_views(gt_mask)
    gt_cov = (gm > alpha_threshold) & (gd > 0)
    both = gt_cov & (pa > alpha_threshold)
    err = np.abs(pd_ - gd) * 1000.0
    mae, med, cov = [], [], []
    for i in range(len(gd)):
        e = err[i][both[i]]
        mae.append(float(e.mean()) if e.size else float("nan"))
        med.append(float(np.median(e)) if e.size else float("nan"))
        cov.append(float(both[i].sum() / gt_cov[i].sum()) if gt_cov[i].any() else float("nan"))
    return {"depth_mae_mm": np.array(mae), "depth_median_mm": np.array(med), "depth_coverage": np.array(cov)}


def alpha_iou(pred_alpha: object, gt_mask: object, alpha_threshold: float = 0.5) -> np.ndarray:
    """(V,) IoU of the binarised rendered alpha and GT mask (1.0 where both are empty)."""
    p, g = as_views(pred_alpha) > alpha_threshold, as_views(gt_mask) > alpha_threshold
    inter, union = (p & g).sum((1, 2)), (p | g).sum((1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def camera_points(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W, 3) camera-frame points of every pixel centre at its depth (camera z)."""
    H, W = depth.shape
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    Kinv = np.linalg.inv(np.asarray(K, dtype=np.float64))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ Kinv.T  # z = 1
    return rays * depth[..., None]


def backproject_depth(depth: np.ndarray, w2c: np.ndarray, K: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) world points of the ``valid`` (H, W) pixels (default: depth > 0) of a camera-z depth map (H, W)."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = depth > 0 if valid is None else np.asarray(valid, bool) & (depth > 0)
    pc = camera_points(depth, K)[valid]
    w2c = np.asarray(w2c, dtype=np.float64)
    R, t = w2c[:3, :3], w2c[:3, 3]
    return (pc - t) @ R  # R^T (p - t)


def visible_points(depths: object, valid: object, w2cs: object, Ks: object, pixel_stride: int = 1) -> np.ndarray:
    """(N, 3) world points pooled over views: depths, valid (V, H, W); w2cs (V, 4, 4); Ks (V, 3, 3).
    ``pixel_stride`` s keeps every s-th pixel in u and v (a fixed grid: the same pixels for any method)."""
    d, ok = as_views(depths), as_views(valid) > 0.5
    if pixel_stride > 1:
        grid = np.zeros(ok.shape[1:], bool)
        grid[::pixel_stride, ::pixel_stride] = True
        ok = ok & grid
    w2cs, Ks = _stack(w2cs, (4, 4)), _stack(Ks, (3, 3))
    pts = [backproject_depth(d[i], w2cs[i], Ks[i], ok[i]) for i in range(len(d))]
    return np.concatenate(pts, 0) if pts else np.zeros((0, 3))


def depth_normals(depth: np.ndarray, w2c: np.ndarray, K: np.ndarray, valid: np.ndarray,
                  max_jump_m: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """World normals (H, W, 3) of a depth map (H, W) from central differences, turned towards the camera,
    and where they are defined (H, W): the pixel and its 4 neighbours valid, neighbours within ``max_jump_m``
    in depth (no differences across silhouettes or occlusion edges)."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.asarray(valid, bool) & (depth > 0)
    P = camera_points(depth, K)
    n = np.zeros_like(P)
    ok = np.zeros(depth.shape, bool)
    c = (slice(1, -1), slice(1, -1))
    dx = P[1:-1, 2:] - P[1:-1, :-2]
    dy = P[2:, 1:-1] - P[:-2, 1:-1]
    nc = np.cross(dx, dy)
    z = depth
    jump = np.maximum.reduce([np.abs(z[1:-1, 2:] - z[c]), np.abs(z[1:-1, :-2] - z[c]), np.abs(z[2:, 1:-1] - z[c]),
                              np.abs(z[:-2, 1:-1] - z[c])])
    ok[c] = valid[c] & valid[1:-1, 2:] & valid[1:-1, :-2] & valid[2:, 1:-1] & valid[:-2, 1:-1] & (jump < max_jump_m)
    norm = np.linalg.norm(nc, axis=-1, keepdims=True)
    nc = nc / np.maximum(norm, 1e-20)
    nc = np.where((nc * P[c]).sum(-1, keepdims=True) > 0, -nc, nc)  # towards the camera (at the origin)
    ok[c] &= norm[..., 0] > 0
    n[c] = nc @ np.asarray(w2c, dtype=np.float64)[:3, :3]  # camera -> world: R^T n
    return n, ok


def normal_consistency_maps(pred_depth: object, pred_alpha: object, gt_normal: object, gt_mask: object, w2cs: object,
                            Ks: object, alpha_threshold: float = 0.5, max_jump_m: float = 0.01) -> dict[str, np.ndarray]:
    """Per-view agreement of rendered-depth normals with GT world normal maps (V, H, W, 3; decoded from
    ``.normal.png``; empty pixels decode to (-1, -1, -1)). Both are turned towards the camera.

    Returns ``normal_angle_deg`` (V,) mean angle, ``normal_cos`` (V,) mean cosine, ``normal_coverage`` (V,)
    fraction of GT-covered pixels where both normals are defined."""
    pdp, pa, gm = as_views(pred_depth), as_views(pred_alpha), as_views(gt_mask)
    gn = np.asarray(gt_normal.detach().cpu().numpy() if isinstance(gt_normal, torch.Tensor) else gt_normal, np.float64)
    gn = gn.reshape(len(gm), *gm.shape[1:], 3)
    w2cs, Ks = _stack(w2cs, (4, 4)), _stack(Ks, (3, 3))
    ang, cos, cov = [], [], []
    for i in range(len(gm)):
        n_p, ok = depth_normals(pdp[i], w2cs[i], Ks[i], pa[i] > alpha_threshold, max_jump_m)
        g = gn[i]
        gnorm = np.linalg.norm(g, axis=-1)
        g_ok = (gm[i] > alpha_threshold) & (np.abs(gnorm - 1) < 0.15)  # 8-bit codes; empty = (-1,-1,-1), norm 1.73
        g = g / np.maximum(gnorm, 1e-12)[..., None]
        # turn GT normals towards the camera too: view direction from the pixel's ray
        H, W = gm[i].shape
        ray_c = camera_points(np.ones((H, W)), Ks[i])
        ray_w = ray_c @ w2cs[i][:3, :3]
        g = np.where((g * ray_w).sum(-1, keepdims=True) > 0, -g, g)
        both = ok & g_ok
        c = np.clip((n_p[both] * g[both]).sum(-1), -1.0, 1.0)
        ang.append(float(np.degrees(np.arccos(c)).mean()) if c.size else float("nan"))
        cos.append(float(c.mean()) if c.size else float("nan"))
        cov.append(float(both.sum() / g_ok.sum()) if g_ok.any() else float("nan"))
    return {"normal_angle_deg": np.array(ang), "normal_cos": np.array(cos), "normal_coverage": np.array(cov)}


def chamfer_fscore(pred: np.ndarray, gt: np.ndarray, thresholds_mm: tuple[float, ...] = GEOMETRY_V2_THRESHOLDS_MM
                   ) -> dict[str, float]:
    """Chamfer-L1 (mm) and F-scores of point sets pred (N, 3) and gt (M, 3) in metres."""
    if len(pred) == 0 or len(gt) == 0:
        return {"chamfer_mm": float("nan"), "accuracy_mm": float("nan"), "completeness_mm": float("nan"),
                **{f"fscore_{t:g}mm": 0.0 for t in thresholds_mm}, "n_pred_points": len(pred)}
    d_acc = cKDTree(gt).query(pred)[0] * 1000.0
    d_comp = cKDTree(pred).query(gt)[0] * 1000.0
    out = {"chamfer_mm": float((d_acc.mean() + d_comp.mean()) / 2), "accuracy_mm": float(d_acc.mean()),
           "completeness_mm": float(d_comp.mean()), "n_pred_points": len(pred)}
    for t in thresholds_mm:
        p, r = float((d_acc < t).mean()), float((d_comp < t).mean())
        out[f"fscore_{t:g}mm"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return out


def geometry_v2(pred_depth: object, pred_alpha: object, gt_depth: object, gt_mask: object, w2cs: object, Ks: object,
                gt_normal: object | None = None, thresholds_mm: tuple[float, ...] = GEOMETRY_V2_THRESHOLDS_MM,
                alpha_threshold: float = 0.5, max_jump_m: float = 0.01, pixel_stride: int = 1
                ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """All v2 geometry of one head from its rendered target views.

    Args:
        pred_depth, pred_alpha: ``recon.render.render`` outputs ``depth``/``alpha`` (V, 1, H, W) (or (V, H, W)).
        gt_depth, gt_mask: the decoded sample's target ``depth``/``mask`` maps (V, H, W).
        w2cs (V, 4, 4), Ks (V, 3, 3): the target cameras; gt_normal (V, H, W, 3) or None (no normal metrics).
        pixel_stride: back-project every s-th pixel in u and v only (Chamfer cost; the same pixels on both sides).
    Returns:
        (per-view arrays (V,): depth_mae_mm, depth_median_mm, depth_coverage, alpha_iou[, normal_*],
         per-head numbers: their means over views plus chamfer_mm, accuracy_mm, completeness_mm, fscore_<t>mm).
    """
    per_view: dict[str, np.ndarray] = {**depth_error_mm(pred_depth, pred_alpha, gt_depth, gt_mask, alpha_threshold),
                                       "alpha_iou": alpha_iou(pred_alpha, gt_mask, alpha_threshold)}
    if gt_normal is not None:
        per_view.update(normal_consistency_maps(pred_depth, pred_alpha, gt_normal, gt_mask, w2cs, Ks, alpha_threshold,
                                                max_jump_m))
    head = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in per_view.items()}
    gd, gm = as_views(gt_depth), as_views(gt_mask)
    pred = visible_points(pred_depth, as_views(pred_alpha) > alpha_threshold, w2cs, Ks, pixel_stride)
    gt = visible_points(gd, (gm > alpha_threshold) & (gd > 0), w2cs, Ks, pixel_stride)
    head.update(chamfer_fscore(pred, gt, thresholds_mm))
    return per_view, head
