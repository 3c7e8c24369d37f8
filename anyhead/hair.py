"""Procedural hair as geometry, fitted to each head's scalp.

A hair style is a surface over a (azimuth x row) grid. The upper rows form a cap: for each grid
direction from a point inside the skull, the outermost head surface is found by ray casting and
the hair surface sits a style-dependent thickness above it, down to a hairline that follows the
forehead, the temples, above the ears and the nape. Bob and long styles add a curtain that hangs
from the cap's edge at the sides and back, kept outside the ears and neck by horizontal ray casts.
The bun adds a sphere at the back of the crown. The grid carries UVs along which a strand texture
runs, so the back of the head is covered with hair, never bare skin.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .appearance import HAIR_COLORS
from .assets import Part
from .geometry import RayCaster, drop_degenerate, grid_faces, sphere, spherical_dirs

STYLES = ("bald", "buzz", "short", "bob", "long", "bun")
# Hairline elevation (degrees, seen from CENTRE) at |azimuth| knots: forehead, temple, above the ear, nape.
_HAIRLINE_AZ = np.array([0.0, 40.0, 72.0, 95.0, 130.0, 180.0])
_HAIRLINE_EL = np.array([36.0, 30.0, 12.0, 14.0, -12.0, -30.0])
CENTRE = np.array([0.0, 0.0, -0.01])


@dataclass
class HairParams:
    style: str
    color: str
    thickness: float  # metres above the scalp at the crown
    length: float  # metres the curtain hangs below the cap edge (bob, long)
    hairline_shift: float  # degrees; > 0 recedes
    seed: int

    @classmethod
    def sample(cls, rng: np.random.Generator, color: str | None = None, style: str | None = None) -> "HairParams":
        style = style or str(rng.choice(STYLES, p=[0.08, 0.14, 0.30, 0.18, 0.20, 0.10]))
        thick = {"bald": 0.0, "buzz": 0.003, "short": rng.uniform(0.010, 0.022), "bob": rng.uniform(0.012, 0.02),
                 "long": rng.uniform(0.012, 0.02), "bun": 0.004}[style]
        length = {"bob": rng.uniform(0.09, 0.13), "long": rng.uniform(0.20, 0.32)}.get(style, 0.0)
        return cls(style, color or str(rng.choice(list(HAIR_COLORS))), float(thick), float(length),
                   float(rng.uniform(-4, 8)), int(rng.integers(0, 2**31 - 1)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hairline_elevation(azimuth: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Elevation of the hairline (degrees) for azimuths in degrees (0 = front)."""
    a = np.abs((np.asarray(azimuth) + 180.0) % 360.0 - 180.0)
    recede = shift * np.clip(1 - a / 90.0, 0, 1)  # receding hairlines recede at the front
    return np.interp(a, _HAIRLINE_AZ, _HAIRLINE_EL) + recede


def strand_texture(color: str, seed: int, size: int = 256) -> np.ndarray:
    """Hair texture: streaks along v (the strand direction) with darker roots."""
    rng = np.random.default_rng(seed)
    base = np.array(HAIR_COLORS[color])
    streak = ndimage.gaussian_filter1d(rng.standard_normal(size * 4), 1.5, mode="wrap")
    streak = streak[:: 4] * 0.6 + ndimage.gaussian_filter1d(rng.standard_normal(size), 0.7, mode="wrap") * 0.4
    streak = streak / (np.abs(streak).max() + 1e-9)
    along = ndimage.gaussian_filter1d(rng.standard_normal(size), 8, mode="wrap")[:, None] * 0.05
    shade = 1.0 + 0.35 * streak[None, :] + along
    roots = 0.85 + 0.15 * np.linspace(0, 1, size)[:, None]  # v=1 at the crown (top row) is the root
    tex = base[None, None] * (shade * roots[::-1])[..., None]
    return (np.clip(tex, 0, 1) * 255).astype(np.uint8)


