"""CPU ray-cast renderer of head assets (Embree through embreex, shading in numpy).

Shading model, in linear RGB: diffuse ambient from an order-2 spherical-harmonics environment plus
1-3 directional or point lights (:mod:`.lighting`), Blinn-Phong specular with a Schlick Fresnel term
(strength and shininess scaled per texel by a part's ``spec_map``: pores, T-zone), a soft subsurface
look on skin (per-channel softened falloff: red light reaches furthest towards the terminator), optional hard
shadows of the key light (one shadow ray), one refraction-free transparency layer for lenses, and
alpha-textured hair cards blended front to back with Kajiya-Kay strand shading under the same lights.
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
MAX_LAYERS = 2  # surfaces one ray meets (hair cards, lenses): a second card hit closes the pixel
ALPHA_SKIP = 0.02  # card texels below this alpha are passed through unshaded (alpha test)
TRANS_STOP = 0.02  # a ray stops once less than this much of what is behind could show


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
        self.textures_lin = [None if t is None else _SRGB_LUT[t[..., :3]] for t in self.textures]
        # spec maps: (H, W, 2) uint8, specular strength and shininess scales (128 = 1x); None = the material's
        self.spec_maps = [None if getattr(p, "spec_map", None) is None else p.spec_map.astype(np.float32) / 128.0
                          for p in asset.parts]
        sss = float(asset.meta.get("look", {}).get("subsurface", 1.0))
        self.scatter = np.array([SKIN_SCATTER * sss if p.material == "skin" else np.zeros(3) for p in asset.parts], np.float32)
        self._init_cards(asset)
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
            out[sel] = _bilinear_flat(tex, uv)
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
                keep = ~self.caster.occluded(pos[lit] + n[lit] * 1e-3 + ell * 1e-3, ell)
                lit, nl, ell = lit[keep], nl[keep], ell[keep]
                lcol = lcol[keep] if len(lcol) > 1 else lcol
            # soft scatter: (n.l)^(1 / (1 + 2 w)) per channel (w = 0 is Lambert): red rises fastest from the
            # terminator, a reddish soft band; nothing past the terminator, so cast shadows stay consistent
            diff = np.repeat(nl[:, None], 3, 1)
            sk = np.flatnonzero(scatter[lit, 0] > 0)
            if len(sk):  # x ** a = exp(a log x): one log for the three channels
                diff[sk] = np.exp(np.log(nl[sk])[:, None] * (1.0 / (1.0 + 2.0 * scatter[lit[sk]])))
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

    # -- alpha-textured hair cards ------------------------------------------------------------
    def _init_cards(self, asset: HeadAsset) -> None:
        """Parts with an RGBA texture are alpha cards (hair): their texel alpha is coverage, and each
        face carries the strand tangent (the direction of increasing texture v) for hair shading."""
        self.card_part = np.array([p.texture is not None and p.texture.shape[-1] == 4 for p in asset.parts])
        self.rgba_lin = [None if not c else np.concatenate([_SRGB_LUT[p.texture[..., :3]], p.texture[..., 3:] / 255.0], -1)
                         .astype(np.float32) for c, p in zip(self.card_part, asset.parts)]
        # edge keys for adaptive supersampling: all hair parts (scalp cover, cards, bun) are one surface, so
        # card over cover or card over card is no edge (card alpha is already coverage); hair over skin is
        hair = [i for i, p in enumerate(asset.parts) if p.name.startswith("hair")]  # not the lashes
        self.edge_group = np.arange(len(asset.parts), dtype=np.int16)
        if hair:
            self.edge_group[hair] = hair[0]
        self.hair_key = hair[0] if hair else -2
        self.face_tangent = np.zeros((len(self.face_part), 3), np.float32)
        for i in np.flatnonzero(self.card_part):
            p = asset.parts[i]
            tri = p.vertices[p.faces].astype(np.float64)
            uv = p.face_uv.astype(np.float64)
            e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
            d1, d2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
            det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
            det = np.where(np.abs(det) < 1e-12, 1e-12, det)
            tv = (e2 * d1[:, :1] - e1 * d2[:, :1]) / det[:, None]  # dP/dv
            self.face_tangent[self.face_offset[i]:self.face_offset[i + 1]] = tv / np.maximum(
                np.linalg.norm(tv, axis=1, keepdims=True), 1e-12)

    def _card_rgba(self, prim: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Linear RGB and alpha of card hits (all ``prim`` on card parts)."""
        parts = self.face_part[prim]
        out = np.zeros((len(prim), 4), np.float32)
        for i in np.flatnonzero(self.card_part):
            sel = np.flatnonzero(parts == i)
            if len(sel):
                uv = np.einsum("nk,nkc->nc", bary[sel], self.corner_uv[prim[sel]])
                out[sel] = _bilinear_flat(self.rgba_lin[i], uv)
        return out

    def _shade_hair(self, prim: np.ndarray, bary: np.ndarray, albedo: np.ndarray, pos: np.ndarray, view: np.ndarray,
                    light: Lighting, shadows: bool) -> tuple[np.ndarray, np.ndarray]:
        """Kajiya-Kay hair shading along the card's strand tangent under the same lighting as the rest
        of the head: ambient is the SH environment's irradiance at the card normal (hair is a volume, so
        it is not tangent-based); each light (directional or point, with the same falloff as ``_shade``)
        adds a diffuse term that follows the angle to the strand (sin T.L, wrapped around the card
        normal), a white primary highlight shifted towards the tip and a tinted secondary one shifted
        towards the root. Hard shadows of the key light (the first light) soften to 35% (light passes
        between strands)."""
        n = np.einsum("nk,nkc->nc", bary, self.corner_normals[prim]).astype(np.float32, copy=False)
        n *= (np.sign(np.einsum("ij,ij->i", n, view)) / np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-9))[:, None]
        t = self.face_tangent[prim]
        irr = sh_irradiance(n, light.sh_matrix())
        spec_acc = np.zeros((len(n), 3), np.float32)
        t1 = t + 0.15 * n  # highlight shifts (cuticle tilt): primary towards the tip, secondary towards the root
        t2 = t - 0.25 * n
        t1 /= np.sqrt(np.einsum("ij,ij->i", t1, t1))[:, None]
        t2 /= np.sqrt(np.einsum("ij,ij->i", t2, t2))[:, None]
        for k, lt in enumerate(light.lights):
            if lt.kind == "point":
                to_l = np.asarray(lt.vector, np.float32)[None] - pos
                dist2 = np.einsum("ij,ij->i", to_l, to_l)
                ell = to_l / np.sqrt(dist2)[:, None]
                lcol = np.asarray(lt.color, np.float32)[None] * (float(np.dot(lt.vector, lt.vector)) / dist2)[:, None]
                ndl, tl = np.einsum("ij,ij->i", n, ell), np.einsum("ij,ij->i", t, ell)
            else:
                e = _unit(lt.vector).astype(np.float32)
                ell = np.broadcast_to(e, n.shape)
                lcol = np.asarray(lt.color, np.float32)[None]
                ndl, tl = n @ e, t @ e
            wrap = np.clip((ndl + 0.4) * (1 / 1.4), 0, 1)
            diff = np.sqrt(np.clip(1 - tl * tl, 0, 1)) * wrap
            if k == 0 and shadows:
                lit = np.flatnonzero(wrap > 0)
                if len(lit):
                    shade = np.ones(len(n), np.float32)
                    shade[lit[self.caster.occluded(pos[lit] + ell[lit] * 1e-3, ell[lit])]] = 0.35
                    wrap *= shade
                    diff *= shade
            h = view + ell
            h /= np.sqrt(np.einsum("ij,ij->i", h, h))[:, None]
            th1, th2 = np.einsum("ij,ij->i", t1, h), np.einsum("ij,ij->i", t2, h)
            x1 = np.clip(1 - th1 * th1, 0, 1)  # sin^2(T, H); powers by squaring (np.power is slow)
            x2 = np.clip(1 - th2 * th2, 0, 1)
            x1_8 = x1 * x1
            x1_8 *= x1_8
            x1_8 *= x1_8
            x1_32 = x1_8 * x1_8
            x1_32 *= x1_32
            x2_2 = x2 * x2
            x2_8 = x2_2 * x2_2
            x2_8 *= x2_8
            s1 = x1_32 * x1_8  # sin(T, H) ** 80
            s2 = x2_8 * x2_2  # sin(T, H) ** 20
            irr += (diff + 0.25 * s2 * wrap)[:, None] * lcol
            spec_acc += (0.12 * s1 * wrap)[:, None] * lcol
        return (albedo * irr + spec_acc).astype(np.float32), n

    # -- rendering --------------------------------------------------------------------------
    def _trace(self, o: np.ndarray, d: np.ndarray, light: Lighting, bg_lin: np.ndarray, cam_z: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Shade rays front to back: linear colour (premultiplied, 0 on misses), coverage in [0, 1],
        camera-z depth, normal, part id, and the edge key: the first part hit (hair parts as one).

        A ray continues past surfaces that let light through, up to ``MAX_LAYERS`` hits: alpha cards
        (hair: texel alpha is strand coverage; texels below ``ALPHA_SKIP`` are passed without shading)
        and the transparent lens layer. Colour and coverage accumulate front to back; depth, normal and
        part are those of the first opaque-enough hit: an opaque part, or the card where the coverage
        reaches 0.5 (else the first card hit)."""
        n = len(d)
        color = np.zeros((n, 3), np.float32)
        normal = np.zeros((n, 3), np.float32)
        depth = np.zeros(n, np.float32)
        part = np.full(n, -1, np.int16)
        trans = np.ones(n, np.float32)
        done = np.zeros(n, bool)  # depth etc. recorded
        idx = np.arange(n)
        org = o
        dist = np.zeros(n, np.float32)  # ray length up to the current origin
        behind_lens = np.zeros(n, bool)
        key = np.full(n, -1, np.int16)  # the first part hit: where adaptive supersampling looks for edges
        for layer in range(MAX_LAYERS):
            hit = self.caster.cast(org, d[idx])
            ok = np.flatnonzero(hit["primID"] >= 0)
            if not len(ok):
                break
            idx, org = idx[ok], org[ok]
            p = hit["primID"][ok]
            t = hit["tfar"][ok]
            dv = d[idx]
            bary = np.stack([1 - hit["u"][ok] - hit["v"][ok], hit["u"][ok], hit["v"][ok]], 1)
            pos = org + dv * t[:, None]
            t = t + dist[idx]  # from the camera, over the layers passed
            parts = self.face_part[p]
            alpha = self.opacity[parts].copy()
            card = self.card_part[parts]
            c = np.zeros((len(p), 3), np.float32)
            nrm = np.zeros((len(p), 3), np.float32)
            if card.any():
                ci = np.flatnonzero(card)
                rgba = self._card_rgba(p[ci], bary[ci])
                a = alpha[ci] * rgba[:, 3]
                if layer == MAX_LAYERS - 1:  # the last layer closes the pixel, gaps included (their colour is the
                    a = alpha[ci]  # hair's base colour): inside a hairdo no ray runs out of layers onto the background
                alpha[ci] = np.where(a < ALPHA_SKIP, 0.0, a)
                sh = ci[alpha[ci] > 0]
                if len(sh):
                    c[sh], nrm[sh] = self._shade_hair(p[sh], bary[sh], rgba[alpha[ci] > 0, :3], pos[sh], -dv[sh], light,
                                                      light.shadows and layer == 0)
            # opaque parts: shadow rays only for the first surface (what is seen through a lens or between strands
            # is shaded without, as the one lens layer always was)
            for oi, shadows in ((np.flatnonzero(~card & ~behind_lens[idx]), light.shadows and layer == 0),
                                (np.flatnonzero(~card & behind_lens[idx]), False)):
                if len(oi):
                    c[oi], nrm[oi] = self._shade(p[oi], bary[oi], pos[oi], -dv[oi], light, shadows)
            behind_lens[idx[~card & (alpha < 1)]] = True
            w = trans[idx] * alpha
            color[idx] += w[:, None] * c
            trans[idx] *= 1 - alpha
            rec = ~done[idx] & ((~card) | (trans[idx] <= 0.5) | ((alpha > 0) & (depth[idx] == 0)))
            ri = idx[rec]
            depth[ri] = t[rec] * (dv[rec] @ cam_z)
            normal[ri] = nrm[rec]
            part[ri] = parts[rec]
            done[ri] = (~card[rec]) | (trans[ri] <= 0.5)
            if layer == 0:  # the first surface hit, transparent texels included: texel alpha is coverage already, so
                key[idx] = self.edge_group[parts]  # gaps in a card are no edges (its outline and hair over skin are)
            go = np.flatnonzero(trans[idx] > TRANS_STOP)
            if not len(go):
                break
            idx = idx[go]
            dist[idx] = t[go] + 1e-4
            org = np.ascontiguousarray(pos[go] + dv[go] * 1e-4, np.float32)
        return color, 1.0 - trans, depth, normal, part, key

    def render(self, cam: Camera, light: Lighting | None = None, supersample: int = 2,
               background: tuple[float, float, float] = (1.0, 1.0, 1.0), adaptive: bool = True) -> RenderOutput:
        """Render one view. ``supersample = s`` anti-aliases with s x s rays per pixel: on every
        pixel (``adaptive=False``) or only where the pixel or a 4-neighbour differs in what its
        centre ray hits first (background, part; all hair parts count as one) and on hair that the
        background shows through: silhouettes, part boundaries and the fringe of a hairdo, where
        aliasing is. Inside hair one ray per pixel reads the card texture, whose alpha is coverage."""
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
            color, hit, depth, normal, part, _ = trace(pixel_grid(W, H, s))
            cov = hit.astype(np.float32).reshape(H, s, W, s).mean((1, 3))
            lin = color.reshape(H, s, W, s, 3).mean((1, 3))
            hits = np.maximum((depth > 0).reshape(H, s, W, s).sum((1, 3)), 1)
            dep = depth.reshape(H, s, W, s).sum((1, 3)) / hits
            nor = normal.reshape(H, s, W, s, 3).sum((1, 3))
            nor /= np.maximum(np.linalg.norm(nor, axis=-1, keepdims=True), 1e-9)
            prt = part.reshape(H, s, W, s)[:, s // 2, :, s // 2]
        else:
            color, hit, depth, normal, part, first = trace(pixel_grid(W, H, 1))
            key = first.reshape(H, W)  # hair parts are one key: card alpha is already coverage
            edge = np.zeros((H, W), bool)
            dx, dy = key[:, 1:] != key[:, :-1], key[1:] != key[:-1]
            edge[:, 1:] |= dx
            edge[:, :-1] |= dx
            edge[1:] |= dy
            edge[:-1] |= dy
            lin = color.reshape(H, W, 3)
            cov = hit.reshape(H, W).astype(np.float32)
            # hair that the background shows through (the fringe of a hairdo, strands between gaps): one centre
            # ray there may pass a gap beside a sub-pixel strand clump, so these pixels are supersampled too
            edge |= (key == self.hair_key) & (cov < 1.0 - TRANS_STOP)
            rows, cols = np.nonzero(edge)
            if len(rows):
                off = (np.stack(np.meshgrid(np.arange(s), np.arange(s)), -1).reshape(-1, 2) + 0.5) / s
                uv = (np.stack([cols, rows], 1)[:, None, :] + off[None]).reshape(-1, 2)
                c2, h2, _, _, _, _ = trace(uv)
                lin[rows, cols] = c2.reshape(-1, s * s, 3).mean(1)
                cov[rows, cols] = h2.reshape(-1, s * s).mean(1)
            dep, nor, prt = depth.reshape(H, W), normal.reshape(H, W, 3), part.reshape(H, W)
        # empty pixels are the background: tone-map and encode only the covered ones (same values, less work)
        out = np.empty((H, W, 3), np.uint8)
        out[...] = (linear_to_srgb(bg) * 255 + 0.5).astype(np.uint8)
        fg = cov > 0
        out[fg] = (linear_to_srgb(_tonemap(lin[fg]) + bg * (1 - cov[fg][:, None])) * 255 + 0.5).astype(np.uint8)
        return RenderOutput(out, cov.astype(np.float32), dep.astype(np.float32),
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


def _bilinear_flat(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """:func:`_bilinear` in float32 with flat gathers (the hot path of alpha cards)."""
    H, W, C = tex.shape
    flat = tex.reshape(-1, C)
    uv = uv.astype(np.float32)
    x = (uv[:, 0] % 1.0) * W - 0.5
    y = (1.0 - uv[:, 1] % 1.0) * H - 0.5
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = (x - xf)[:, None], (y - yf)[:, None]
    x0, y0 = xf.astype(np.int32) % W, yf.astype(np.int32) % H
    x1, y1 = (x0 + 1) % W, (y0 + 1) % H
    r0, r1 = y0 * W, y1 * W
    top = flat[r0 + x0] * (1 - fx) + flat[r0 + x1] * fx
    bot = flat[r1 + x0] * (1 - fx) + flat[r1 + x1] * fx
    return top * (1 - fy) + bot * fy


def _nearest(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest-texel lookup with wrap-around; ``uv`` has v up (OBJ)."""
    H, W = tex.shape[:2]
    x = ((uv[:, 0] % 1.0) * W).astype(np.int64) % W
    y = ((1.0 - uv[:, 1] % 1.0) * H).astype(np.int64) % H
    return tex[y, x]
