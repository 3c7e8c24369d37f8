"""CPU ray-cast renderer of head assets (Embree through embreex, shading in numpy).

Shading model, in linear RGB: diffuse ambient from an order-2 spherical-harmonics environment plus
1-3 directional or point lights (:mod:`.lighting`), Blinn-Phong specular with a Schlick Fresnel term
(strength and shininess scaled per texel by a part's ``spec_map``: pores, T-zone), a soft subsurface
look on skin (per-channel softened falloff: red light reaches furthest towards the terminator), optional hard
shadows of the key light (one shadow ray), one refraction-free transparency layer for lenses.
Anti-aliasing is s x s stratified supersampling, box-filtered. All views of a head rendered with
one :class:`Lighting` are 3D-consistent (lights are fixed in the head frame).

Outputs per view: sRGB colour composited on a background, alpha (coverage), camera-z depth,
world-space normals and the part id under each pixel centre-ish sample.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..appearance import linear_to_srgb, srgb_to_linear
from ..assets import MATERIALS, HeadAsset
from ..cameras import Camera
from ..geometry import RayCaster, vertex_normals
from .lighting import Light, Lighting, sh_irradiance

__all__ = ["HeadRenderer", "Light", "Lighting", "RenderOutput"]

_SRGB_LUT = srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)


# Per-channel softness of the diffuse falloff on skin (subsurface look): red scatters furthest.
SKIN_SCATTER = np.array([0.22, 0.11, 0.075], np.float32)


def _unit(v: Any) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


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
        # spec maps: (H, W, 2) uint8, specular strength and shininess scales (128 = 1x); None = the material's
        self.spec_maps = [None if getattr(p, "spec_map", None) is None else p.spec_map.astype(np.float32) / 128.0
                          for p in asset.parts]
        sss = float(asset.meta.get("look", {}).get("subsurface", 1.0))
        self.scatter = np.array([SKIN_SCATTER * sss if p.material == "skin" else np.zeros(3) for p in asset.parts], np.float32)
        self.corner_colors = np.concatenate([
            (srgb_to_linear(p.vertex_colors)[p.faces] if p.vertex_colors is not None else np.zeros((len(p.faces), 3, 3)))
            for p in asset.parts]).astype(np.float32)
        self.corner_uv = np.concatenate([
            p.face_uv if p.face_uv is not None else np.zeros((len(p.faces), 3, 2), np.float32) for p in asset.parts])

    # -- shading ----------------------------------------------------------------------------
    def _albedo(self, prim: np.ndarray, bary: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Linear albedo, specular strength and shininess at each hit."""
        parts = self.face_part[prim]
        out = np.einsum("nk,nkc->nc", bary, self.corner_colors[prim])
        ks, shin = self.spec[parts].T
        for i, tex in enumerate(self.textures_lin):
            if tex is None:
                continue
            sel = np.flatnonzero(parts == i)
            if not len(sel):
                continue
            uv = np.einsum("nk,nkc->nc", bary[sel], self.corner_uv[prim[sel]])
            out[sel] = _bilinear(tex, uv)
            sm = self.spec_maps[i]
            if sm is not None:
                m = _nearest(sm, uv)
                ks[sel] *= m[:, 0]
                shin[sel] *= m[:, 1]
        return out, ks, shin

    def _shade(self, prim: np.ndarray, bary: np.ndarray, pos: np.ndarray, view: np.ndarray, light: Lighting,
               shadows: bool) -> tuple[np.ndarray, np.ndarray]:
        n = np.einsum("nk,nkc->nc", bary, self.corner_normals[prim])
        n /= np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-9)[:, None]
        flip = np.einsum("ij,ij->i", n, view) < 0  # two-sided: face the viewer (view points to the camera)
        n[flip] *= -1
        albedo, ks, shin = self._albedo(prim, bary)
        scatter = self.scatter[self.face_part[prim]]  # (N, 3), 0 off skin
        irr = sh_irradiance(n, light.sh_matrix())  # diffuse ambient
        spec_acc = np.zeros((len(n), 3), np.float32)
        for k, lt in enumerate(light.lights):
            if lt.kind == "point":
                to_l = np.asarray(lt.vector, np.float32)[None] - pos
                dist2 = np.einsum("ij,ij->i", to_l, to_l)
                ell = to_l / np.sqrt(dist2)[:, None]
                ndl = np.einsum("ij,ij->i", n, ell)
            else:
                e = _unit(lt.vector).astype(np.float32)
                ndl = n @ e
            lit = np.flatnonzero(ndl > 0)  # only lit points get diffuse, specular and a shadow ray
            if not len(lit):
                continue
            nl = ndl[lit]
            if lt.kind == "point":
                ell = ell[lit]
                lcol = np.asarray(lt.color, np.float32)[None] * (float(np.dot(lt.vector, lt.vector)) / dist2[lit])[:, None]
            else:
                ell = np.broadcast_to(e, (len(lit), 3))
                lcol = np.asarray(lt.color, np.float32)[None]
            if k == 0 and shadows:
                # 1 mm off the surface: coarse meshes with smooth normals shadow themselves near the terminator
                hit = self.caster.cast(pos[lit] + n[lit] * 1e-3 + ell * 1e-3, np.ascontiguousarray(ell))
                keep = hit["primID"] < 0
                lit, nl, ell = lit[keep], nl[keep], ell[keep]
                lcol = lcol[keep] if len(lcol) > 1 else lcol
            # soft scatter: (n.l)^(1 / (1 + 2 w)) per channel (w = 0 is Lambert): red rises fastest from the
            # terminator, a reddish soft band; nothing past the terminator, so cast shadows stay consistent
            diff = np.repeat(nl[:, None], 3, 1)
            sk = np.flatnonzero(scatter[lit, 0] > 0)
            if len(sk):
                diff[sk] = diff[sk] ** (1.0 / (1.0 + 2.0 * scatter[lit[sk]]))
            v = view[lit]
            h = v + ell
            h /= np.maximum(np.sqrt(np.einsum("ij,ij->i", h, h)), 1e-9)[:, None]
            fres = 0.04 + 0.96 * (1 - np.clip(np.einsum("ij,ij->i", v, h), 0, 1)) ** 5
            sh_ = shin[lit]
            spec = ks[lit] * (sh_ + 8) / (8 * np.pi) * np.clip(np.einsum("ij,ij->i", n[lit], h), 0, 1) ** sh_ * fres * 4
            irr[lit] += diff * lcol
            spec_acc[lit] += spec[:, None] * lcol
        col = albedo * irr + spec_acc
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


def _nearest(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest-texel lookup with wrap-around; ``uv`` has v up (OBJ)."""
    H, W = tex.shape[:2]
    x = ((uv[:, 0] % 1.0) * W).astype(np.int64) % W
    y = ((1.0 - uv[:, 1] % 1.0) * H).astype(np.int64) % H
    return tex[y, x]


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
