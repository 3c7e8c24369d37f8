"""Any3DAvatar: single image -> full-head 3D Gaussians in one forward pass.

1. **Image encoder** (from scratch, no downloaded weights): a patchify conv stem and a ViT.
2. **Plücker-aware structured scaffold**: one token per anchor of the template head, built from
   the anchor's position (Fourier features), the Plücker coordinates (d, o x d) of the input
   camera's ray through it, and the image feature sampled at its projection.
3. **One-step conditional denoising**: the Gaussian tokens start from the scaffold's initial
   Gaussians, noised at a fixed level t* (``t_star``; 0 means plain regression); a transformer with
   self-attention over anchors and cross-attention to image tokens, conditioned on t*, predicts
   the clean Gaussian parameters in a single step.
4. **Gaussian decoder**: each anchor token -> ``gaussians_per_anchor`` Gaussians (bounded offset,
   scale, rotation, opacity, colour).
5. **View-conditioned appearance head** (training only): from the same latent tokens and a target
   view's Plücker ray map, a light decoder predicts the target image. ``reconstruct()`` never runs
   it, and ``inference_module()`` leaves it out.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyhead.cameras import camera_center, plucker_rays_torch

from ..config import ModelConfig
from ..gaussians import Gaussians
from .scaffold import anchor_spacing

PARAMS_PER_GAUSSIAN = 14  # offset 3, log-scale 3, quaternion 4, opacity 1, colour 3


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        ctx = x if context is None else context
        q = self.q(x).view(B, N, self.heads, D // self.heads).transpose(1, 2)
        k, v = self.kv(ctx).view(B, ctx.shape[1], 2, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    """Pre-norm transformer block; with ``cross=True`` it also attends to a context."""

    def __init__(self, dim: int, heads: int, cross: bool = False) -> None:
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.cross = cross
        if cross:
            self.nc, self.cattn = nn.LayerNorm(dim), Attention(dim, heads)
        self.n2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.n1(x))
        if self.cross:
            x = x + self.cattn(self.nc(x), context)
        return x + self.mlp(self.n2(x))


def fourier(x: torch.Tensor, n_freqs: int, scale: float = 10.0) -> torch.Tensor:
    """[x, sin(2^k s x), cos(2^k s x)] positional features (positions are ~0.1 m, hence ``scale``)."""
    freqs = scale * (2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype))
    xf = x[..., None] * freqs
    return torch.cat([x, xf.sin().flatten(-2), xf.cos().flatten(-2)], -1)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    a = t.float()[:, None] * 1000.0 * f[None]
    return torch.cat([a.sin(), a.cos()], -1)


class ImageEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, cfg.dim // 2, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(cfg.dim // 2, cfg.dim, cfg.patch, stride=cfg.patch))
        n = (cfg.image_size // cfg.patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, n, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList([Block(cfg.dim, cfg.heads) for _ in range(cfg.enc_depth)])
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.stem(image * 2 - 1)  # (B, D, h, w)
        B, D, h, w = f.shape
        x = f.flatten(2).transpose(1, 2) + self.pos
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x, x.transpose(1, 2).reshape(B, D, h, w)


class AppearanceHead(nn.Module):
    """Training-only light decoder: target Plücker ray map + latent tokens -> target image."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p = cfg.aux_patch
        self.embed = nn.Linear(6 * p * p, cfg.dim)
        self.pos = nn.Parameter(torch.randn(1, (cfg.aux_res // p) ** 2, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList([Block(cfg.dim, cfg.heads, cross=True) for _ in range(cfg.aux_depth)])
        self.out = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, 3 * p * p))

    def forward(self, latent: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """latent (B, M, D); w2c (B, V, 4, 4), K (B, V, 3, 3) at (width, height). Returns (B, V, 3, r, r)."""
        B, V = w2c.shape[:2]
        r, p = self.cfg.aux_res, self.cfg.aux_patch
        ys, xs = torch.meshgrid(torch.arange(r, device=w2c.device) + 0.5, torch.arange(r, device=w2c.device) + 0.5,
                                indexing="ij")
        pix = torch.stack([xs * width / r, ys * height / r, torch.ones_like(xs)], -1).reshape(-1, 3).to(w2c.dtype)
        d_cam = pix @ torch.linalg.inv(K).transpose(-1, -2)  # (B, V, r*r, 3)
        R = w2c[..., :3, :3]
        d = d_cam @ R  # camera -> world: R^T d, as row vectors
        o = camera_center(w2c)[:, :, None, :].expand_as(d)
        ray = plucker_rays_torch(o, d).reshape(B * V, r // p, p, r // p, p, 6)
        tok = ray.permute(0, 1, 3, 2, 4, 5).reshape(B * V, (r // p) ** 2, p * p * 6)
        x = self.embed(tok.to(latent.dtype)) + self.pos
        ctx = latent.repeat_interleave(V, 0)
        for blk in self.blocks:
            x = blk(x, ctx)
        img = self.out(x).reshape(B * V, r // p, r // p, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(B, V, 3, r, r)
        return torch.sigmoid(img)


class Any3DAvatar(nn.Module):
    def __init__(self, cfg: ModelConfig, anchors: torch.Tensor, normals: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        M, k = cfg.n_anchors, cfg.gaussians_per_anchor
        if anchors.shape != (M, 3):
            raise ValueError(f"scaffold has {tuple(anchors.shape)} anchors, config expects ({M}, 3)")
        self.register_buffer("anchors", anchors.float())
        self.register_buffer("normals", F.normalize(normals.float(), dim=-1))
        self.register_buffer("x_init", self._initial_gaussians(k))
        self.encoder = ImageEncoder(cfg)
        pos_dim = 3 * (1 + 2 * cfg.pos_freqs)
        self.pos_embed = nn.Linear(pos_dim, cfg.dim)
        # built only when used: DDP refuses parameters that receive no gradient (the no-Plücker ablation)
        self.plucker_embed = nn.Linear(6 * (1 + 2 * 2), cfg.dim) if cfg.plucker else None
        self.feat_proj = nn.Linear(cfg.dim, cfg.dim)
        self.token_in = nn.Linear(k * PARAMS_PER_GAUSSIAN, cfg.dim)
        self.t_embed = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.denoiser = nn.ModuleList([Block(cfg.dim, cfg.heads, cross=True) for _ in range(cfg.den_depth)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.decoder = nn.Linear(cfg.dim, k * PARAMS_PER_GAUSSIAN)
        nn.init.zeros_(self.decoder.weight)  # start exactly at the scaffold's Gaussians
        nn.init.zeros_(self.decoder.bias)
        self.aux = AppearanceHead(cfg) if cfg.aux_head else None

    # -- scaffold ---------------------------------------------------------------------------
    def _initial_gaussians(self, k: int) -> torch.Tensor:
        """(M, k*14) raw parameters of the scaffold: k Gaussians in a small disc tangent to each
        anchor, sized to the anchor spacing, grey, half opaque."""
        M = self.anchors.shape[0]
        s = float(anchor_spacing(self.anchors))
        n = self.normals
        t1 = F.normalize(torch.cross(n, n.new_tensor([0.0, 1.0, 0.3]).expand_as(n), dim=-1), dim=-1)
        t2 = torch.cross(n, t1, dim=-1)
        ang = torch.arange(k) * 2 * math.pi / k
        rad = 0.0 if k == 1 else 0.35 * s
        off = rad * (ang.cos()[None, :, None] * t1[:, None] + ang.sin()[None, :, None] * t2[:, None])  # (M, k, 3)
        raw_off = torch.atanh((off / self.cfg.max_offset).clamp(-0.95, 0.95))
        log_s = torch.full((M, k, 3), math.log(0.5 * s))
        quat = torch.tensor([1.0, 0, 0, 0]).expand(M, k, 4)
        opac = torch.zeros(M, k, 1)
        color = torch.zeros(M, k, 3)
        return torch.cat([raw_off, log_s, quat, opac, color], -1).reshape(M, k * PARAMS_PER_GAUSSIAN)

    # -- forward ----------------------------------------------------------------------------
    def anchor_tokens(self, feat_map: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """Scaffold tokens for input cameras w2c (B, 4, 4), K (B, 3, 3) at the model's image size."""
        B = w2c.shape[0]
        a = self.anchors[None].expand(B, -1, -1)
        x = self.pos_embed(fourier(a, self.cfg.pos_freqs))
        pc = a @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]
        uv = pc @ K.transpose(1, 2)
        uv = uv[..., :2] / uv[..., 2:3].clamp_min(1e-6)
        grid = (uv / self.cfg.image_size * 2 - 1)[:, :, None, :]  # align_corners=False pixel centres
        feat = F.grid_sample(feat_map, grid.to(feat_map.dtype), align_corners=False)[..., 0].transpose(1, 2)
        x = x + self.feat_proj(feat)
        if self.cfg.plucker:
            o = camera_center(w2c)[:, None].expand_as(a)
            pl = plucker_rays_torch(o, a - o)
            x = x + self.plucker_embed(fourier(pl, 2, scale=1.0))
        return x

    def forward(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, target_w2c: torch.Tensor | None = None,
                target_K: torch.Tensor | None = None, target_size: tuple[int, int] | None = None,
                noise: torch.Tensor | None = None) -> dict[str, Any]:
        """image (B, 3, S, S) in [0, 1]; w2c (B, 4, 4); K (B, 3, 3) for the S x S image.

        ``noise`` (B, M, k*14) overrides the random noise at t* (a fixed seed gives exact resume).
        With target cameras and the auxiliary head, also returns ``aux_rgb`` (B, V, 3, r, r)."""
        B = image.shape[0]
        img_tokens, feat_map = self.encoder(image)
        x_t = self.x_init[None].expand(B, -1, -1)
        if self.cfg.t_star > 0:
            if noise is None:
                noise = torch.randn_like(x_t) if self.training else torch.zeros_like(x_t)
            x_t = x_t + self.cfg.t_star * noise
        latent = self.denoise(img_tokens, feat_map, w2c, K, x_t - self.x_init)
        out: dict[str, Any] = {"gaussians": self.decode(latent), "latent": latent}
        if target_w2c is not None and self.aux is not None:
            W, H = target_size
            out["aux_rgb"] = self.aux(latent, target_w2c, target_K, W, H)
        return out

    def denoise(self, img_tokens: torch.Tensor, feat_map: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor,
                residual: torch.Tensor) -> torch.Tensor:
        """Latent anchor tokens from scaffold tokens and the noised Gaussian tokens (given as their
        residual x_t - x_init), conditioned on t* and attending to the image tokens."""
        x = self.anchor_tokens(feat_map, w2c, K)
        t = torch.full((w2c.shape[0],), self.cfg.t_star, device=w2c.device)
        x = x + self.token_in(residual) + self.t_embed(timestep_embedding(t, self.cfg.dim).to(x.dtype))[:, None]
        for blk in self.denoiser:
            x = blk(x, img_tokens)
        return self.norm(x)

    def decode(self, latent: torch.Tensor) -> Gaussians:
        """One step: clean Gaussian parameters predicted as a residual on the scaffold's."""
        return self.activate(self.x_init + self.decoder(latent))

    def activate(self, raw: torch.Tensor) -> Gaussians:
        B, M = raw.shape[:2]
        k = self.cfg.gaussians_per_anchor
        p = raw.reshape(B, M, k, PARAMS_PER_GAUSSIAN).float()
        means = self.anchors[None, :, None] + self.cfg.max_offset * torch.tanh(p[..., 0:3])
        log_s = p[..., 3:6].clamp(-9.0, -2.0)  # 0.1 mm .. 13 cm
        return Gaussians(means.reshape(B, M * k, 3), p[..., 6:10].reshape(B, M * k, 4), log_s.reshape(B, M * k, 3),
                         p[..., 10].reshape(B, M * k), torch.sigmoid(p[..., 11:14]).reshape(B, M * k, 3))

    @torch.no_grad()
    def reconstruct(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> Gaussians:
        """Inference: the Gaussians only (the auxiliary head is never run)."""
        return self.forward(image, w2c, K)["gaussians"]

    def inference_module(self) -> "InferenceAny3DAvatar":
        return InferenceAny3DAvatar(self)

    @property
    def num_gaussians(self) -> int:
        return self.cfg.n_anchors * self.cfg.gaussians_per_anchor

    @property
    def noise_shape(self) -> tuple[int, ...] | None:
        """Shape of one sample's denoising noise (what the trainer draws per step), None at t* = 0."""
        return tuple(self.x_init.shape) if self.cfg.t_star > 0 else None


class InferenceAny3DAvatar(nn.Module):
    """The deployable graph: encoder, scaffold tokens, denoiser and decoder; no auxiliary head."""

    def __init__(self, m: Any3DAvatar) -> None:
        super().__init__()
        self.cfg = m.cfg
        for name in ("encoder", "pos_embed", "plucker_embed", "feat_proj", "token_in", "t_embed", "denoiser", "norm", "decoder"):
            setattr(self, name, getattr(m, name))
        for name in ("anchors", "normals", "x_init"):
            self.register_buffer(name, getattr(m, name))

    anchor_tokens = Any3DAvatar.anchor_tokens
    denoise = Any3DAvatar.denoise
    decode = Any3DAvatar.decode
    activate = Any3DAvatar.activate

    @torch.no_grad()
    def forward(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> Gaussians:
        img_tokens, feat_map = self.encoder(image)
        # inference denoises the scaffold itself: no noise, a zero residual
        return self.decode(self.denoise(img_tokens, feat_map, w2c, K, torch.zeros_like(self.x_init)[None]))
