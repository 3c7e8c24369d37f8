"""Splatter Image (Szymanowicz et al., CVPR 2024), re-implemented as the feed-forward peer baseline.

A U-Net maps the input image to one 3D Gaussian per output pixel: a depth along the pixel's ray (the camera's
distance to the head centre plus an offset in [``near``, ``far``]: portraits are taken from 0.4 to 1.1 m), a
small 3D offset, scale, rotation, opacity and colour. Gaussians are pixel-aligned, so the far side of the head
is only what the network learns to place behind the visible surface; that is the regime where Any3DAvatar's
full-head scaffold should help. Trained with the same trainer, data and budget as Any3DAvatar.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyhead.cameras import camera_center

from .config import SplatterConfig
from .gaussians import Gaussians


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class SplatterImage(nn.Module):
    noise_shape = None  # not a denoiser

    def __init__(self, cfg: SplatterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = [cfg.base * 2**i for i in range(cfg.levels + 1)]
        self.inp = _block(3 + 6, ch[0])  # RGB + per-pixel ray (direction, moment)
        self.down = nn.ModuleList([_block(ch[i], ch[i + 1]) for i in range(cfg.levels)])
        self.up = nn.ModuleList([_block(ch[i + 1] + ch[i], ch[i]) for i in reversed(range(cfg.levels))])
        self.head = nn.Conv2d(ch[0], 15, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _rays(self, w2c: torch.Tensor, K: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        ys, xs = torch.meshgrid(torch.arange(size, device=w2c.device) + 0.5, torch.arange(size, device=w2c.device) + 0.5,
                                indexing="ij")
        s = self.cfg.image_size / size
        pix = torch.stack([xs * s, ys * s, torch.ones_like(xs)], -1).reshape(-1, 3).to(w2c.dtype)
        d = F.normalize(pix @ torch.linalg.inv(K).transpose(-1, -2) @ w2c[:, :3, :3], dim=-1)  # (B, P, 3) world
        o = camera_center(w2c)
        return o, d

    def forward(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, target_w2c: torch.Tensor | None = None,
                target_K: torch.Tensor | None = None, target_size: tuple[int, int] | None = None,
                noise: torch.Tensor | None = None) -> dict[str, Any]:
        B, _, S, _ = image.shape
        o, d = self._rays(w2c, K, S)
        ray = torch.cat([d, torch.cross(o[:, None].expand_as(d), d, dim=-1)], -1).transpose(1, 2).reshape(B, 6, S, S)
        x = self.inp(torch.cat([image * 2 - 1, ray.to(image.dtype)], 1))
        skips = [x]
        for blk in self.down:
            x = blk(F.avg_pool2d(x, 2))
            skips.append(x)
        for blk, skip in zip(self.up, reversed(skips[:-1])):
            x = blk(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1))
        p = self.head(x)
        if self.cfg.out_stride > 1:
            p = F.avg_pool2d(p, self.cfg.out_stride)
        n = p.shape[-1]
        p = p.flatten(2).transpose(1, 2).float()  # (B, n*n, 15)
        o2, d2 = self._rays(w2c, K, n)
        dist = o2.norm(dim=-1, keepdim=True)[:, None]  # (B, 1, 1): camera to head centre
        depth = dist + self.cfg.near + (self.cfg.far - self.cfg.near) * torch.sigmoid(p[..., :1])
        means = o2[:, None] + d2 * depth + self.cfg.max_offset * torch.tanh(p[..., 1:4])
        quats = p[..., 7:11] + torch.tensor([1.0, 0, 0, 0], device=p.device)
        g = Gaussians(means, quats, (p[..., 4:7] - 5.5).clamp(-9, -2), p[..., 11] + 1.0, torch.sigmoid(p[..., 12:15]))
        return {"gaussians": g}

    @torch.no_grad()
    def reconstruct(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> Gaussians:
        return self.forward(image, w2c, K)["gaussians"]

    def inference_module(self) -> "SplatterImage":
        return self

    @property
    def num_gaussians(self) -> int:
        return (self.cfg.image_size // self.cfg.out_stride) ** 2
