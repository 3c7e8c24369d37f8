"""Image losses and the shared SSIM.

SSIM follows Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
population covariances, data range 1; ``crop=True`` averages the map away from the 5-pixel border,
which makes it equal to ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import LossConfig

SSIM_CARD = {"window": "gaussian 11x11, sigma 1.5", "K1": 0.01, "K2": 0.03, "covariance": "population",
             "data_range": 1.0, "border": "5 px cropped (equals skimage gaussian_weights=True)"}


def _gauss_window(channels: int, size: int = 11, sigma: float = 1.5, device=None, dtype=None) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, crop: bool = True, reduce: bool = True) -> torch.Tensor:
    """SSIM of image batches (B, C, H, W) in [0, 1]; per-image means (B,) or the map."""
    C = a.shape[1]
    w = _gauss_window(C, device=a.device, dtype=a.dtype)
    pad = 5
    f = lambda x: F.conv2d(F.pad(x, (pad,) * 4, mode="replicate"), w, groups=C)  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    s_aa = f(a * a) - mu_a**2
    s_bb = f(b * b) - mu_b**2
    s_ab = f(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    if crop:
        m = m[..., pad:-pad, pad:-pad]
    return m.mean((1, 2, 3)) if reduce else m


def weighted_l1(rgb: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, fg_weight: float) -> torch.Tensor:
    """Mean L1 with per-pixel weights 1 + fg_weight * mask, normalised by the mean weight (so the
    scale matches plain L1; fg_weight 0 is plain L1). rgb, gt (N, 3, H, W); mask (N, 1, H, W).
    The head covers a fraction of each view: without the weight, easy white background dominates."""
    if fg_weight == 0:
        return (rgb - gt).abs().mean()
    w = 1 + fg_weight * mask
    return ((rgb - gt).abs() * w).mean() / w.mean()


def _weighted_mean(per_image: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(weight * x) / sum(weight) of per-image values (N,)."""
    return (per_image * weight).sum() / weight.sum()


class ReconLoss(torch.nn.Module):
    """Rendered targets vs ground truth (foreground-weighted L1, SSIM, LPIPS, alpha vs mask) + the
    auxiliary head's L1 and LPIPS.

    ``weight`` (N,), optional: each rendered view's weight in every term (:mod:`recon.mix`: a single-view photo
    weighs 1 on its input view and 0 on the padding views). Each term is then the weighted mean over views of what
    it is per view (L1: per pixel, with the foreground weights), so the loss equals the unweighted loss of the
    views with weight 1 alone and a view of weight 0 gets no gradient. Without it (every batch of renders only)
    the terms are computed exactly as before."""

    def __init__(self, w: LossConfig) -> None:
        super().__init__()
        self.w = w
        self.lpips = None
        if w.lpips > 0 or w.aux_lpips > 0:
            from .lpips import LPIPS

            self.lpips = LPIPS()

    def forward(self, rgb: torch.Tensor, alpha: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
                aux_rgb: torch.Tensor | None = None, aux_gt: torch.Tensor | None = None,
                weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """rgb, gt (N, 3, H, W); alpha, mask (N, 1, H, W); aux (N', 3, r, r); weight (N,) or None."""
        if weight is not None:
            return self._weighted(rgb, alpha, gt, mask, aux_rgb, aux_gt, weight)
        parts = {"l1": weighted_l1(rgb, gt, mask, self.w.fg_weight), "ssim": 1 - ssim(rgb, gt, crop=False).mean(),
                 "mask": (alpha - mask).abs().mean()}
        if self.lpips is not None and self.w.lpips > 0:
            parts["lpips"] = self.lpips(rgb.float(), gt.float(), normalize=True).mean()
        if aux_rgb is not None and aux_gt is not None:  # also at weight 0: DDP needs every parameter in the graph
            parts["aux"] = (aux_rgb - aux_gt).abs().mean()
            if self.lpips is not None and self.w.aux_lpips > 0:
                parts["aux_lpips"] = self.lpips(aux_rgb.float(), aux_gt.float(), normalize=True).mean()
        return self._total(parts)

    def _weighted(self, rgb: torch.Tensor, alpha: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
                  aux_rgb: torch.Tensor | None, aux_gt: torch.Tensor | None, weight: torch.Tensor
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = weight.to(torch.float32)
        pix = (1 + self.w.fg_weight * mask.float()) * w[:, None, None, None]  # (N, 1, H, W)
        parts = {"l1": ((rgb - gt).abs() * pix).mean() / pix.mean(),  # weighted_l1 with the views' weights
                 "ssim": _weighted_mean(1 - ssim(rgb, gt, crop=False), w),
                 "mask": _weighted_mean((alpha - mask).abs().mean((1, 2, 3)), w)}
        if self.lpips is not None and self.w.lpips > 0:
            parts["lpips"] = _weighted_mean(self.lpips(rgb.float(), gt.float(), normalize=True), w)
        if aux_rgb is not None and aux_gt is not None:
            if aux_rgb.shape[0] != w.shape[0]:
                raise ValueError(f"auxiliary images {aux_rgb.shape[0]} vs view weights {w.shape[0]}: one weight per view")
            parts["aux"] = _weighted_mean((aux_rgb - aux_gt).abs().mean((1, 2, 3)), w)
            if self.lpips is not None and self.w.aux_lpips > 0:
                parts["aux_lpips"] = _weighted_mean(self.lpips(aux_rgb.float(), aux_gt.float(), normalize=True), w)
        return self._total(parts)

    def _total(self, parts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total = sum(getattr(self.w, k) * v for k, v in parts.items())
        return total, {k: v.detach() for k, v in parts.items()}  # tensors: reading them on the host waits for the GPU