def build_hair(head_vertices: np.ndarray, head_faces: np.ndarray, params: HairParams,
               n_az: int = 96, n_cap: int = 28, n_curtain: int = 18) -> list[Part]:
    """Hair parts for a head mesh (empty list for ``bald``)."""
    if params.style == "bald":
        return []
    caster = RayCaster(head_vertices, head_faces)
    rng = np.random.default_rng(params.seed)
    az = np.linspace(-180.0, 180.0, n_az, endpoint=False)
    el_line = hairline_elevation(az, params.hairline_shift)
    t = np.linspace(0.0, 1.0, n_cap)  # 0 at the crown, 1 at the hairline
    el = 90.0 - t[:, None] * (90.0 - el_line[None, :])
    dirs = spherical_dirs(np.broadcast_to(az, el.shape), el).reshape(-1, 3)
    r = caster.outer_surface(CENTRE, dirs).reshape(el.shape)
    r = np.where(np.isnan(r), np.nanmedian(r), r)
    taper = 0.25 + 0.75 * np.clip((1.0 - t) / 0.35, 0, 1) ** 0.7  # thin at the hairline
    lumps = ndimage.gaussian_filter(rng.standard_normal(el.shape), (2.0, 3.0), mode=("nearest", "wrap"))
    volume = params.thickness * taper[:, None] * (1.0 + 0.6 * lumps)
    if params.style == "short":  # more volume on top than at the sides
        volume *= 0.7 + 0.6 * np.sin(np.radians(el)).clip(0, 1)
    cap = CENTRE + dirs.reshape(*el.shape, 3) * (r + np.maximum(volume, 0.0015))[..., None]
    rows = [cap]

    if params.style in ("bob", "long") and params.length > 0:
        edge = cap[-1]  # (n_az, 3)
        a = np.abs(az)
        weight = np.clip((a - 62.0) / 40.0, 0, 1) ** 1.5  # no curtain over the face
        s = np.linspace(0, 1, n_curtain + 1)[1:]
        horiz = spherical_dirs(az, np.zeros_like(az))
        curtain = []
        for sk in s:
            y = edge[:, 1] - params.length * sk * weight
            # keep outside ears/neck: outermost body surface along the horizontal ray at this height
            centres = np.stack([np.zeros_like(y), y, np.full_like(y, CENTRE[2])], 1)
            hit = caster.cast(centres + horiz * 1.0, -horiz)
            rb = np.where(hit["primID"] >= 0, 1.0 - hit["tfar"], 0.05)
            r_edge = np.linalg.norm((edge - centres)[:, [0, 2]], axis=1)
            flare = 1.0 + 0.15 * sk
            rad = np.maximum(r_edge * (1 - sk) + (rb + params.thickness) * sk, rb + 0.006) * flare
            rad = np.where(weight > 0, rad, r_edge)
            curtain.append(centres + horiz * rad[:, None])
        rows += [np.stack(curtain)]
    grid = np.concatenate(rows)  # (rows, n_az, 3)
    n_rows = grid.shape[0]
    verts = grid.reshape(-1, 3)
    faces = drop_degenerate(verts, grid_faces(n_rows, n_az, wrap_cols=True), eps=1e-10)
    # UV: u around the head (8 texture repeats), v from crown (1) to the ends (0).
    uu = (np.arange(n_az + 1) / n_az) * 8.0
    vv = 1.0 - np.arange(n_rows) / (n_rows - 1)
    # seam: faces that wrap (column n_az-1 -> 0) use u = n_az for the wrapped corner
    col = faces % n_az
    wraps = (col.max(1, keepdims=True) == n_az - 1) & (col == 0)
    u_face = np.where(wraps, n_az, col)
    face_uv = np.stack([uu[u_face], vv[faces // n_az]], -1).astype(np.float32)
    parts = [Part("hair", verts, faces, "hair", face_uv=face_uv, texture=strand_texture(params.color, params.seed))]

    if params.style == "bun":
        d = spherical_dirs(np.array([180.0]), np.array([28.0]))
        rb = caster.outer_surface(CENTRE, d)[0]
        radius = 0.035 + 0.01 * rng.random()
        v, f = sphere(CENTRE + d[0] * (rb + params.thickness + radius * 0.75), radius * np.array([1.0, 0.85, 0.8]), 3)
        n = (v - v.mean(0)) / np.linalg.norm(v - v.mean(0), axis=1, keepdims=True)
        uv = np.stack([np.arctan2(n[:, 0], n[:, 2]) / np.pi * 4.0, n[:, 1] * 0.5 + 0.5], -1)
        parts.append(Part("hair_bun", v, f, "hair", face_uv=uv[f].astype(np.float32),
                          texture=strand_texture(params.color, params.seed + 1)))
    return parts
