"""CPU ray-cast renderer of head assets (Embree through embreex, shading in numpy).

Shading model, in linear RGB: diffuse ambient from an order-2 spherical-harmonics environment plus
1-3 directional or point lights (:mod:`.lighting`), Blinn-Phong specular with a Schlick Fresnel term
(strength and shininess scaled per texel by a part's ``spec_map``: pores, T-zone), a soft subsurface
look on skin (per-channel softened falloff: red light reaches furthest towards the terminator), optional hard
shadows of the key light (one shadow ray, up to the light if it is a point light), one refraction-free transparency layer for lenses, and
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
from .lighting import _BAND, Light, Lighting

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
        self._init_tables()

    # -- per-head tables (built once; every view reuses them) ----------------------------------
    def _init_tables(self) -> None:
        """Channels-first (structure of arrays) tables for the shading kernels: numpy is fast on long
        contiguous rows and slow on (N, 3) rows, so hits are shaded as (3, N) arrays. Barycentric
        attributes are stored per face as ``c0, c1 - c0, c2 - c0`` (interpolated as ``c0 + u d1 + v d2``)."""
        def deltas(corner: np.ndarray) -> np.ndarray:  # (F, 3, C) -> (3 * C, F)
            c = corner.astype(np.float32)
            return np.ascontiguousarray(np.concatenate([c[:, 0], c[:, 1] - c[:, 0], c[:, 2] - c[:, 0]], 1).T)

        n_parts = len(self.asset.parts)
        self.normal_table = deltas(self.corner_normals)
        # hits are sorted by part, opaque parts first and cards last: every part is one contiguous slice
        order = sorted(range(n_parts), key=lambda i: (bool(self.card_part[i]), i))
        self.rank_part = np.array(order, np.int64)  # part of each rank
        rank = np.empty(n_parts, np.int16)
        rank[order] = np.arange(n_parts)
        self.face_rank = rank[self.face_part]
        self.n_opaque = int((~self.card_part).sum())
        self.tangent_table = np.ascontiguousarray(self.face_tangent.T)
        self.part_tables: list[dict[str, Any]] = []
        for i in range(n_parts):
            f0, f1 = int(self.face_offset[i]), int(self.face_offset[i + 1])
            t: dict[str, Any] = {"f0": f0, "alpha": float(self.opacity[i]), "ks": float(self.spec[i, 0]),
                                 "shin": float(self.spec[i, 1]), "scatter": self.scatter[i]}
            if self.card_part[i]:
                t["uv"] = deltas(self.corner_uv[f0:f1])
                t["tex"] = _soa_texture(self.rgba_lin[i])
            elif self.textures_lin[i] is not None:
                t["uv"] = deltas(self.corner_uv[f0:f1])
                t["tex"] = _soa_texture(self.textures_lin[i])
                if self.spec_maps[i] is not None:
                    t["spec_map"] = _soa_texture(self.spec_maps[i])
            else:
                t["color"] = deltas(self.corner_colors[f0:f1])
            self.part_tables.append(t)

    # -- shading ----------------------------------------------------------------------------
    def _light_dirs(self, lt: Light, n: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Direction to the light (3, N) or (3, 1), n.l (N,), and the point light's falloff (N,) or None."""
        if lt.kind == "point":
            lv = np.asarray(lt.vector, np.float32)
            to_l = lv[:, None] - pos
            dist2 = _dot(to_l, to_l)
            ell = to_l * (1.0 / np.sqrt(dist2))
            return ell, _dot(n, ell), np.float32(float(np.dot(lt.vector, lt.vector))) / dist2
        e = _unit(lt.vector).astype(np.float32)
        return e[:, None], e @ n, None

    @staticmethod
    def _to_light(lt: Light, org: np.ndarray) -> np.ndarray | None:
        """Shadow-ray length from origins ``org`` (3, N): up to a point light (what lies beyond it casts no
        shadow), unbounded (None) for a directional one."""
        if lt.kind != "point":
            return None
        to_l = np.asarray(lt.vector, np.float32)[:, None] - org
        return np.sqrt(_dot(to_l, to_l))

    def _key_shadow(self, lt: Light, ell: np.ndarray, pos: np.ndarray, li: np.ndarray, state: np.ndarray,
                    n: np.ndarray | None = None) -> np.ndarray:
        """Which of the points ``li`` the key light ``lt`` does not reach: ``state`` (N,) int8 holds per point
        -1 (unknown: a shadow ray is cast, from 1 mm towards the light, and 1 mm along the normal ``n`` if
        given), 0 (lit) or 1 (shadowed), known from the centre ray of the pixel of a supersampling ray that hits
        the same part; it is updated with the rays cast. Returns the indices of the shadowed points."""
        st = state.take(li)
        cast = li[st < 0]
        known = li[st > 0]
        if len(cast):
            el = ell if ell.shape[1] == 1 else ell.take(cast, axis=1)
            org = pos.take(cast, axis=1)
            if n is not None:
                org = org + n.take(cast, axis=1) * np.float32(1e-3)
            org = org + el * np.float32(1e-3)
            hit = self.caster.occluded(org.T, el.T, self._to_light(lt, org))
            state[cast] = hit
            cast = cast[hit]
        return np.concatenate([known, cast]) if len(known) else cast

    def _shade(self, n: np.ndarray, view: np.ndarray, pos: np.ndarray, albedo: np.ndarray, ks: np.ndarray,
               shin: np.ndarray, skin: list[tuple[int, int, np.ndarray]], light: Lighting, shadows: np.ndarray | None
               ) -> np.ndarray:
        """Opaque surfaces, channels first: normals ``n`` (3, N) facing the viewer, ``ks`` already holds the
        Blinn-Phong normalisation ``ks (shin + 8) / (8 pi) * 4``; ``skin``: (start, end, per-channel exponent)
        slices with the soft subsurface falloff; ``shadows``: None (no shadows) or the key light's shadow state
        per point (:meth:`_key_shadow`). Returns linear colour (3, N)."""
        irr = _sh_irradiance(n, light)
        spec_acc = np.zeros_like(irr)
        for k, lt in enumerate(light.lights):
            ell, ndl, fall = self._light_dirs(lt, n, pos)
            lit = ndl > 0  # only lit points get diffuse, specular and a shadow ray
            if not lit.any():
                continue
            nl = np.maximum(ndl, 0)
            if k == 0 and shadows is not None:
                # 1 mm off the surface: coarse meshes with smooth normals shadow themselves near the terminator
                occ = self._key_shadow(lt, ell, pos, np.flatnonzero(lit), shadows, n)
                lit[occ] = False
                nl[occ] = 0
            # soft scatter: (n.l)^(1 / (1 + 2 w)) per channel (w = 0 is Lambert): red rises fastest from the
            # terminator, a reddish soft band; nothing past the terminator, so cast shadows stay consistent
            diff = np.broadcast_to(nl, irr.shape)
            if skin:
                diff = diff.copy()
                for s, e_, a in skin:
                    diff[:, s:e_] = nl[s:e_] ** a[:, None]
            h = view + ell
            h *= 1.0 / np.maximum(np.sqrt(_dot(h, h)), 1e-9)
            f = 1 - _clip01(_dot(view, h))
            f2 = f * f
            fres = 0.04 + 0.96 * (f2 * f2 * f)
            spec = ks * _clip01(_dot(n, h)) ** shin * fres * lit
            lcol = np.asarray(lt.color, np.float32)[:, None]
            if fall is not None:
                diff = diff * fall
                spec *= fall
            irr += diff * lcol
            spec_acc += spec * lcol
        irr *= albedo
        irr += spec_acc
        return irr

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

    def _shade_hair(self, n: np.ndarray, t: np.ndarray, albedo: np.ndarray, pos: np.ndarray, view: np.ndarray,
                    light: Lighting, shadows: np.ndarray | None) -> np.ndarray:
        """Kajiya-Kay hair shading along the card's strand tangent under the same lighting as the rest
        of the head: ambient is the SH environment's irradiance at the card normal (hair is a volume, so
        it is not tangent-based); each light (directional or point, with the same falloff as ``_shade``)
        adds a diffuse term that follows the angle to the strand (sin T.L, wrapped around the card
        normal), a white primary highlight shifted towards the tip and a tinted secondary one shifted
        towards the root. Hard shadows of the key light (the first light) soften to 35% (light passes
        between strands). Channels first: ``n`` (3, N) facing the viewer, ``t`` (3, N) the strand tangent."""
        irr = _sh_irradiance(n, light)
        spec_acc = np.zeros_like(irr)
        t1 = t + np.float32(0.15) * n  # highlight shifts (cuticle tilt): primary towards the tip, secondary towards the root
        t2 = t - np.float32(0.25) * n
        t1 *= 1.0 / np.sqrt(_dot(t1, t1))
        t2 *= 1.0 / np.sqrt(_dot(t2, t2))
        for k, lt in enumerate(light.lights):
            ell, ndl, fall = self._light_dirs(lt, n, pos)
            tl = _dot(t, ell) if ell.shape[1] > 1 else ell[:, 0] @ t
            wrap = _clip01((ndl + 0.4) * (1 / 1.4))
            diff = np.sqrt(_clip01(1 - tl * tl)) * wrap
            if k == 0 and shadows is not None:
                occ = self._key_shadow(lt, ell, pos, np.flatnonzero(wrap > 0), shadows)
                if len(occ):
                    wrap[occ] *= np.float32(0.35)
                    diff[occ] *= np.float32(0.35)
            h = view + ell
            h *= 1.0 / np.sqrt(_dot(h, h))
            th1, th2 = _dot(t1, h), _dot(t2, h)
            x1 = _clip01(1 - th1 * th1)  # sin^2(T, H); powers by squaring (np.power is slow)
            x2 = _clip01(1 - th2 * th2)
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
            d = diff + 0.25 * s2 * wrap
            sp = 0.12 * s1 * wrap
            if fall is not None:
                d *= fall
                sp *= fall
            lcol = np.asarray(lt.color, np.float32)[:, None]
            irr += d * lcol
            spec_acc += sp * lcol
        irr *= albedo
        irr += spec_acc
        return irr

    # -- rendering --------------------------------------------------------------------------
    def _surface(self, p: np.ndarray, u: np.ndarray, v: np.ndarray, lo: int, hi: int, part: int
                 ) -> tuple[np.ndarray, ...]:
        """Texture / vertex-colour lookups of hits ``lo:hi`` (all on ``part``): colour (C, n), and the
        specular strength and shininess scales (or None)."""
        tb = self.part_tables[part]
        fi = p[lo:hi] - tb["f0"]
        uu, vv = u[lo:hi], v[lo:hi]
        if "color" in tb:
            g = _interp(tb["color"], fi, uu, vv)
            return g, None
        uv = _interp(tb["uv"], fi, uu, vv)
        col = _bilinear_soa(tb["tex"], uv[0], uv[1])
        sm = tb.get("spec_map")
        return col, (None if sm is None else _nearest_soa(sm, uv[0], uv[1]))

    def _trace(self, o: np.ndarray, d: np.ndarray, dT: np.ndarray, light: Lighting, cam_z: np.ndarray, aux: bool = True,
               shadow_out: dict[str, np.ndarray] | None = None, shadow_hint: dict[str, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Shade rays front to back: linear colour (3, N) (premultiplied, 0 on misses), coverage in [0, 1],
        camera-z depth, normal (3, N), part id, and the edge key: the first part hit (hair parts as one).

        ``o``: the shared ray origin (3,), ``d``: unit directions (N, 3) float32, ``dT``: the same (3, N).

        A ray continues past surfaces that let light through, up to ``MAX_LAYERS`` hits: alpha cards
        (hair: texel alpha is strand coverage; texels below ``ALPHA_SKIP`` are passed without shading)
        and the transparent lens layer. Colour and coverage accumulate front to back; depth, normal and
        part are those of the first opaque-enough hit: an opaque part, or the card where the coverage
        reaches 0.5 (else the first card hit).

        ``aux=False`` (supersampling rays) returns colour and coverage only (the other outputs stay empty).
        ``shadow_out``: filled with the key light's shadow state at each ray's first hit (``state``: -1 none
        cast, 0 lit, 1 shadowed) and the part hit (``part``); ``shadow_hint``: such a record per ray (of the
        pixel's centre ray): a ray that first hits the same part takes its shadow from there, no shadow ray.

        Hits are shaded sorted by part (opaque parts first, then cards), so every part's lookups run
        on one contiguous slice and the lighting on two (opaque, cards)."""
        n = len(d)
        color = np.zeros((3, n), np.float32)
        normal = np.zeros((3, n), np.float32)
        depth = np.zeros(n, np.float32)
        part = np.full(n, -1, np.int16)
        trans = np.ones(n, np.float32)
        done = np.zeros(n, bool)  # depth etc. recorded
        key = np.full(n, -1, np.int16)  # the first part hit: where adaptive supersampling looks for edges
        idx = np.arange(n)
        org: np.ndarray = np.asarray(o, np.float32)[None]  # (1, 3) shared, then (N, 3) (a view of orgT)
        orgT = org.T
        dl = d
        dist = None  # ray length up to the current origin (0 on the first layer)
        n_parts = len(self.asset.parts)
        for layer in range(MAX_LAYERS):
            hit = self.caster.cast(org, dl)
            prim = hit["primID"]
            ok = np.flatnonzero(prim >= 0)
            if not len(ok):
                break
            p = prim.take(ok).astype(np.intp)  # take converts other index types on every call
            rank = self.face_rank.take(p)
            srt = np.argsort(rank, kind="stable")
            ok = ok.take(srt)
            p = p.take(srt)
            bounds = np.concatenate([[0], np.cumsum(np.bincount(rank, minlength=n_parts))])
            ids = idx.take(ok)
            u, v, t = hit["u"].take(ok), hit["v"].take(ok), hit["tfar"].take(ok)
            dv = dT.take(ok, axis=1)  # (3, M)
            pos = (orgT if orgT.shape[1] == 1 else orgT.take(ok, axis=1)) + dv * t
            if dist is not None:
                t = t + dist.take(ok)  # from the camera, over the layers passed
            view = -dv
            M = len(ok)
            nrm = _interp(self.normal_table, p, u, v)  # (3, M)
            nv = _dot(nrm, view)
            parts = self.rank_part.take(rank.take(srt))
            alpha = np.empty(M, np.float32)
            c = np.zeros((3, M), np.float32)
            shadows = None  # what is seen through a lens or between strands is shaded without
            if light.shadows and layer == 0:
                shadows = np.full(M, -1, np.int8)
                if shadow_hint is not None:
                    same = shadow_hint["part"].take(ids) == parts
                    shadows[same] = shadow_hint["state"].take(ids[same])
            # opaque parts
            k_op = int(bounds[self.n_opaque])
            if k_op:
                nrm_o = nrm[:, :k_op]
                nrm_o *= np.where(nv[:k_op] < 0, -1.0, 1.0).astype(np.float32) / np.maximum(
                    np.sqrt(_dot(nrm_o, nrm_o)), 1e-9)  # two-sided: face the viewer
                albedo = np.empty((3, k_op), np.float32)
                ks = np.empty(k_op, np.float32)
                shin = np.empty(k_op, np.float32)
                skin = []
                for r in range(self.n_opaque):
                    lo, hi = int(bounds[r]), int(bounds[r + 1])
                    if lo == hi:
                        continue
                    pi = int(self.rank_part[r])
                    tb = self.part_tables[pi]
                    albedo[:, lo:hi], sm = self._surface(p, u, v, lo, hi, pi)
                    alpha[lo:hi] = tb["alpha"]
                    if sm is None:
                        ks[lo:hi] = tb["ks"]
                        shin[lo:hi] = tb["shin"]
                    else:
                        ks[lo:hi] = tb["ks"] * sm[0]
                        shin[lo:hi] = tb["shin"] * sm[1]
                    if tb["scatter"][0] > 0:
                        skin.append((lo, hi, (1.0 / (1.0 + 2.0 * tb["scatter"])).astype(np.float32)))
                ks *= (shin + 8) * np.float32(4 / (8 * np.pi))
                c[:, :k_op] = self._shade(nrm_o, view[:, :k_op], pos[:, :k_op], albedo, ks, shin, skin, light,
                                          None if shadows is None else shadows[:k_op])
            # alpha cards
            if k_op < M:
                rgba = np.empty((4, M - k_op), np.float32)
                for r in range(self.n_opaque, n_parts):
                    lo, hi = int(bounds[r]), int(bounds[r + 1])
                    if lo == hi:
                        continue
                    pi = int(self.rank_part[r])
                    rgba[:, lo - k_op:hi - k_op] = self._surface(p, u, v, lo, hi, pi)[0]
                    a = rgba[3, lo - k_op:hi - k_op] * np.float32(self.part_tables[pi]["alpha"])
                    if layer == MAX_LAYERS - 1:  # the last layer closes the pixel, gaps included (their colour is the
                        a = np.full(hi - lo, self.part_tables[pi]["alpha"], np.float32)  # hair's base colour): inside a
                    alpha[lo:hi] = np.where(a < ALPHA_SKIP, 0.0, a)  # hairdo no ray runs out of layers onto the background
                sh = np.flatnonzero(alpha[k_op:] > 0)
                if len(sh):
                    g = sh + k_op
                    nc = nrm.take(g, axis=1)
                    nc *= np.sign(nv.take(g)) / np.maximum(np.sqrt(_dot(nc, nc)), 1e-9)
                    tng = self.tangent_table.take(p.take(g), axis=1)
                    sg = None if shadows is None else shadows.take(g)
                    hc = self._shade_hair(nc, tng, rgba[:3].take(sh, axis=1), pos.take(g, axis=1), view.take(g, axis=1),
                                          light, sg)
                    if sg is not None:
                        shadows[g] = sg
                    if aux:
                        nrm[:, k_op:] = 0  # unshaded texels carry no normal
                    for ch in range(3):
                        if aux:
                            nrm[ch, g] = nc[ch]
                        c[ch, g] = hc[ch]
                elif aux:
                    nrm[:, k_op:] = 0
            if shadow_out is not None and layer == 0:
                shadow_out["state"] = np.full(n, -1, np.int8)
                shadow_out["part"] = np.full(n, -1, np.int16)
                if shadows is not None:
                    shadow_out["state"][ids] = shadows
                shadow_out["part"][ids] = parts
            tr = trans.take(ids)
            c *= tr * alpha
            for ch in range(3):
                color[ch, ids] += c[ch]
            tr *= 1 - alpha
            trans[ids] = tr
            if aux:
                self._record(ids, k_op, tr, alpha, t, nrm, parts, dv, cam_z, depth, normal, part, done)
                if layer == 0:  # the first surface hit, transparent texels included: texel alpha is coverage already,
                    key[ids] = self.edge_group[parts]  # so gaps in a card are no edges (its outline and hair over skin are)
            go = np.flatnonzero(tr > TRANS_STOP)
            if not len(go) or layer == MAX_LAYERS - 1:
                break
            idx = ids.take(go)
            if aux:
                dist = t.take(go) + np.float32(1e-4)
            dT = dg = dv.take(go, axis=1)
            dl = dg.T  # strided views: the ray caster reads them in place
            orgT = pos.take(go, axis=1) + dg * np.float32(1e-4)
            org = orgT.T
        return color, 1.0 - trans, depth, normal, part, key

    @staticmethod
    def _record(ids: np.ndarray, k_op: int, tr: np.ndarray, alpha: np.ndarray, t: np.ndarray, nrm: np.ndarray,
                parts: np.ndarray, dv: np.ndarray, cam_z: np.ndarray, depth: np.ndarray, normal: np.ndarray,
                part: np.ndarray, done: np.ndarray) -> None:
        """Depth, normal and part of the first opaque-enough hit (hits ``k_op:`` are cards): an opaque part, the
        card where the coverage reaches 0.5, else the first card hit."""
        M = len(ids)
        card = np.zeros(M, bool)
        card[k_op:] = True
        rec = np.flatnonzero(~done.take(ids) & ((~card) | (tr <= 0.5) | ((alpha > 0) & (depth.take(ids) == 0))))
        ri = ids.take(rec)
        depth[ri] = t.take(rec) * (cam_z @ dv).take(rec)
        for ch in range(3):
            normal[ch, ri] = nrm[ch].take(rec)
        part[ri] = parts.take(rec)
        done[ri] = (~card.take(rec)) | (tr.take(rec) <= 0.5)

    def render(self, cam: Camera, light: Lighting | None = None, supersample: int = 2,
               background: tuple[float, float, float] = (1.0, 1.0, 1.0), adaptive: bool = True) -> RenderOutput:
        """Render one view. ``supersample = s`` anti-aliases with s x s rays per pixel: on every
        pixel (``adaptive=False``) or only where the pixel or a 4-neighbour differs in what its
        centre ray hits first (background, part; all hair parts count as one) and on hair that the
        background shows through: silhouettes, part boundaries and the fringe of a hairdo, where
        aliasing is. Inside hair one ray per pixel reads the card texture, whose alpha is coverage.

        Only pixels inside the projected bounding box of the head are traced (rays outside it miss)."""
        from ..cameras import invert_rigid

        light = light or Lighting()
        s = int(supersample)
        H, W = cam.height, cam.width
        bg = srgb_to_linear(np.asarray(background)).astype(np.float32)
        cam_z = cam.w2c[2, :3].astype(np.float32)
        c2w = invert_rigid(cam.w2c)
        A = (c2w[:3, :3] @ np.linalg.inv(cam.K)).astype(np.float32)
        origin = c2w[:3, 3]

        def trace(x: np.ndarray, y: np.ndarray, aux: bool = True, **kw: Any):
            x, y = x.astype(np.float32), y.astype(np.float32)
            d = np.empty((3, len(x)), np.float32)  # as cameras.rays_through, in float32
            for k in range(3):
                np.multiply(x, A[k, 0], out=d[k])
                d[k] += y * A[k, 1]
                d[k] += A[k, 2]
            d *= 1.0 / np.sqrt(_dot(d, d))
            return self._trace(origin, d.T, d, light, cam_z, aux, **kw)

        x0, x1, y0, y1 = self._screen_box(cam)
        color = np.zeros((3, H, W), np.float32)
        cov = np.zeros((H, W), np.float32)
        dep = np.zeros((H, W), np.float32)
        nor = np.zeros((3, H, W), np.float32)
        prt = np.full((H, W), -1, np.int16)
        key = np.full((H, W), -1, np.int16)
        if not adaptive or s == 1:
            if x1 > x0 and y1 > y0:
                hs, ws = (y1 - y0) * s, (x1 - x0) * s
                xs = (np.arange(x0 * s, x1 * s) + 0.5) / s
                ys = (np.arange(y0 * s, y1 * s) + 0.5) / s
                c_, h_, d_, n_, p_, _ = trace(np.tile(xs, hs), np.repeat(ys, ws))
                hh, ww = y1 - y0, x1 - x0
                cov[y0:y1, x0:x1] = h_.reshape(hh, s, ww, s).mean((1, 3))
                color[:, y0:y1, x0:x1] = c_.reshape(3, hh, s, ww, s).mean((2, 4))
                hits = np.maximum((d_ > 0).reshape(hh, s, ww, s).sum((1, 3)), 1)
                dep[y0:y1, x0:x1] = d_.reshape(hh, s, ww, s).sum((1, 3)) / hits
                nn = n_.reshape(3, hh, s, ww, s).sum((2, 4))
                nn /= np.maximum(np.sqrt((nn * nn).sum(0)), 1e-9)
                nor[:, y0:y1, x0:x1] = nn
                prt[y0:y1, x0:x1] = p_.reshape(hh, s, ww, s)[:, s // 2, :, s // 2]
        else:
            if x1 > x0 and y1 > y0:
                hh, ww = y1 - y0, x1 - x0
                xs = np.arange(x0, x1) + 0.5
                ys = np.arange(y0, y1) + 0.5
                sh_out: dict[str, np.ndarray] = {}
                c_, h_, d_, n_, p_, k_ = trace(np.tile(xs, hh), np.repeat(ys, ww), shadow_out=sh_out)
                color[:, y0:y1, x0:x1] = c_.reshape(3, hh, ww)
                cov[y0:y1, x0:x1] = h_.reshape(hh, ww)
                dep[y0:y1, x0:x1] = d_.reshape(hh, ww)
                nor[:, y0:y1, x0:x1] = n_.reshape(3, hh, ww)
                prt[y0:y1, x0:x1] = p_.reshape(hh, ww)
                key[y0:y1, x0:x1] = k_.reshape(hh, ww)  # hair parts are one key: card alpha is already coverage
            edge = np.zeros((H, W), bool)
            dx, dy = key[:, 1:] != key[:, :-1], key[1:] != key[:-1]
            edge[:, 1:] |= dx
            edge[:, :-1] |= dx
            edge[1:] |= dy
            edge[:-1] |= dy
            # hair that the background shows through (the fringe of a hairdo, strands between gaps): one centre
            # ray there may pass a gap beside a sub-pixel strand clump, so these pixels are supersampled too
            edge |= (key == self.hair_key) & (cov < 1.0 - TRANS_STOP)
            rows, cols = np.nonzero(edge)
            if len(rows):
                off = (np.arange(s) + 0.5) / s
                ox, oy = np.tile(off, s), np.repeat(off, s)  # row-major s x s sub-pixel grid
                hint = None
                if sh_out:  # the key light's shadow at the centre ray's hit, for samples that hit the same part
                    inbox = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
                    ri = np.where(inbox, (rows - y0) * (x1 - x0) + (cols - x0), 0)
                    hint = {"state": np.repeat(np.where(inbox, sh_out["state"].take(ri), -1).astype(np.int8), s * s),
                            "part": np.repeat(np.where(inbox, sh_out["part"].take(ri), -1).astype(np.int16), s * s)}
                c2, h2, _, _, _, _ = trace((cols[:, None] + ox).ravel(), (rows[:, None] + oy).ravel(), aux=False,
                                           shadow_hint=hint)
                flat = rows * W + cols
                c2 = c2.reshape(3, -1, s * s).sum(2)
                c2 *= np.float32(1 / (s * s))
                for ch in range(3):
                    color[ch].reshape(-1)[flat] = c2[ch]
                cov.reshape(-1)[flat] = h2.reshape(-1, s * s).sum(1) * np.float32(1 / (s * s))
        # empty pixels are the background: tone-map and encode only the covered ones (same values, less work)
        out = np.empty((H, W, 3), np.uint8)
        out[...] = (linear_to_srgb(bg) * 255 + 0.5).astype(np.uint8)
        fg = np.flatnonzero(cov.ravel() > 0)
        if len(fg):
            cf = cov.ravel()[fg]
            lin = color.reshape(3, -1).take(fg, axis=1)
            out.reshape(-1, 3)[fg] = _encode_srgb(_tonemap(lin) + bg[:, None] * (1 - cf)).T
        return RenderOutput(out, cov, dep, np.ascontiguousarray(np.moveaxis(nor, 0, -1)), prt)

    def _screen_box(self, cam: Camera) -> tuple[int, int, int, int]:
        """Pixel window (x0, x1, y0, y1) that holds every pixel whose centre ray can hit the head: the
        projection of its bounding box, a pixel wider; the whole image if the box reaches behind the camera."""
        if not hasattr(self, "_box"):
            lo, hi = self.caster.triangles.reshape(-1, 3).min(0), self.caster.triangles.reshape(-1, 3).max(0)
            self._box = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        H, W = cam.height, cam.width
        pc = self._box @ cam.w2c[:3, :3].T + cam.w2c[:3, 3]
        if (pc[:, 2] <= 1e-6).any():
            return 0, W, 0, H
        uv = (pc @ cam.K.T)[:, :2] / pc[:, 2:]
        x0, y0 = np.floor(uv.min(0) - 1.0).astype(int)
        x1, y1 = np.ceil(uv.max(0) + 1.0).astype(int)
        return max(x0, 0), min(x1, W), max(y0, 0), min(y1, H)


def _clip01(x: np.ndarray) -> np.ndarray:
    """``np.clip(x, 0, 1)`` in place (a fresh temporary; np.clip's wrapper costs more than the work on short rows)."""
    np.maximum(x, 0, out=x)
    np.minimum(x, 1, out=x)
    return x


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of channels-first (3, N) arrays."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _sh_irradiance(n: np.ndarray, light: Lighting) -> np.ndarray:
    """:func:`~.lighting.sh_irradiance` at channels-first normals (3, N) -> (3, N)."""
    x, y, z = n
    b = np.empty((9, n.shape[1]), np.float32)
    b[0] = 0.282095
    np.multiply(y, np.float32(0.488603), out=b[1])
    np.multiply(z, np.float32(0.488603), out=b[2])
    np.multiply(x, np.float32(0.488603), out=b[3])
    np.multiply(x * y, np.float32(1.092548), out=b[4])
    np.multiply(y * z, np.float32(1.092548), out=b[5])
    np.multiply(3 * z * z - 1, np.float32(0.315392), out=b[6])
    np.multiply(x * z, np.float32(1.092548), out=b[7])
    np.multiply(x * x - y * y, np.float32(0.546274), out=b[8])
    m = (light.sh_matrix() * _BAND[:, None].astype(np.float32)).T
    return np.maximum(m @ b, 0)


def _interp(table: np.ndarray, f: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Barycentric interpolation of a per-face ``c0, c1 - c0, c2 - c0`` table (3 C, F) at hits on faces ``f``
    -> (C, N)."""
    g = table.take(f, axis=1)
    C = len(g) // 3
    out = g[:C]
    out += g[C:2 * C] * u
    out += g[2 * C:] * v
    return out


def _soa_texture(tex: np.ndarray) -> dict[str, Any]:
    H, W, C = tex.shape
    return {"H": H, "W": W, "ch": np.ascontiguousarray(np.moveaxis(tex.astype(np.float32), -1, 0).reshape(C, -1))}


def _wrap(i: np.ndarray, n: int) -> np.ndarray:
    return i & (n - 1) if n & (n - 1) == 0 else i % n


def _bilinear_soa(tex: dict[str, Any], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """:func:`_bilinear` on a channels-first texture from :func:`_soa_texture` -> (C, N)."""
    H, W, ch = tex["H"], tex["W"], tex["ch"]
    x = (u - np.floor(u)) * W - 0.5
    y = (1.0 - (v - np.floor(v))) * H - 0.5
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = x - xf, y - yf
    x0, y0 = _wrap(xf.astype(np.intp), W), _wrap(yf.astype(np.intp), H)
    x1, y1 = _wrap(x0 + 1, W), _wrap(y0 + 1, H)
    r0, r1 = y0 * W, y1 * W
    i00, i01, i10, i11 = r0 + x0, r0 + x1, r1 + x0, r1 + x1
    gx = 1 - fx
    gy = 1 - fy
    out = np.empty((len(ch), len(u)), np.float32)
    for c in range(len(ch)):
        t = ch[c]
        top = t.take(i00) * gx
        top += t.take(i01) * fx
        bot = t.take(i10) * gx
        bot += t.take(i11) * fx
        top *= gy
        bot *= fy
        np.add(top, bot, out=out[c])
    return out


def _nearest_soa(tex: dict[str, Any], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """:func:`_nearest` on a channels-first texture -> (C, N)."""
    H, W, ch = tex["H"], tex["W"], tex["ch"]
    x = _wrap(((u - np.floor(u)) * W).astype(np.intp), W)
    y = _wrap(((1.0 - (v - np.floor(v))) * H).astype(np.intp), H)
    return ch.take(y * W + x, axis=1)


def _encode_srgb(c: np.ndarray) -> np.ndarray:
    """uint8 sRGB of linear values (as ``linear_to_srgb(c) * 255 + 0.5`` truncated), in float32."""
    c = np.clip(c, 0.0, 1.0).astype(np.float32, copy=False)
    out = np.power(c, np.float32(1 / 2.4))
    out *= np.float32(1.055 * 255)
    out += np.float32(-0.055 * 255 + 0.5)
    low = c <= 0.0031308
    out[low] = c[low] * np.float32(12.92 * 255) + np.float32(0.5)
    return out.astype(np.uint8)


def _tonemap(c: np.ndarray) -> np.ndarray:
    """Soft shoulder above 0.8 so highlights roll off instead of clipping."""
    hi = c >= 0.8
    if not hi.any():
        return c
    out = c.copy()
    out[hi] = 0.8 + 0.2 * np.tanh((c[hi] - 0.8) / 0.2)
    return out


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
