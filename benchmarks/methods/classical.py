"""Methods without a trained network: the projected template (a lower bound) and a single-view fit
(per-subject optimisation of the template's Gaussians against the input view)."""
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
from recon.losses import ReconLoss
from recon.render import render

from .base import Method


@functools.lru_cache(maxsize=4)
def _scaffold(ict_model: str, n_anchors: int) -> tuple[np.ndarray, np.ndarray]:
    from anyhead.ict import ICTModel

    return template_scaffold(ICTModel.load(ict_model), n_anchors)


class TemplateMethod(Method):
    """The Any3DAvatar scaffold (the profile's anchors and input size), coloured from the input."""

    def prepare(self, sample: Sample) -> tuple[torch.Tensor, ...]:
        image, w2c, K = self.input_tensors(sample, self.cfg.any3davatar.image_size)
        mask = torch.from_numpy(np.array(sample.input.mask))[None, None].float().to(self.device)
        return image, w2c, K, F.interpolate(mask, size=image.shape[-2:], mode="area")

    def run(self, inputs: tuple[torch.Tensor, ...]) -> Gaussians:
        return self.scaffold_gaussians(*inputs[:3])

    def scaffold_gaussians(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> Gaussians:
        mcfg = self.cfg.any3davatar
        anchors, normals = _scaffold(str(self.cfg.paths.ict_model), mcfg.n_anchors)
        a = torch.from_numpy(anchors).to(self.device)
        n = torch.from_numpy(normals).to(self.device)
        size = image.shape[-1]
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


class SingleViewFitMethod(TemplateMethod):
    """Per-subject fit of the template's Gaussians (offsets, scales, opacities, colours) to the one input
    view with the training loss (L1 + SSIM + LPIPS + mask, the profile's weights), Adam, until the loss
    stops improving (relative change below ``fit_tol`` over 25 iterations) or ``fit_iters`` is reached."""

    WINDOW = 25

    def run(self, inputs: tuple[torch.Tensor, ...]) -> Gaussians:
        image, w2c, K, mask = inputs
        bcfg = self.cfg.benchmark
        g0 = self.scaffold_gaussians(image, w2c, K)
        size = image.shape[-1]
        loss_fn = self._loss()
        params = {"offset": torch.zeros_like(g0.means, requires_grad=True),
                  "log_scales": g0.log_scales.clone().requires_grad_(True),
                  "opacity": g0.opacity_logits.clone().requires_grad_(True),
                  "colors": torch.logit(g0.colors.clamp(0.02, 0.98)).requires_grad_(True)}
        opt = torch.optim.Adam(params.values(), lr=bcfg.fit_lr)

        def gaussians() -> Gaussians:
            return Gaussians(g0.means + 0.02 * torch.tanh(params["offset"]), g0.quats, params["log_scales"],
                             params["opacity"], torch.sigmoid(params["colors"]))

        history: list[float] = []
        self.iterations = 0
        with torch.enable_grad():
            for it in range(bcfg.fit_iters):
                out = render(gaussians(), w2c[0], K[0], size, size)
                loss, _ = loss_fn(out["rgb"][None], out["alpha"][None], image, mask)
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.iterations = it + 1
                history.append(float(loss.detach()))
                if len(history) > self.WINDOW:
                    before = history[-self.WINDOW - 1]
                    if (before - history[-1]) / max(abs(before), 1e-12) < bcfg.fit_tol:
                        break
        with torch.no_grad():
            return gaussians().detach()

    @functools.cache  # noqa: B019 (one loss per method object: LPIPS weights load once)
    def _loss(self) -> ReconLoss:
        return ReconLoss(self.cfg.train.loss).to(self.device)

    def metadata(self) -> dict[str, Any]:
        md = super().metadata()
        b = self.cfg.benchmark
        md.update(max_iterations=b.fit_iters, lr=b.fit_lr, tolerance=b.fit_tol, loss="training loss (L1, SSIM, LPIPS, mask)",
                  last_iterations=getattr(self, "iterations", None))
        return md
