"""CPU ray-cast renderer of head assets (Embree through embreex, shading in numpy).

Shading model, in linear RGB: Lambert diffuse from a hemisphere ambient (sky/ground) plus a key
and a fill directional light, Blinn-Phong specular with a Schlick Fresnel term, optional hard
shadows of the key light (shadow rays), one refraction-free transparency layer for lenses.
Anti-aliasing is s x s stratified supersampling, box-filtered. All views of a head rendered with
one :class:`Lighting` are 3D-consistent (lights are fixed in the head frame).

Outputs per view: sRGB colour composited on a background, alpha (coverage), camera-z depth,
world-space normals and the part id under each pixel centre-ish sample.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..appearance import linear_to_srgb, srgb_to_linear
from ..assets import MATERIALS, HeadAsset
from ..cameras import Camera
from ..geometry import RayCaster, vertex_normals

_SRGB_LUT = srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)


def _unit(v: Any) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


@dataclass
class Lighting:
    """Head-frame lighting shared by all views of one head."""

    key_dir: tuple[float, float, float] = (0.4, 0.5, 0.75)  # towards the light
    key_color: tuple[float, float, float] = (1.6, 1.55, 1.5)
    fill_dir: tuple[float, float, float] = (-0.6, 0.1, 0.5)
    fill_color: tuple[float, float, float] = (0.45, 0.48, 0.55)
    sky: tuple[float, float, float] = (0.45, 0.47, 0.52)
    ground: tuple[float, float, float] = (0.18, 0.16, 0.15)
    shadows: bool = True

    @classmethod
    def sample(cls, rng: np.random.Generator, shadows: bool = True) -> "Lighting":
        """A random plausible studio/outdoor set-up (key from the front hemisphere, warm or cool)."""
        yaw, pitch = rng.uniform(-70, 70), rng.uniform(10, 55)
        y, p = np.radians(yaw), np.radians(pitch)
        key = (np.sin(y) * np.cos(p), np.sin(p), np.cos(y) * np.cos(p))
        temp = rng.uniform(-1, 1)
        kc = np.array([1.0 + 0.08 * temp, 1.0, 1.0 - 0.08 * temp]) * rng.uniform(1.0, 1.6)
        fill = (-key[0], rng.uniform(-0.1, 0.3), abs(key[2]) + 0.2)
        amb = rng.uniform(0.25, 0.45)
        return cls(tuple(key), tuple(kc), tuple(fill), tuple(np.array([0.5, 0.52, 0.58]) * rng.uniform(0.3, 0.8)),
                   tuple(np.array([1.0, 1.02, 1.1]) * amb), tuple(np.array([0.4, 0.36, 0.33]) * amb), shadows)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class RenderOutput:
    rgb: np.ndarray  # (H, W, 3) uint8 sRGB, composited on the background
    alpha: np.ndarray  # (H, W) float32 coverage in [0, 1]
    depth: np.ndarray  # (H, W) float32 camera z in metres, 0 where empty
    normal: np.ndarray  # (H, W, 3) float32 world normals, 0 where empty
    part: np.ndarray  # (H, W) int16 part index, -1 where empty
    extras: dict[str, Any] = field(default_factory=dict)


class HeadRenderer:
    """Renders one :class:`HeadAsset` from any number of cameras."""

    def __init__(self, asset: HeadAsset) -> None:
        self.asset = asset
        verts, faces = asset.merged()
        self.caster = RayCaster(verts, faces)
        self.face_part = np.concatenate([np.full(len(p.faces), i, np.int16) for i, p in enumerate(asset.parts)])
        self.face_offset = np.cumsum([0] + [len(p.faces) for p in asset.parts])
        self.corner_normals = np.concatenate([vertex_normals(p.vertices, p.faces)[p.faces] for p in asset.parts])
        self.opacity = np.array([p.opacity for p in asset.parts], np.float32)
        self.spec = np.array([MATERIALS[p.material] for p in asset.parts], np.float32)
        self.textures = [p.texture for p in asset.parts]
        self.textures_lin = [None if t is None else _SRGB_LUT[t] for t in self.textures]
        self.corner_colors = np.concatenate([
            (srgb_to_linear(p.vertex_colors)[p.faces] if p.vertex_colors is not None else np.zeros((len(p.faces), 3, 3)))
            for p in asset.parts]).astype(np.float32)
        self.corner_uv = np.concatenate([
            p.face_uv if p.face_uv is not None else np.zeros((len(p.faces), 3, 2), np.float32) for p in asset.parts])

    # -- shading ----------------------------------------------------------------------------
    def _albedo(self, prim: np.ndarray, bary: np.ndarray) -> np.ndarray:
        parts = self.face_part[prim]
        out = np.einsum("nk,nkc->nc", bary, self.corner_colors[prim])
        for i, tex in enumerate(self.textures_lin):
            if tex is None:
                continue
            sel = np.flatnonzero(parts == i)
            if not len(sel):
                continue
            uv = np.einsum("nk,nkc->nc", bary[sel], self.corner_uv[prim[sel]])
            out[sel] = _bilinear(tex, uv)
        return out

    def _shade(self, prim: np.ndarray, bary: np.ndarray, pos: np.ndarray, view: np.ndarray, light: Lighting,
               shadows: bool) -> tuple[np.ndarray, np.ndarray]:
        n = np.einsum("nk,nkc->nc", bary, self.corner_normals[prim])
        n /= np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-9)[:, None]
        flip = np.einsum("ij,ij->i", n, view) < 0  # two-sided: face the viewer (view points to the camera)
        n[flip] *= -1
        albedo = self._albedo(prim, bary)
        ks, shin = self.spec[self.face_part[prim]].T
        up = 0.5 + 0.5 * n[:, 1:2]
        col = albedo * (np.asarray(light.sky) * up + np.asarray(light.ground) * (1 - up))
        for k, (ldir, lcol) in enumerate([(light.key_dir, light.key_color), (light.fill_dir, light.fill_color)]):
            ell = _unit(ldir).astype(np.float32)
            ndl = np.clip(n @ ell, 0, None)
            vis = np.ones(len(n), np.float32)
            if k == 0 and shadows:
                lit = np.flatnonzero(ndl > 0)
                hit = self.caster.cast(pos[lit] + n[lit] * 1e-4, np.broadcast_to(ell, (len(lit), 3)))
                vis[lit[hit["primID"] >= 0]] = 0.0
            h = view + ell
            h /= np.maximum(np.sqrt(np.einsum("ij,ij->i", h, h)), 1e-9)[:, None]
            fres = 0.04 + 0.96 * (1 - np.clip(np.einsum("ij,ij->i", view, h), 0, 1)) ** 5
            spec = ks * (shin + 8) / (8 * np.pi) * np.clip(np.einsum("ij,ij->i", n, h), 0, 1) ** shin * fres * 4
            col += (albedo * ndl[:, None] + spec[:, None] * (ndl > 0)[:, None]) * (vis[:, None] * np.asarray(lcol))
        return col.astype(np.float32), n

    # -- rendering --------------------------------------------------------------------------
    def _trace(self, o: np.ndarray, d: np.ndarray, light: Lighting, bg_lin: np.ndarray, cam_z: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Shade rays: linear colour (0 on misses), hit mask, camera-z depth, normal, part id."""
        hit = self.caster.cast(o, d)
        prim = hit["primID"]
        valid = np.flatnonzero(prim >= 0)
        n = len(d)
        color = np.zeros((n, 3), np.float32)
        normal = np.zeros((n, 3), np.float32)
        depth = np.zeros(n, np.float32)
        part = np.full(n, -1, np.int16)
        if len(valid):
            p = prim[valid]
            t = hit["tfar"][valid]
            dv = d[valid]
            bary = np.stack([1 - hit["u"][valid] - hit["v"][valid], hit["u"][valid], hit["v"][valid]], 1)
            pos = o[valid] + dv * t[:, None]
            c, nrm = self._shade(p, bary, pos, -dv, light, light.shadows)
            alpha = self.opacity[self.face_part[p]]
            see = np.flatnonzero(alpha < 1.0)  # one transparency layer (lenses)
            if len(see):
                h2 = self.caster.cast(pos[see] + dv[see] * 1e-4, dv[see])
                behind = np.repeat(bg_lin[None], len(see), 0).astype(np.float32)
                ok = np.flatnonzero(h2["primID"] >= 0)
                if len(ok):
                    b2 = np.stack([1 - h2["u"][ok] - h2["v"][ok], h2["u"][ok], h2["v"][ok]], 1)
                    pos2 = pos[see][ok] + dv[see][ok] * h2["tfar"][ok][:, None]
                    behind[ok], _ = self._shade(h2["primID"][ok], b2, pos2, -dv[see][ok], light, False)
                a = alpha[see][:, None]
                c[see] = a * c[see] + (1 - a) * behind
            color[valid] = c
            normal[valid] = nrm
            depth[valid] = t * (dv @ cam_z)
            part[valid] = self.face_part[p]
        return color, prim >= 0, depth, normal, part

    def render(self, cam: Camera, light: Lighting | None = None, supersample: int = 2,
               background: tuple[float, float, float] = (1.0, 1.0, 1.0), adaptive: bool = True) -> RenderOutput:
        """Render one view. ``supersample = s`` anti-aliases with s x s rays per pixel: on every
        pixel (``adaptive=False``) or only where the pixel or a 4-neighbour differs in what its
        centre ray hits (background, part): silhouettes and part boundaries, where aliasing is."""
        from ..cameras import pixel_grid, rays_through

        light = light or Lighting()
        s = int(supersample)
        H, W = cam.height, cam.width
        bg = srgb_to_linear(np.asarray(background)).astype(np.float32)
        cam_z = cam.w2c[2, :3].astype(np.float32)

        def trace(uv: np.ndarray):
            o, d = rays_through(cam.w2c, cam.K, uv)
            return self._trace(np.ascontiguousarray(o, np.float32), np.ascontiguousarray(d, np.float32), light, bg, cam_z)

        if not adaptive or s == 1:
            color, hit, depth, normal, part = trace(pixel_grid(W, H, s))
            cov = hit.astype(np.float32).reshape(H, s, W, s).mean((1, 3))
            lin = color.reshape(H, s, W, s, 3).mean((1, 3))
            hits = np.maximum(hit.reshape(H, s, W, s).sum((1, 3)), 1)
            dep = depth.reshape(H, s, W, s).sum((1, 3)) / hits
            nor = normal.reshape(H, s, W, s, 3).sum((1, 3))
            nor /= np.maximum(np.linalg.norm(nor, axis=-1, keepdims=True), 1e-9)
            prt = part.reshape(H, s, W, s)[:, s // 2, :, s // 2]
        else:
            color, hit, depth, normal, part = trace(pixel_grid(W, H, 1))
            key = part.reshape(H, W)
            edge = np.zeros((H, W), bool)
            dx, dy = key[:, 1:] != key[:, :-1], key[1:] != key[:-1]
            edge[:, 1:] |= dx
            edge[:, :-1] |= dx
            edge[1:] |= dy
            edge[:-1] |= dy
            lin = color.reshape(H, W, 3)
            cov = hit.reshape(H, W).astype(np.float32)
            rows, cols = np.nonzero(edge)
            if len(rows):
                off = (np.stack(np.meshgrid(np.arange(s), np.arange(s)), -1).reshape(-1, 2) + 0.5) / s
                uv = (np.stack([cols, rows], 1)[:, None, :] + off[None]).reshape(-1, 2)
                c2, h2, _, _, _ = trace(uv)
                lin[rows, cols] = c2.reshape(-1, s * s, 3).mean(1)
                cov[rows, cols] = h2.reshape(-1, s * s).mean(1)
            dep, nor, prt = depth.reshape(H, W), normal.reshape(H, W, 3), key
        rgb = linear_to_srgb(_tonemap(lin) + bg * (1 - cov[..., None]))
        return RenderOutput((rgb * 255 + 0.5).astype(np.uint8), cov.astype(np.float32), dep.astype(np.float32),
                            nor.astype(np.float32), prt.astype(np.int16))


def _tonemap(c: np.ndarray) -> np.ndarray:
    """Soft shoulder above 0.8 so highlights roll off instead of clipping."""
    return np.where(c < 0.8, c, 0.8 + 0.2 * np.tanh((c - 0.8) / 0.2))


def _bilinear(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup with wrap-around; ``uv`` has v up (OBJ)."""
    H, W = tex.shape[:2]
    x = (uv[:, 0] % 1.0) * W - 0.5
    y = (1.0 - uv[:, 1] % 1.0) * H - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0 %= W
    y0 %= H
    x1, y1 = (x0 + 1) % W, (y0 + 1) % H
    return ((1 - fx) * (1 - fy) * tex[y0, x0] + fx * (1 - fy) * tex[y0, x1] + (1 - fx) * fy * tex[y1, x0]
            + fx * fy * tex[y1, x1])
