"""Pure-torch reference rasterizer of 3D Gaussians: the CPU fallback and the oracle for gsplat.

It follows gsplat 1.5's classic EWA path step by step so that the two agree to within float
rounding: pinhole projection with gsplat's clamped Jacobian, a 0.3 px^2 low-pass (``eps2d``),
radii from the opacity-aware extent (at most 3.33 sigma), 16 px tiles, depth-sorted front-to-back
compositing with alpha = min(0.999, o * exp(-sigma)), alpha < 1/255 skipped, and a pixel stopping
before the Gaussian that would bring its transmittance to 1e-4 or below. ``antialiased=True`` is
gsplat's antialiased mode (Mip-Splatting's 2D filter): each opacity is multiplied by
sqrt(det(cov2d) / det(cov2d + 0.3 I)), so the low-pass widens a sub-pixel Gaussian without
brightening it; the compensated opacity also sets validity and the extent. It is differentiable
(autograd through every step); it loops over tiles in Python, so it suits tests and small CPU runs.
"""
from __future__ import annotations

import math

import torch

from .gaussians import SH_C0, SH_C1, SH_C2, SH_C3, covariance

ALPHA_THRESHOLD = 1.0 / 255.0
TILE = 16


def eval_sh(degree: int, sh: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Evaluate real SH (3DGS basis and sign convention) of ``degree`` <= 3: sh (N, K, 3), dirs (N, 3)."""
    d = torch.nn.functional.normalize(dirs, dim=-1)
    x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
    out = SH_C0 * sh[:, 0]
    if degree >= 1:
        out = out - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out = (out + SH_C2[0] * xy * sh[:, 4] + SH_C2[1] * yz * sh[:, 5] + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6]
               + SH_C2[3] * xz * sh[:, 7] + SH_C2[4] * (xx - yy) * sh[:, 8])
    if degree >= 3:
        out = (out + SH_C3[0] * y * (3 * xx - yy) * sh[:, 9] + SH_C3[1] * xy * z * sh[:, 10]
               + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11] + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
               + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13] + SH_C3[5] * z * (xx - yy) * sh[:, 14]
               + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15])
    return out


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
            w2c: torch.Tensor, K: torch.Tensor, width: int, height: int, eps2d: float = 0.3, near: float = 0.01,
            far: float = 1e10, antialiased: bool = False) -> dict[str, torch.Tensor]:
    """EWA projection of one camera's Gaussians: 2D means, conics, depths, radii, validity, and the
    opacities to composite with (compensated for the low-pass when ``antialiased``)."""
    R, t = w2c[:3, :3], w2c[:3, 3]
    mc = means @ R.T + t
    x, y, z = mc.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    zs = z.clamp_min(1e-6)
    tx = zs * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x / zs))
    ty = zs * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y / zs))
    zero = torch.zeros_like(zs)
    J = torch.stack([torch.stack([fx / zs, zero, -fx * tx / zs**2], -1),
                     torch.stack([zero, fy / zs, -fy * ty / zs**2], -1)], -2)  # (N, 2, 3)
    cov_c = R @ covariance(quats, scales) @ R.T
    cov2d = J @ cov_c @ J.transpose(-1, -2)
    det_orig = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    cov2d = cov2d + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = a * c - b * b
    if antialiased:  # det_orig / det <= 1; clamped at 0 like gsplat (a degenerate Gaussian vanishes)
        ratio = det_orig / torch.where(det > 0, det, torch.ones_like(det))
        opacities = opacities * torch.sqrt(ratio.clamp_min(0.0) + 1e-20) * (ratio > 0)
    mean2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    valid = (z >= near) & (z <= far) & (det > 0) & (opacities >= ALPHA_THRESHOLD)
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conic = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)
    with torch.no_grad():
        extend = torch.clamp(torch.sqrt(2.0 * torch.log(opacities.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)), max=3.33)
        rx = torch.ceil(extend * a.clamp_min(0).sqrt())
        ry = torch.ceil(extend * c.clamp_min(0).sqrt())
        valid &= (rx > 0) | (ry > 0)
        valid &= ~((mean2d[:, 0] + rx <= 0) | (mean2d[:, 0] - rx >= width) | (mean2d[:, 1] + ry <= 0)
                   | (mean2d[:, 1] - ry >= height))
    return {"mean2d": mean2d, "conic": conic, "depth": z, "radii": torch.stack([rx, ry], -1), "valid": valid,
            "opacities": opacities}


def rasterize(proj: dict[str, torch.Tensor], opacities: torch.Tensor, colors: torch.Tensor, width: int, height: int,
              background: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite projected Gaussians. Returns (colour (H, W, C), alpha (H, W), expected depth (H, W))."""
    dev, dt = colors.device, colors.dtype
    idx = torch.nonzero(proj["valid"]).squeeze(-1)
    order = idx[torch.argsort(proj["depth"][idx], stable=True)]
    m2, con, dep = proj["mean2d"][order], proj["conic"][order], proj["depth"][order]
    op, col, rad = opacities[order], colors[order], proj["radii"][order]
    C = colors.shape[-1]
    out_c = torch.zeros(height, width, C, dtype=dt, device=dev)
    out_a = torch.zeros(height, width, dtype=dt, device=dev)
    out_d = torch.zeros(height, width, dtype=dt, device=dev)
    with torch.no_grad():  # gsplat's tile intersection: [floor((m - r) / 16), ceil((m + r) / 16))
        tmin_x = torch.floor((m2[:, 0] - rad[:, 0]) / TILE).clamp(0)
        tmax_x = torch.ceil((m2[:, 0] + rad[:, 0]) / TILE)
        tmin_y = torch.floor((m2[:, 1] - rad[:, 1]) / TILE).clamp(0)
        tmax_y = torch.ceil((m2[:, 1] + rad[:, 1]) / TILE)
    tiles_x, tiles_y = math.ceil(width / TILE), math.ceil(height / TILE)
    rows_c, rows_a, rows_d = [], [], []
    for ty in range(tiles_y):
        y0, y1 = ty * TILE, min(height, (ty + 1) * TILE)
        tile_c, tile_a, tile_d = [], [], []
        for tx in range(tiles_x):
            x0, x1 = tx * TILE, min(width, (tx + 1) * TILE)
            hit = (tmin_x <= tx) & (tx < tmax_x) & (tmin_y <= ty) & (ty < tmax_y)
            g = torch.nonzero(hit).squeeze(-1)
            if len(g) == 0:
                tile_c.append(torch.zeros(y1 - y0, x1 - x0, C, dtype=dt, device=dev))
                tile_a.append(torch.zeros(y1 - y0, x1 - x0, dtype=dt, device=dev))
                tile_d.append(torch.zeros(y1 - y0, x1 - x0, dtype=dt, device=dev))
                continue
            py, px = torch.meshgrid(torch.arange(y0, y1, device=dev, dtype=dt) + 0.5,
                                    torch.arange(x0, x1, device=dev, dtype=dt) + 0.5, indexing="ij")
            dx = m2[g, 0][None] - px.reshape(-1, 1)  # (P, G)
            dy = m2[g, 1][None] - py.reshape(-1, 1)
            sigma = 0.5 * (con[g, 0] * dx * dx + con[g, 2] * dy * dy) + con[g, 1] * dx * dy
            alpha = torch.clamp(op[g][None] * torch.exp(-sigma), max=0.999)
            alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
            T_incl = torch.cumprod(1 - alpha, dim=1)
            T_excl = torch.cat([torch.ones_like(T_incl[:, :1]), T_incl[:, :-1]], 1)
            w = torch.where(T_incl > 1e-4, alpha * T_excl, torch.zeros_like(alpha))  # stop before T <= 1e-4
            P = (y1 - y0, x1 - x0)
            tile_c.append((w @ col[g]).reshape(*P, C))
            acc = w.sum(1)
            tile_a.append(acc.reshape(P))
            tile_d.append(((w @ dep[g]) / acc.clamp_min(1e-10)).reshape(P))
        rows_c.append(torch.cat(tile_c, 1))
        rows_a.append(torch.cat(tile_a, 1))
        rows_d.append(torch.cat(tile_d, 1))
    out_c, out_a, out_d = torch.cat(rows_c, 0), torch.cat(rows_a, 0), torch.cat(rows_d, 0)
    if background is not None:
        out_c = out_c + (1 - out_a)[..., None] * background
    return out_c, out_a, out_d
