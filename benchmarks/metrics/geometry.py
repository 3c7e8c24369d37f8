"""Geometry against GT surface points (metres in, millimetres out).

* Predicted surface: centres of Gaussians with opacity > 0.5 (``gaussian_points``), or a TSDF
  fusion of rendered depth with open3d (``tsdf_mesh``, also a mesh export).
* Chamfer-L1: mean of accuracy (pred -> GT) and completeness (GT -> pred) nearest distances, mm.
* F-score at 2.5 mm and 5 mm: harmonic mean of precision and recall at the threshold.
* Normal consistency: mean |n_pred . n_gt| over nearest neighbours, both directions. Gaussian
  normals are their shortest axes; mesh normals are vertex normals.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from recon.gaussians import Gaussians, quat_to_rotmat
from recon.mesh import mesh_points, tsdf_mesh  # noqa: F401  (part of this module's API)

CARD = {"predicted_surface": "Gaussian centres with opacity > 0.5 (normals: shortest axis)",
        "gt": "visible-surface points with normals from the shard (points.npy)", "units": "mm",
        "chamfer": "L1: (mean acc + mean comp) / 2", "fscore_thresholds_mm": [2.5, 5.0],
        "normal_consistency": "mean |cos| of nearest-neighbour normals, both directions"}


def gaussian_points(g: Gaussians, min_opacity: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Centres and shortest-axis normals (N, 3) of one unbatched Gaussian set."""
    keep = g.opacities > min_opacity
    R = quat_to_rotmat(g.quats[keep])
    axis = torch.argmin(g.log_scales[keep], dim=-1)
    n = torch.gather(R, 2, axis[:, None, None].expand(-1, 3, 1))[..., 0]
    return g.means[keep].detach().cpu().numpy().astype(np.float64), n.detach().cpu().numpy().astype(np.float64)


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
