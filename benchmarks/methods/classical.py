"""Methods without a trained network: the projected template (lower bound) and per-subject optimisation."""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anyhead.cameras import camera_center
from anyhead.samples import Sample
from recon.any3davatar.scaffold import anchor_spacing, template_scaffold
from recon.gaussians import Gaussians
from recon.losses import ssim
from recon.render import render

from .base import Method, Reconstruction


@functools.lru_cache(maxsize=4)
def _scaffold(ict_model: str, n_anchors: int) -> tuple[np.ndarray, np.ndarray]:
    from anyhead.ict import ICTModel

    return template_scaffold(ICTModel.load(ict_model), n_anchors)


class TemplateMethod(Method):
    """The Any3DAvatar scaffold (the profile's anchors and input size), coloured from the input."""

    def scaffold_gaussians(self, sample: Sample) -> Gaussians:
        mcfg = self.cfg.any3davatar
        anchors, normals = _scaffold(str(self.cfg.paths.ict_model), mcfg.n_anchors)
        a = torch.from_numpy(anchors).to(self.device)
        n = torch.from_numpy(normals).to(self.device)
        size = mcfg.image_size
        image, w2c, K = self.input_tensors(sample, size)
        o = camera_center(w2c[0])

        def look(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pc = points @ w2c[0, :3, :3].T + w2c[0, :3, 3]
            uv = pc @ K[0].T
            uv = uv[:, :2] / uv[:, 2:3].clamp_min(1e-6)
            grid = (uv / size * 2 - 1)[None, :, None]
            col = F.grid_sample(image, grid, align_corners=False)[0, :, :, 0].T
            inside = (uv >= 0).all(1) & (uv < size).all(1)
            return col, inside

        col, inside = look(a)
        facing = ((o - a) * n).sum(1) > 0
        visible = facing & inside
        mirror = a * torch.tensor([-1.0, 1.0, 1.0], device=self.device)
        col_m, inside_m = look(mirror)
        facing_m = ((o - mirror) * n * torch.tensor([-1.0, 1.0, 1.0], device=self.device)).sum(1) > 0
        fallback = col[visible].median(0).values if visible.any() else torch.full((3,), 0.5, device=self.device)
        colors = torch.where(visible[:, None], col, torch.where((facing_m & inside_m)[:, None], col_m, fallback))
        s = float(anchor_spacing(a))
        N = len(a)
        return Gaussians(a, torch.tensor([1.0, 0, 0, 0], device=self.device).expand(N, 4).clone(),
                         torch.full((N, 3), math.log(0.7 * s), device=self.device),
                         torch.full((N,), 3.0, device=self.device), colors.clamp(0, 1))

    def reconstruct(self, sample: Sample) -> Reconstruction:
        return Reconstruction(self.scaffold_gaussians(sample))


class OptimizeMethod(TemplateMethod):
    """Per-subject optimisation of the template's Gaussians against the input view."""

    def reconstruct(self, sample: Sample) -> Reconstruction:
        g0 = self.scaffold_gaussians(sample)
        iters = self.cfg.benchmark.optimize_iters
        size = self.cfg.any3davatar.image_size
        image, w2c, K = self.input_tensors(sample, size)
        inp = next(v for v in sample.views if v.role == "input")
        mask = torch.from_numpy(np.array(inp.mask))[None, None].float().to(self.device)
        mask = F.interpolate(mask, size=(size, size), mode="area")
        params = {"offset": torch.zeros_like(g0.means, requires_grad=True),
                  "log_scales": g0.log_scales.clone().requires_grad_(True),
                  "opacity": g0.opacity_logits.clone().requires_grad_(True),
                  "colors": torch.logit(g0.colors.clamp(0.02, 0.98)).requires_grad_(True)}
        opt = torch.optim.Adam(params.values(), lr=self.cfg.benchmark.optimize_lr)
        for _ in range(iters):
            g = Gaussians(g0.means + 0.02 * torch.tanh(params["offset"]), g0.quats, params["log_scales"], params["opacity"],
                          torch.sigmoid(params["colors"]))
            out = render(g, w2c[0], K[0], size, size)
            rgb, alpha = out["rgb"][None], out["alpha"][None]
            loss = (rgb - image).abs().mean() + 0.2 * (1 - ssim(rgb, image, crop=False).mean()) + 0.5 * (alpha - mask).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            g = Gaussians(g0.means + 0.02 * torch.tanh(params["offset"]), g0.quats, params["log_scales"], params["opacity"],
                          torch.sigmoid(params["colors"]))
        return Reconstruction(g.detach())

    def metadata(self) -> dict[str, Any]:
        md = super().metadata()
        md["iterations"] = self.cfg.benchmark.optimize_iters
        md["lr"] = self.cfg.benchmark.optimize_lr
        return md
