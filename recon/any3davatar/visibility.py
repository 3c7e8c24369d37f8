"""Which scaffold anchors the input camera sees, and image features sampled where it does.

Visibility is a depth test against a low-resolution z-buffer of the anchors themselves (each anchor
splatted into one pixel with ``scatter_reduce(amin)``, holes closed by a 3x3 min filter), combined
with a normal-facing test. Both are batched tensor ops: no loop over anchors or views, no
rasterizer, and no gradient (visibility is a gate, not something to learn through).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mirror(x: torch.Tensor) -> torch.Tensor:
    """Points or normals (..., 3) mirrored left <-> right: x -> -x in the head frame (+y up, +z out of the
    face). Pure device ops, no host-to-device copy of a constant, so inference can be captured as a CUDA graph."""
    return torch.cat([-x[..., :1], x[..., 1:]], -1)


def project(points: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (B, M, 2) and camera depths z (B, M) of points (B, M, 3); w2c (B, 4, 4), K (B, 3, 3)."""
    pc = points @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]
    uv = pc @ K.transpose(1, 2)
    return uv[..., :2] / uv[..., 2:3].clamp_min(1e-6), pc[..., 2]


@torch.no_grad()
def anchor_zbuffer(uv: torch.Tensor, depth: torch.Tensor, size: int, res: int) -> torch.Tensor:
    """Nearest anchor depth per cell of a res x res grid over the size x size image: (B, res, res),
    +inf where no anchor lands. uv (B, M, 2) pixels, depth (B, M)."""
    B = uv.shape[0]
    cell = (uv * (res / size)).floor().long()
    inside = (cell >= 0).all(-1) & (cell < res).all(-1) & (depth > 0)
    idx = torch.where(inside, cell[..., 1] * res + cell[..., 0], torch.full_like(cell[..., 0], res * res))  # spare slot
    z = torch.full((B, res * res + 1), float("inf"), device=uv.device, dtype=depth.dtype)
    z = z.scatter_reduce(1, idx, depth, reduce="amin")[:, :-1].view(B, 1, res, res)
    # anchors are points: a back anchor can fall into a cell no front anchor hit; a 3x3 min filter closes such holes
    return -F.max_pool2d(-z, 3, 1, 1)[:, 0]


@torch.no_grad()
def visible(points: torch.Tensor, normals: torch.Tensor | None, w2c: torch.Tensor, K: torch.Tensor, zbuf: torch.Tensor,
            size: int, tol: float) -> torch.Tensor:
    """(B, M) bool: inside the image, in front of the camera, and no farther behind ``zbuf`` than the
    tolerance; with normals (M, 3) or (B, M, 3) also facing the camera.

    With normals the tolerance is slope-scaled, as a shadow map's depth bias: a surface seen at angle
    theta changes depth by footprint * tan(theta) across the two z-buffer cells the min filter reaches,
    so ``tol`` + 2 * cell footprint (metres at the point's depth) * tan(theta), tan clamped at 3."""
    res = zbuf.shape[-1]
    uv, depth = project(points, w2c, K)
    cell = (uv * (res / size)).floor().long()
    inside = (cell >= 0).all(-1) & (cell < res).all(-1) & (depth > 0)
    flat = (cell[..., 1] * res + cell[..., 0]).clamp(0, res * res - 1)
    bias = torch.full_like(depth, tol)
    facing = torch.ones_like(inside)
    if normals is not None:
        cam = -torch.einsum("bji,bj->bi", w2c[:, :3, :3], w2c[:, :3, 3])  # camera centre -R^T t, (B, 3)
        view = F.normalize(cam[:, None] - points, dim=-1)
        cos = (view * normals).sum(-1)
        facing = cos > 0
        tan = (1 - cos.square()).clamp_min(0).sqrt() / cos.clamp_min(1 / 3)
        footprint = 2 * depth * (size / res) / K[:, None, 0, 0]
        bias = bias + footprint * tan.clamp(max=3.0)
    front = depth <= zbuf.flatten(1).gather(1, flat) + bias
    return inside & front & facing


def sample(feat: torch.Tensor, uv: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear features (B, M, C) of feat (B, C, h, w) at pixel coordinates uv (B, M, 2) of a size x size image."""
    grid = (uv.float() / size * 2 - 1)[:, :, None, :]  # align_corners=False: pixel centres at (i + 0.5) / size
    # fp32 even under autocast: bf16 grid coordinates would be off by up to half a pixel at 256 px
    return F.grid_sample(feat.float(), grid, align_corners=False)[..., 0].transpose(1, 2)
