"""Any3DAvatar: single image -> full-head 3D Gaussians in one forward pass.

Version 2 (``arch_version: 2``, the default):

1. **Image pathway**: a convolutional feature map at 1/``feat_stride`` (<= 1/4) of the input
   resolution, and global tokens from a ViT whose patchify stem runs on that map (positional
   embeddings resampled for other input sizes). Optionally the conv features start from a local
   pretrained file (``backbone``; never downloaded).
2. **Structured scaffold tokens**: one token per template anchor: its position (Fourier features),
   the Plücker coordinates of the input camera's ray through it, its distance along that ray, whether
   the input view sees it (z-buffer depth test + facing test, :mod:`.visibility`), the feature map
   sampled at its projection where it is seen, and, where it is hidden, at the projection of its mirror
   image x -> -x (``mirror``) when that is seen. Hidden anchors never read the pixels in front of them.
3. **One-step conditional denoising** in the Gaussians' own parameter space, each parameter group
   affinely scaled to unit range (:meth:`Any3DAvatar.unit_affine`): the noised scaffold state
   x_t = x_scaffold + sigma(t) * eps (sigma(t) = sigma_max * t) is embedded into the tokens; t is drawn
   per sample in training (U[0, t_max]; 0 with ``train_noise: false``) and conditions every denoiser
   block by adaLN-zero; the network predicts clean x0 = x_scaffold + F(tokens) in one step. Inference
   is that step from the scaffold at ``t_star`` with a fixed, seeded eps (deterministic).
4. **Gaussian decoder**: ``gaussians_per_anchor`` Gaussians per anchor, colour as SH of ``sh_degree``.
5. **View-conditioned appearance head** (training only): the target's Plücker ray map + the same
   latent tokens -> the target image. ``inference_module()`` leaves it out.

Version 1 (``arch_version: 1``) is the first model, unchanged: image features are the ViT's 1/patch
token map sampled with no visibility test, and the denoiser sees only ``t_star * noise``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyhead.cameras import camera_center, plucker_rays_torch

from ..config import ModelConfig
from ..gaussians import SH_C0, Gaussians
from . import visibility as vis_mod
from .scaffold import anchor_spacing, group_order, region_offset_limits

PARAMS_PER_GAUSSIAN = 14  # v1 and RGB: offset 3, log-scale 3, quaternion 4, opacity 1, colour 3
LOG_SCALE_RANGE = (-9.0, -2.0)  # 0.1 mm .. 13 cm


def params_per_gaussian(sh_degree: int | None) -> int:
    """Raw parameters of one Gaussian: offset 3, log-scale 3, quaternion 4, opacity 1, colour (3 or SH)."""
    return 11 + (3 if sh_degree is None else 3 * (sh_degree + 1) ** 2)


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


# -- version 2 building blocks ------------------------------------------------------------------

class AdaBlock(nn.Module):
    """Pre-norm transformer block (self-attention, cross-attention, MLP) modulated by a condition
    vector c (B, D) through adaLN-zero (DiT): per-sample shift, scale and gate of each branch, the
    modulation zero-initialised so every block starts as the identity."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(dim, elementwise_affine=False), Attention(dim, heads)
        self.nc, self.cattn = nn.LayerNorm(dim, elementwise_affine=False), Attention(dim, heads)
        self.n2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.mod = nn.Linear(dim, 9 * dim)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), context (B, L, D), c (B, D)."""
        s1, b1, g1, sc, bc, gc, s2, b2, g2 = self.mod(F.silu(c))[:, None].chunk(9, -1)  # each (B, 1, D)
        x = x + g1 * self.attn(self.n1(x) * (1 + s1) + b1)
        x = x + gc * self.cattn(self.nc(x) * (1 + sc) + bc, context)
        return x + g2 * self.mlp(self.n2(x) * (1 + s2) + b2)


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ConvFeatures(nn.Module):
    """The dense image pathway: (B, 3, S, S) in [0, 1] -> (B, feat_dim, S/stride, S/stride)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.feat_dim
        second = 2 if cfg.feat_stride == 4 else 1
        self.stem = nn.Sequential(nn.Conv2d(3, c // 2, 3, stride=2, padding=1), nn.GELU(),
                                  nn.Conv2d(c // 2, c, 3, stride=second, padding=1), nn.GELU())
        self.res = nn.Sequential(ResBlock(c), ResBlock(c))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.res(self.stem(image * 2 - 1))


class FeatureViT(nn.Module):
    """Global image tokens: a ViT whose patchify stem is a strided conv on the feature map (one token
    per ``patch`` input pixels); positional embeddings are stored for the configured input size and
    resampled bicubically for any other."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        k = cfg.patch // cfg.feat_stride
        self.patchify = nn.Conv2d(cfg.feat_dim, cfg.dim, k, stride=k)
        self.grid = cfg.image_size // cfg.patch
        self.pos = nn.Parameter(torch.randn(1, self.grid**2, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList([Block(cfg.dim, cfg.heads) for _ in range(cfg.enc_depth)])
        self.norm = nn.LayerNorm(cfg.dim)

    def pos_embed(self, h: int, w: int) -> torch.Tensor:
        """(1, h*w, D) positional embeddings for an h x w token grid."""
        if (h, w) == (self.grid, self.grid):
            return self.pos
        g = self.pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        return F.interpolate(g, size=(h, w), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = self.patchify(feat)  # (B, D, h, w)
        x = x.flatten(2).transpose(1, 2) + self.pos_embed(*x.shape[-2:])
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class ImagePathway(nn.Module):
    """Version 2's encoder: (global tokens (B, L, D), feature map (B, feat_dim, S/stride, S/stride))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.features = ConvFeatures(cfg)
        self.vit = FeatureViT(cfg)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(image)
        return self.vit(f), f


class Any3DAvatar(nn.Module):
    def __init__(self, cfg: ModelConfig, anchors: torch.Tensor, normals: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.v2 = cfg.arch_version == 2
        M, k = cfg.n_anchors, cfg.gaussians_per_anchor
        if anchors.shape != (M, 3):
            raise ValueError(f"scaffold has {tuple(anchors.shape)} anchors, config expects ({M}, 3)")
        self.sh_degree = cfg.sh_degree if self.v2 else None
        self.P = params_per_gaussian(self.sh_degree)
        self.g = cfg.token_group if self.v2 else 1
        if self.g > 1:  # tokens of g consecutive anchors: order the anchors so that those are neighbours
            order = torch.from_numpy(group_order(anchors.detach().cpu().float().numpy(), self.g))
            anchors, normals = anchors[order], normals[order]
        self.register_buffer("anchors", anchors.float().clone())  # own memory: loading must not write into the caller's array
        self.register_buffer("normals", F.normalize(normals.float(), dim=-1))
        # metres each anchor's Gaussians may move: per region in v2, from the anchors, so not stored
        self.register_buffer("offset_limit", self._offset_limit(anchors), persistent=False)
        shift, scale = self.unit_affine()
        # derived from the config, so not stored in checkpoints
        self.register_buffer("unit_shift", shift.repeat(k), persistent=False)
        self.register_buffer("unit_scale", scale.repeat(k), persistent=False)
        raw = self._initial_gaussians(k)
        # the scaffold state: v2 keeps it in the unit-scaled space the denoiser works in, v1 raw
        self.register_buffer("x_scaffold", (raw - self.unit_shift) / self.unit_scale if self.v2 else raw)
        if self.v2:  # the fixed inference noise: a pure function of noise_seed (CPU generator: same on every device)
            eps = torch.randn(M, k * self.P, generator=torch.Generator().manual_seed(cfg.noise_seed))
            self.register_buffer("eps_star", eps, persistent=False)
        self.encoder = ImagePathway(cfg) if self.v2 else ImageEncoder(cfg)
        pos_dim = 3 * (1 + 2 * cfg.pos_freqs)
        self.pos_embed = nn.Linear(pos_dim, cfg.dim)
        # built only when used: DDP refuses parameters that receive no gradient (the no-Plücker ablation)
        self.plucker_embed = nn.Linear(6 * (1 + 2 * 2), cfg.dim) if cfg.plucker else None
        if self.v2:
            mirror = 2 if cfg.mirror else 1
            self.feat_proj = nn.Linear(mirror * cfg.feat_dim, cfg.dim)
            self.geo_embed = nn.Linear(mirror + 1, cfg.dim)  # visible (, mirror visible), distance along the ray
        else:
            self.feat_proj = nn.Linear(cfg.dim, cfg.dim)
        self.token_in = nn.Linear(k * self.P, cfg.dim)
        self.t_embed = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        if self.v2:
            self.denoiser = nn.ModuleList([AdaBlock(cfg.dim, cfg.heads) for _ in range(cfg.den_depth)])
        else:
            self.denoiser = nn.ModuleList([Block(cfg.dim, cfg.heads, cross=True) for _ in range(cfg.den_depth)])
        self.norm = nn.LayerNorm(cfg.dim)
        # g neighbouring anchors' tokens -> one denoiser token, and back: attention runs over M / g tokens
        self.group_in = nn.Linear(self.g * cfg.dim, cfg.dim) if self.g > 1 else None
        self.decoder = nn.Linear(cfg.dim, self.g * k * self.P)
        nn.init.zeros_(self.decoder.weight)  # start exactly at the scaffold's Gaussians
        nn.init.zeros_(self.decoder.bias)
        self.aux = AppearanceHead(cfg) if cfg.aux_head else None

    # -- scaffold and parameter space ---------------------------------------------------------
    def _offset_limit(self, anchors: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if not self.v2:
            return torch.full((len(anchors),), cfg.max_offset, dtype=torch.float32)
        a = anchors.detach().cpu().float().numpy()
        return torch.from_numpy(region_offset_limits(a, cfg.max_offset, cfg.hair_offset, cfg.shoulders))

    def refresh_offset_limit(self) -> None:
        """Recompute the per-anchor offset limits from the anchors held now (after loading other anchors into a
        built model: the limits are derived, not stored)."""
        self.offset_limit.copy_(self._offset_limit(self.anchors).to(self.offset_limit.device))

    def unit_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-parameter (shift, scale) of one Gaussian, (P,) each: unit = (raw - shift) / scale puts
        every group in about [-1, 1], so one noise level means the same for all of them.

        offset: atanh(offset / limit), already bounded; log-scale: its clamp range [-9, -2];
        quaternion: unnormalised, the scaffold's is (1, 0, 0, 0); opacity logit: +-5 is 0.7% .. 99.3%;
        colour: RGB logits +-5, or SH coefficients, +-0.5 / SH_C0 spanning [0, 1] in the DC term."""
        lo, hi = LOG_SCALE_RANGE
        c = self.P - 11
        color_scale = 5.0 if self.sh_degree is None else 0.5 / SH_C0
        shift = torch.tensor([0.0] * 3 + [(lo + hi) / 2] * 3 + [0.0] * 5 + [0.0] * c)
        scale = torch.tensor([1.0] * 3 + [(hi - lo) / 2] * 3 + [1.0] * 4 + [5.0] + [color_scale] * c)
        if not self.v2:  # v1 works on raw parameters
            shift, scale = torch.zeros_like(shift), torch.ones_like(scale)
        return shift, scale

    def _initial_gaussians(self, k: int) -> torch.Tensor:
        """(M, k*P) raw parameters of the scaffold: k Gaussians in a small disc tangent to each
        anchor, sized to the anchor spacing, grey, half opaque."""
        M = self.anchors.shape[0]
        s = float(anchor_spacing(self.anchors))
        n = self.normals
        t1 = F.normalize(torch.cross(n, n.new_tensor([0.0, 1.0, 0.3]).expand_as(n), dim=-1), dim=-1)
        t2 = torch.cross(n, t1, dim=-1)
        ang = torch.arange(k) * 2 * math.pi / k
        rad = 0.0 if k == 1 else 0.35 * s
        off = rad * (ang.cos()[None, :, None] * t1[:, None] + ang.sin()[None, :, None] * t2[:, None])  # (M, k, 3)
        raw_off = torch.atanh((off / self.offset_limit[:, None, None]).clamp(-0.95, 0.95))
        log_s = torch.full((M, k, 3), math.log(0.5 * s))
        quat = torch.tensor([1.0, 0, 0, 0]).expand(M, k, 4)
        opac = torch.zeros(M, k, 1)
        color = torch.zeros(M, k, self.P - 11)  # RGB logit 0 or SH 0: grey 0.5 from every side
        return torch.cat([raw_off, log_s, quat, opac, color], -1).reshape(M, k * self.P)

    # -- forward ----------------------------------------------------------------------------
    def anchor_tokens(self, feat_map: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """Scaffold tokens (B, M, D) for input cameras w2c (B, 4, 4), K (B, 3, 3) at the model's image size."""
        B = w2c.shape[0]
        a = self.anchors[None].expand(B, -1, -1)
        x = self.pos_embed(fourier(a, self.cfg.pos_freqs))
        if self.v2:
            x = x + self.image_features(feat_map, w2c, K)
        else:
            pc = a @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]
            uv = pc @ K.transpose(1, 2)
            uv = uv[..., :2] / uv[..., 2:3].clamp_min(1e-6)
            grid = (uv / self.cfg.image_size * 2 - 1)[:, :, None, :]  # align_corners=False pixel centres
            feat = F.grid_sample(feat_map, grid.to(feat_map.dtype), align_corners=False)[..., 0].transpose(1, 2)
            x = x + self.feat_proj(feat)
        if self.cfg.plucker:
            with torch.autocast(w2c.device.type, enabled=False):
                o = camera_center(w2c.float())[:, None].expand_as(a)
                pl = plucker_rays_torch(o, a - o)
            x = x + self.plucker_embed(fourier(pl, 2, scale=1.0))
        return x

    def sample_features(self, feat_map: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-anchor image evidence (v2): ``feat`` (B, M, C) sampled at the projection and zero where
        the anchor is hidden; ``visible`` (B, M) bool; with ``mirror``, ``feat_mirror`` (B, M, C)
        sampled at the mirror image's projection, non-zero only for hidden anchors whose mirror image
        is seen, and ``visible_mirror``; ``ray_depth`` (B, M): distance from the camera along the
        ray, relative to the camera's distance to the head centre, minus 1."""
        with torch.autocast(w2c.device.type, enabled=False):  # geometry in fp32 (see anchor_tokens)
            return self._sample_features(feat_map, w2c.float(), K.float())

    def _sample_features(self, feat_map: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> dict[str, torch.Tensor]:
        B, S = w2c.shape[0], self.cfg.image_size
        a = self.anchors[None].expand(B, -1, -1)
        uv, depth = vis_mod.project(a, w2c, K)
        zbuf = vis_mod.anchor_zbuffer(uv, depth, S, self.cfg.vis_res)
        vis = vis_mod.visible(a, self.normals, w2c, K, zbuf, S, self.cfg.vis_tol)
        feat = vis_mod.sample(feat_map, uv, S) * vis[..., None]
        cam = camera_center(w2c)  # (B, 3)
        out = {"feat": feat, "visible": vis,
               "ray_depth": (a - cam[:, None]).norm(dim=-1) / cam.norm(dim=-1, keepdim=True).clamp_min(1e-6) - 1}
        if self.cfg.mirror:
            am = vis_mod.mirror(a)
            uvm, _ = vis_mod.project(am, w2c, K)
            vis_m = vis_mod.visible(am, vis_mod.mirror(self.normals), w2c, K, zbuf, S, self.cfg.vis_tol) & ~vis
            out["feat_mirror"] = vis_mod.sample(feat_map, uvm, S) * vis_m[..., None]
            out["visible_mirror"] = vis_m
        return out

    def image_features(self, feat_map: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """(B, M, D): the sampled features and the per-anchor geometry (visibility, ray depth), embedded."""
        s = self.sample_features(feat_map, w2c, K)
        dt = s["feat"].dtype
        if self.cfg.mirror:
            f = torch.cat([s["feat"], s["feat_mirror"]], -1)
            geo = torch.stack([s["visible"].to(dt), s["visible_mirror"].to(dt), s["ray_depth"].to(dt)], -1)
        else:
            f, geo = s["feat"], torch.stack([s["visible"].to(dt), s["ray_depth"].to(dt)], -1)
        return self.feat_proj(f) + self.geo_embed(geo)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise std at level t (unit parameter space)."""
        return self.cfg.sigma_max * t

    def noised_state(self, B: int, noise: torch.Tensor | None, t: torch.Tensor | float | None,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t (B, M, k*P), t (B,)). v2: training draws t per sample (from ``noise``'s last column,
        a standard normal z: t = t_max * Phi(z) is uniform on [0, t_max]) and eps from the rest; with
        ``train_noise`` off, t = 0. Outside training (or with an explicit ``t``): t_star (or ``t``) and the
        fixed eps_star. v1: x_init + t_star * noise in training, the plain scaffold otherwise."""
        x0 = self.x_scaffold[None].expand(B, -1, -1)
        if not self.v2:
            tt = torch.full((B,), self.cfg.t_star, device=device)
            if self.training and self.cfg.t_star > 0:
                noise = torch.randn_like(x0) if noise is None else noise
                return x0 + self.cfg.t_star * noise, tt
            return x0, tt
        if self.training and t is None:
            if not self.cfg.train_noise:  # the ablation: t = 0, the state is the scaffold itself
                return x0, torch.zeros(B, device=device)
            if noise is None:
                noise = torch.randn((B, *self.noise_shape), device=device)
            eps = noise[:, :-1].reshape(x0.shape)
            tt = self.cfg.t_max * 0.5 * (1 + torch.erf(noise[:, -1].float() / math.sqrt(2)))
        else:
            eps = self.eps_star[None].expand(B, -1, -1)
            tt = torch.as_tensor(self.cfg.t_star if t is None else t, device=device, dtype=torch.float32).expand(B)
        return x0 + self.sigma(tt)[:, None, None].to(x0.dtype) * eps, tt

    def forward(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, target_w2c: torch.Tensor | None = None,
                target_K: torch.Tensor | None = None, target_size: tuple[int, int] | None = None,
                noise: torch.Tensor | None = None, t: torch.Tensor | float | None = None) -> dict[str, Any]:
        """image (B, 3, S, S) in [0, 1]; w2c (B, 4, 4); K (B, 3, 3) for the S x S image.

        ``noise`` (B, *noise_shape) is the training step's randomness (a fixed seed gives exact resume);
        ``t`` overrides the noise level (a float or (B,)), e.g. for a t* sweep at inference.
        With target cameras and the auxiliary head, also returns ``aux_rgb`` (B, V, 3, r, r)."""
        B = image.shape[0]
        img_tokens, feat_map = self.encoder(image)
        x_t, tt = self.noised_state(B, noise, t, image.device)
        latent = self.denoise(img_tokens, feat_map, w2c, K, x_t, tt)
        out: dict[str, Any] = {"gaussians": self.decode(latent), "latent": latent, "t": tt}
        if target_w2c is not None and self.aux is not None:
            W, H = target_size
            out["aux_rgb"] = self.aux(latent, target_w2c, target_K, W, H)
        return out

    def denoise(self, img_tokens: torch.Tensor, feat_map: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor,
                x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Latent tokens (B, M / token_group, D) from the scaffold tokens and the noised state x_t (B, M, k*P),
        conditioned on t (B,) and attending to the image tokens. v1 embeds only x_t - x_scaffold and
        adds the (constant) t embedding to the tokens; v2 embeds x_t and modulates every block by t."""
        x = self.anchor_tokens(feat_map, w2c, K)
        c = self.t_embed(timestep_embedding(t, self.cfg.dim).to(x.dtype))  # (B, D)
        if not self.v2:
            x = x + self.token_in(x_t - self.x_scaffold) + c[:, None]
            for blk in self.denoiser:
                x = blk(x, img_tokens)
            return self.norm(x)
        x = x + self.token_in(x_t.to(x.dtype))
        if self.g > 1:
            B, M, D = x.shape
            x = self.group_in(x.reshape(B, M // self.g, self.g * D))  # (B, M/g, D)
        for blk in self.denoiser:
            x = blk(x, img_tokens, c)
        return self.norm(x)

    def decode(self, latent: torch.Tensor) -> Gaussians:
        """One step: clean parameters x0 = x_scaffold + F(latent). The scaffold is known exactly at
        inference, so skipping from it (not from the noised x_t) spends no capacity on undoing noise;
        x_t and t reach the output through the tokens."""
        delta = self.decoder(latent)  # (B, M/g, g*k*P)
        x0 = self.x_scaffold + delta.reshape(delta.shape[0], *self.x_scaffold.shape)
        return self.activate(x0.float() * self.unit_scale + self.unit_shift)

    def activate(self, raw: torch.Tensor) -> Gaussians:
        """Gaussians from raw parameters (B, M, k*P)."""
        B, M = raw.shape[:2]
        k = self.cfg.gaussians_per_anchor
        p = raw.reshape(B, M, k, self.P).float()
        means = self.anchors[None, :, None] + self.offset_limit[None, :, None, None] * torch.tanh(p[..., 0:3])
        log_s = p[..., 3:6].clamp(*LOG_SCALE_RANGE)
        N = M * k
        if self.sh_degree is None:
            colors = torch.sigmoid(p[..., 11:14]).reshape(B, N, 3)
        else:
            colors = p[..., 11:].reshape(B, N, (self.sh_degree + 1) ** 2, 3)
        return Gaussians(means.reshape(B, N, 3), p[..., 6:10].reshape(B, N, 4), log_s.reshape(B, N, 3),
                         p[..., 10].reshape(B, N), colors, self.sh_degree,
                         antialiased=self.v2 and self.cfg.antialiased)

    @torch.no_grad()
    def reconstruct(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, t: float | None = None) -> Gaussians:
        """Inference: the Gaussians only (the auxiliary head is never run); ``t`` overrides t_star."""
        return self.forward(image, w2c, K, t=t)["gaussians"]

    def inference_module(self) -> "InferenceAny3DAvatar":
        return InferenceAny3DAvatar(self)

    def load_backbone(self, path: str) -> None:
        """Load pretrained conv feature weights (v2) from a local safetensors file: keys as in
        ``encoder.features`` (a ``features.`` or ``encoder.features.`` prefix is accepted). Never downloads."""
        from safetensors.torch import load_file

        if not self.v2:
            raise ValueError("backbone: only arch_version 2 has the convolutional feature pathway")
        sd = load_file(path)
        for prefix in ("encoder.features.", "features."):
            if any(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
                break
        self.encoder.features.load_state_dict(sd, strict=True)

    @property
    def num_gaussians(self) -> int:
        return self.cfg.n_anchors * self.cfg.gaussians_per_anchor

    @property
    def noise_shape(self) -> tuple[int, ...] | None:
        """Shape of one sample's training randomness (what the trainer draws per step as standard
        normals), None when there is none. v2: (M * k * P + 1,): eps flattened, then the draw that sets t."""
        if self.v2:
            return (self.x_scaffold.numel() + 1,) if self.cfg.train_noise else None
        return tuple(self.x_scaffold.shape) if self.cfg.t_star > 0 else None


class InferenceAny3DAvatar(nn.Module):
    """The deployable graph: encoder, scaffold tokens, denoiser and decoder; no auxiliary head (not
    in its modules, parameters or state dict)."""

    def __init__(self, m: Any3DAvatar) -> None:
        super().__init__()
        self.cfg, self.v2, self.sh_degree, self.P, self.g = m.cfg, m.v2, m.sh_degree, m.P, m.g
        for name, child in m.named_children():
            if name != "aux":
                setattr(self, name, child)
        for name in ("plucker_embed", "group_in"):
            if getattr(m, name) is None:
                setattr(self, name, None)
        persistent = set(m.state_dict(keep_vars=True))
        for name, buf in m.named_buffers(recurse=False):
            self.register_buffer(name, buf, persistent=name in persistent)
        self.training = False

    anchor_tokens = Any3DAvatar.anchor_tokens
    sample_features = Any3DAvatar.sample_features
    _sample_features = Any3DAvatar._sample_features
    image_features = Any3DAvatar.image_features
    sigma = Any3DAvatar.sigma
    noise_shape = Any3DAvatar.noise_shape
    noised_state = Any3DAvatar.noised_state
    denoise = Any3DAvatar.denoise
    decode = Any3DAvatar.decode
    activate = Any3DAvatar.activate

    @torch.no_grad()
    def forward(self, image: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, t: float | None = None) -> Gaussians:
        """One deterministic step from the scaffold at t_star (or ``t``)."""
        img_tokens, feat_map = self.encoder(image)
        x_t, tt = self.noised_state(image.shape[0], None, self.cfg.t_star if t is None else t, image.device)
        return self.decode(self.denoise(img_tokens, feat_map, w2c, K, x_t, tt))
