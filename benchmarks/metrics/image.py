"""Image metrics on a white background: full image and masked variants.

* PSNR over all pixels of the [0, 1] RGB image; masked: MSE over pixels where the GT mask > 0.5.
* SSIM: :func:`recon.losses.ssim` (11x11 Gaussian window, sigma 1.5, equals scikit-image's
  Gaussian-weighted SSIM); masked: the SSIM map averaged over the GT mask (border kept).
* LPIPS: AlexNet v0.1 (:mod:`recon.lpips`), inputs in [-1, 1]; masked: both images set to white
  outside the GT mask before the distance.
"""
from __future__ import annotations

import torch

from recon.losses import SSIM_CARD, ssim

CARD = {
    "background": "white (1, 1, 1); predictions rendered on white, GT renders composited on white",
    "range": "RGB in [0, 1]",
    "psnr": "10 log10(1 / MSE), MSE over all pixels and channels; masked: over GT-mask > 0.5 pixels",
    "ssim": SSIM_CARD, "ssim_masked": "SSIM map (uncropped) averaged over GT-mask > 0.5 pixels",
    "lpips_masked": "both images set to white outside the GT mask (> 0.5)",
}


def psnr(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image PSNR (B,) for (B, 3, H, W) images in [0, 1]; ``mask`` (B, 1, H, W) selects pixels."""
    se = (pred - gt) ** 2
    if mask is None:
        mse = se.mean((1, 2, 3))
    else:
        m = (mask > 0.5).float()
        mse = (se * m).sum((1, 2, 3)) / (3 * m.sum((1, 2, 3))).clamp_min(1)
    return -10 * torch.log10(mse.clamp_min(1e-12))


def ssim_masked(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    smap = ssim(pred, gt, crop=False, reduce=False).mean(1, keepdim=True)
    m = (mask > 0.5).float()
    return (smap * m).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp_min(1)


def image_metrics(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, lpips_net: torch.nn.Module | None
                  ) -> dict[str, torch.Tensor]:
    """All image metrics per image: psnr, ssim, lpips and their ``_masked`` variants."""
    out = {"psnr": psnr(pred, gt), "psnr_masked": psnr(pred, gt, mask), "ssim": ssim(pred, gt),
           "ssim_masked": ssim_masked(pred, gt, mask)}
    if lpips_net is not None:
        with torch.no_grad():
            out["lpips"] = lpips_net(pred, gt, normalize=True)
            m = (mask > 0.5).float()
            out["lpips_masked"] = lpips_net(pred * m + (1 - m), gt * m + (1 - m), normalize=True)
    return out
