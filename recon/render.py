"""One ``render()`` for 3D Gaussians: gsplat on CUDA, our torch reference rasterizer on CPU.

Both backends take the same arguments and follow the repository's camera convention (OpenCV
world-to-camera 4x4 and pixel K; see ``anyhead.cameras``) and return the same dictionary.
"""
from __future__ import annotations

from typing import Literal

import torch

from anyhead.cameras import camera_center

from . import rasterize as ref
from .gaussians import Gaussians

Backend = Literal["auto", "gsplat", "torch"]


def gsplat_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


def render(g: Gaussians, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int,
           background: torch.Tensor | None = None, backend: Backend = "auto") -> dict[str, torch.Tensor]:
    """Render a batch of Gaussian sets into a batch of cameras.

    Args:
        g: Gaussians with batch dim B (means (B, N, 3), ...), or unbatched (N, 3).
        w2c: (B, V, 4, 4), or for unbatched Gaussians (V, 4, 4) or one camera (4, 4); K: matching (..., 3, 3).
        background: (3,) colour composited behind (default white).
        backend: ``gsplat`` (CUDA), ``torch`` (reference), or ``auto`` (gsplat when on CUDA and installed).
        ``g.antialiased`` selects gsplat's antialiased mode (the reference applies the same opacity compensation).
    Returns:
        ``rgb`` (B, V, 3, H, W), ``alpha`` (B, V, 1, H, W), ``depth`` (B, V, 1, H, W) expected camera z;
        the B and V dimensions are dropped where the inputs had none.
    """
    batched = g.means.dim() == 3
    single_view = w2c.dim() == 2
    if single_view:
        w2c, K = w2c[None], K[None]
    if not batched:
        g = Gaussians(g.means[None], g.quats[None], g.log_scales[None], g.opacity_logits[None], g.colors[None], g.sh_degree,
                      g.antialiased)
        w2c, K = w2c[None], K[None]
    if background is None:
        background = torch.ones(3, device=g.means.device, dtype=g.means.dtype)
    if backend == "auto":
        backend = "gsplat" if g.means.is_cuda and gsplat_available() else "torch"
    fn = _render_gsplat if backend == "gsplat" else _render_torch
    out = fn(g, w2c, K, width, height, background)
    if not batched:
        out = {k: v[0] for k, v in out.items()}
        if single_view:
            out = {k: v[0] for k, v in out.items()}
    return out


def _render_torch(g: Gaussians, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int,
                  background: torch.Tensor) -> dict[str, torch.Tensor]:
    rgbs, alphas, depths = [], [], []
    scales, opac, quats = g.scales, g.opacities, g.unit_quats
    for b in range(g.means.shape[0]):
        rv, av, dv = [], [], []
        for v in range(w2c.shape[1]):
            cam = w2c[b, v].to(g.means.dtype)
            Kv = K[b, v].to(g.means.dtype)
            proj = ref.project(g.means[b], quats[b], scales[b], opac[b], cam, Kv, width, height, antialiased=g.antialiased)
            if g.sh_degree is None:
                colors = g.colors[b]
            else:
                campos = camera_center(cam)
                colors = torch.clamp_min(ref.eval_sh(g.sh_degree, g.colors[b], g.means[b] - campos) + 0.5, 0.0)
            c, a, d = ref.rasterize(proj, proj["opacities"], colors, width, height, background)
            rv.append(c.permute(2, 0, 1))
            av.append(a[None])
            dv.append(d[None])
        rgbs.append(torch.stack(rv))
        alphas.append(torch.stack(av))
        depths.append(torch.stack(dv))
    return {"rgb": torch.stack(rgbs), "alpha": torch.stack(alphas), "depth": torch.stack(depths)}


def _render_gsplat(g: Gaussians, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int,
                   background: torch.Tensor, per_scene: bool = False) -> dict[str, torch.Tensor]:
    """All B scenes x V cameras in one gsplat call (its leading batch dimension); ``per_scene`` loops
    over scenes instead (the earlier implementation, kept for the comparison in the device tests)."""
    from gsplat import rasterization

    B, V = w2c.shape[:2]
    if per_scene:
        outs = [_render_gsplat(g[b:b + 1], w2c[b:b + 1], K[b:b + 1], width, height, background) for b in range(B)]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    out, alpha, _ = rasterization(
        g.means, g.unit_quats, g.scales, g.opacities, g.colors.float(), w2c.float(), K.float(), width, height,
        sh_degree=g.sh_degree, backgrounds=background.float().expand(B, V, 3), render_mode="RGB+ED",
        rasterize_mode="antialiased" if g.antialiased else "classic", packed=False)  # out (B, V, H, W, 4), alpha (B, V, H, W, 1)
    return {"rgb": out[..., :3].permute(0, 1, 4, 2, 3), "alpha": alpha.permute(0, 1, 4, 2, 3),
            "depth": out[..., 3:4].permute(0, 1, 4, 2, 3)}
