"""Procedural card hair grown from each head's scalp.

Hair is two layers:

* a **scalp cover**: a thin shell a few millimetres above the scalp (the outermost head surface along
  rays from a point inside the skull), down to a hairline that follows the forehead, the temples,
  above the ears and the nape, tinted the hair colour with a soft alpha at the hairline (a speckled,
  partly transparent alpha for buzz cuts and a thinning crown), so the scalp never shows through
  full styles;
* **cards**: ribbons of quads (alpha-textured hair cards) grown from roots sampled area-uniformly on
  the scalp skin above the hairline. Each card follows a style-specific growth curve: a comb direction
  (away from a parting line, swept back, radial for an afro, gathered to a tie point for ponytails and
  buns), gravity, then waves or helical curls; the head is the collider (every point is pushed
  outside the outer head surface by a per-card lift, crown cards lying on top of lower ones) and a
  keep-out box in front of the face keeps long hair beside it. Cards are clumped: each one is pulled
  towards the curve of its nearest guide card, more towards the tip; a few flyaways leave the
  surface. The card texture (RGBA, one per head) holds many strands with per-strand colour, grey
  strands, root-to-tip colour variation and strands ending at different lengths, so alpha thins
  towards the tip; its ``v`` runs from the root (0) to the tip (1), and the renderer derives each
  card's strand tangent from it (Kajiya-Kay shading).

The cover is part ``hair`` (what accessories and the reconstruction scaffold fit to), the cards are
``hair_cards``, a bun's core is ``hair_bun``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .appearance import HAIR_COLORS
from .assets import Part
from .config import HAIR_DYES, HAIR_STYLES
from .geometry import RayCaster, drop_degenerate, grid_faces, sphere, spherical_dirs

if TYPE_CHECKING:
    from .config import HairConfig

STYLES = HAIR_STYLES  # bald, buzz, short, side_part, bob, long_straight, long_wavy, curly, afro, ponytail, bun, receding
STYLE_PROBS = {"bald": 0.05, "buzz": 0.08, "short": 0.16, "side_part": 0.10, "bob": 0.10, "long_straight": 0.10,
               "long_wavy": 0.08, "curly": 0.08, "afro": 0.05, "ponytail": 0.07, "bun": 0.06, "receding": 0.07}
DYE_COLORS: dict[str, tuple[float, float, float]] = {  # sRGB
    "platinum": (0.90, 0.87, 0.80), "pink": (0.88, 0.42, 0.62), "blue": (0.20, 0.35, 0.78), "purple": (0.45, 0.22, 0.62),
    "green": (0.20, 0.55, 0.38), "teal": (0.10, 0.55, 0.60), "copper": (0.72, 0.32, 0.10), "burgundy": (0.40, 0.06, 0.12),
}
assert tuple(DYE_COLORS) == HAIR_DYES
# Hairline elevation (degrees, seen from CENTRE) at |azimuth| knots: forehead, temple, above the ear, nape.
_HAIRLINE_AZ = np.array([0.0, 40.0, 72.0, 95.0, 130.0, 180.0])
_HAIRLINE_EL = np.array([36.0, 30.0, 12.0, 14.0, -12.0, -30.0])
CENTRE = np.array([0.0, 0.0, -0.01])
FLYAWAY_MAX_LENGTH = 0.06  # metres along a flyaway card
HAT_CLEARANCE = 0.004  # metres: hair pressed under a hat stays this far inside its surface


@dataclass(frozen=True)
class _Style:
    cards: int  # at density 1
    segs: int  # quads along a card
    length: tuple[float, float]  # metres, uniform range
    width: float  # card width at the root, metres
    thickness: tuple[float, float]  # the scalp cover's height above the scalp
    gravity: float  # per-segment pull down (0 = stiff)
    rise: float  # initial lift of the growth direction off the scalp
    volume: float  # extra lift (metres) of crown cards over lower ones
    comb: str  # "part", "back", "radial", "gather"
    curl: tuple[float, float] = (0.0, 0.0)  # helix radius, period (metres)
    wave: tuple[float, float] = (0.0, 0.0)  # planar amplitude, period (metres)
    cut: float | None = None  # straight cut at this height (metres) if set
    clump: float = 0.5
    shift: tuple[float, float] = (-4.0, 8.0)  # hairline recession range, degrees
    hug: float | None = None  # short styles: cards stay within this height (metres) over their lifted layer


_STYLES: dict[str, _Style] = {
    "buzz": _Style(300, 2, (0.006, 0.010), 0.010, (0.0015, 0.002), 0.0, 0.05, 0.0005, "back", clump=0.2),
    "short": _Style(420, 5, (0.04, 0.07), 0.012, (0.002, 0.003), 0.03, 0.2, 0.006, "back", hug=0.005),
    "side_part": _Style(420, 7, (0.07, 0.11), 0.012, (0.002, 0.003), 0.06, 0.15, 0.006, "part", hug=0.01),
    "receding": _Style(320, 5, (0.03, 0.06), 0.011, (0.0015, 0.0025), 0.03, 0.15, 0.004, "back", shift=(14.0, 24.0),
                      hug=0.006),
    "bob": _Style(420, 10, (0.16, 0.22), 0.014, (0.002, 0.003), 0.22, 0.12, 0.006, "part", cut=-0.06),
    "long_straight": _Style(420, 12, (0.28, 0.38), 0.015, (0.002, 0.003), 0.28, 0.12, 0.006, "part", cut=-0.20),
    "long_wavy": _Style(420, 14, (0.28, 0.36), 0.015, (0.002, 0.003), 0.28, 0.15, 0.008, "part",
                        wave=(0.008, 0.06), cut=-0.18),
    "curly": _Style(450, 12, (0.12, 0.17), 0.012, (0.003, 0.004), 0.12, 0.4, 0.012, "back", curl=(0.009, 0.028),
                    clump=0.6),
    "afro": _Style(600, 6, (0.045, 0.065), 0.013, (0.030, 0.036), 0.0, 1.0, 0.0, "radial", curl=(0.005, 0.012), hug=0.036,
                   clump=0.3),
    "ponytail": _Style(380, 14, (0.20, 0.28), 0.011, (0.002, 0.0025), 0.25, 0.0, 0.002, "gather"),
    "bun": _Style(380, 14, (0.0, 0.0), 0.011, (0.002, 0.0025), 0.0, 0.0, 0.002, "gather"),
}


@dataclass
class HairParams:
    style: str
    color: str  # a natural colour (appearance.HAIR_COLORS; brows and beards use it too)
    thickness: float  # metres the scalp cover sits above the scalp at the crown
    length: float  # metres of hair along a card (ponytail: the tail)
    hairline_shift: float  # degrees; > 0 recedes
    seed: int
    dye: str = ""  # "" (natural) or a DYE_COLORS name
    grey: float = 0.0  # fraction of grey/white strands
    density: float = 1.0  # card count scale
    part: float = 0.0  # parting line's x (metres) for parted styles

    @classmethod
    def sample(cls, rng: np.random.Generator, color: str | None = None, style: str | None = None,
               cfg: "HairConfig | None" = None) -> "HairParams":
        probs = dict(cfg.style_prob) if cfg is not None else STYLE_PROBS
        if style is None:
            names = [s for s in STYLES if probs.get(s, 0.0) > 0]
            p = np.array([probs[s] for s in names], np.float64)
            style = str(rng.choice(names, p=p / p.sum()))
        color = color or str(rng.choice(list(HAIR_COLORS)))
        if style == "bald":
            return cls(style, color, 0.0, 0.0, 0.0, int(rng.integers(0, 2**31 - 1)))
        st = _STYLES[style]
        thick = float(rng.uniform(*st.thickness))
        length = float(rng.uniform(*st.length))
        shift = float(rng.uniform(*st.shift))
        seed = int(rng.integers(0, 2**31 - 1))
        dye_prob = cfg.dye_prob if cfg is not None else 0.1
        dyes = tuple(cfg.dye_colors) if cfg is not None else tuple(DYE_COLORS)
        dye = str(rng.choice(dyes)) if dyes and rng.random() < dye_prob else ""
        grey_prob = cfg.grey_prob if cfg is not None else 0.15
        grey = float(rng.uniform(0.1, 0.9)) if rng.random() < grey_prob else 0.0
        if color in ("grey", "white"):
            grey = max(grey, 0.6)
        part = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.02, 0.035)) if style == "side_part" else (
            float(rng.choice([0.0, rng.uniform(-0.03, 0.03)])) if st.comb == "part" else 0.0)
        density = cfg.density if cfg is not None else 1.0
        return cls(style, color, thick, length, shift, seed, dye, grey, float(density), part)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hairline_elevation(azimuth: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Elevation of the hairline (degrees) for azimuths in degrees (0 = front)."""
    a = np.abs((np.asarray(azimuth) + 180.0) % 360.0 - 180.0)
    recede = shift * np.clip(1 - a / 90.0, 0, 1)  # receding hairlines recede at the front
    return np.interp(a, _HAIRLINE_AZ, _HAIRLINE_EL) + recede


def _base_color(params: HairParams) -> np.ndarray:
    return np.array(DYE_COLORS[params.dye] if params.dye else HAIR_COLORS[params.color], np.float64)


def strand_texture(color: str, seed: int, size: int = 256) -> np.ndarray:
    """Streaky RGB texture along v (the strand direction) with darker roots (the scalp cover's)."""
    rng = np.random.default_rng(seed)
    base = np.array(DYE_COLORS.get(color, HAIR_COLORS.get(color, (0.3, 0.2, 0.1))))
    streak = ndimage.gaussian_filter1d(rng.standard_normal(size * 4), 1.5, mode="wrap")
    streak = streak[:: 4] * 0.6 + ndimage.gaussian_filter1d(rng.standard_normal(size), 0.7, mode="wrap") * 0.4
    streak = streak / (np.abs(streak).max() + 1e-9)
    along = ndimage.gaussian_filter1d(rng.standard_normal(size), 8, mode="wrap")[:, None] * 0.05
    shade = 1.0 + 0.35 * streak[None, :] + along
    roots = 0.85 + 0.15 * np.linspace(0, 1, size)[:, None]  # v=1 at the crown (top row) is the root
    tex = base[None, None] * (shade * roots[::-1])[..., None]
    return (np.clip(tex, 0, 1) * 255).astype(np.uint8)


CARD_VARIANTS = 4  # strand patterns side by side in one card texture; a card spans one
ALPHA_LO, ALPHA_HI = 0.15, 0.6  # card alpha remap: below LO transparent, above HI opaque (see card_texture)


def card_texture(params: HairParams, height: int = 128, width: int = 32) -> np.ndarray:
    """RGBA card atlas (height x CARD_VARIANTS*width): strands along v (root at v=0, the bottom row),
    each with its own colour, grey or not, and length; alpha is strand coverage, fading at the card's
    sides and thinning towards the tip."""
    rng = np.random.default_rng(params.seed + 5)
    base = _base_color(params)
    natural = np.array(HAIR_COLORS[params.color] if params.color in HAIR_COLORS else base)
    W = CARD_VARIANTS * width
    v = (np.arange(height) + 0.5) / height  # 0 = root
    u = np.arange(W) + 0.5
    n = int(width * 0.9) * CARD_VARIANTS
    centre = np.concatenate([k * width + 3 + rng.random(n // CARD_VARIANTS) * (width - 6) for k in range(CARD_VARIANTS)])
    sigma = rng.uniform(0.35, 0.8, n)
    ends = np.clip(rng.beta(3.0, 1.2, n), 0.25, 1.0)  # where each strand ends (thinning towards the tip)
    light = np.exp(rng.normal(0.0, 0.12, n))
    grey = rng.random(n) < params.grey
    col = base[None] * light[:, None]
    col[grey] = rng.uniform(0.55, 0.85, (grey.sum(), 1)) * np.array([1.0, 0.99, 0.96])
    prof = np.exp(-0.5 * ((u[None, :] - centre[:, None]) / sigma[:, None]) ** 2)  # (n, W)
    along = np.clip((ends[:, None] - v[None, :]) / 0.06, 0, 1)  # (n, H)
    cov = np.einsum("nw,nh->hw", prof, along)
    colsum = np.einsum("nw,nh,nc->hwc", prof, along, col)
    rgb = colsum / np.maximum(cov, 1e-6)[..., None]
    rgb = np.where(cov[..., None] > 1e-6, rgb, base)
    # root-to-tip: roots darker (and undyed regrowth), tips lighter (sun), a slow brightness wobble
    root = np.clip(v / 0.12, 0, 1)[:, None, None]
    rgb = rgb * (0.8 + 0.2 * root) * (1.0 + 0.15 * v[:, None, None])
    if params.dye:
        regrow = float(rng.uniform(0.0, 0.1))
        mix = np.clip((v - regrow) / 0.04, 0, 1)[:, None, None]
        rgb = rgb * mix + natural * (0.8 + 0.2 * root) * (1 - mix)
    alpha = 1.0 - np.exp(-2.5 * cov)
    side = np.clip(np.minimum(u % width, width - u % width) / 3.0, 0, 1)  # soft card sides
    alpha *= side[None, :] * np.clip(v / 0.03, 0.6, 1)[:, None]
    # sharpen: strands are sub-pixel at 256-512 px, so at a pixel's scale a texel is clump or gap. Gaps (<= ALPHA_LO)
    # become fully transparent (rays pass unshaded), clump bodies (>= ALPHA_HI) opaque (rays stop at the first card),
    # and only the fringes between blend: render cost stays near one hit per ray instead of two or three
    alpha = np.clip((alpha - ALPHA_LO) / (ALPHA_HI - ALPHA_LO), 0, 1)
    tex = np.concatenate([np.clip(rgb, 0, 1), alpha[..., None]], -1)[::-1]  # row 0 = v=1 (OBJ v up)
    return (tex * 255 + 0.5).astype(np.uint8)


class Collider:
    """The head as seen from CENTRE: the outermost surface radius per direction (a table in azimuth x
    elevation from ray casts), and a keep-out box in front of the face."""

    def __init__(self, caster: RayCaster, step: float = 2.0) -> None:
        self.az = np.arange(-180.0, 180.0 + step, step)
        self.el = np.arange(-88.0, 90.0 + step / 2, step)
        A, E = np.meshgrid(self.az, self.el, indexing="ij")
        r = caster.outer_surface(CENTRE, spherical_dirs(A, E).reshape(-1, 3)).reshape(A.shape)
        r = np.where(np.isnan(r) | (r < 0.03), np.nan, r)
        for j in range(r.shape[1]):  # rings that miss (the open neck) take the ring above
            if np.isnan(r[:, j]).all():
                continue
            r[:, j] = np.where(np.isnan(r[:, j]), np.nanmax(r[:, j]), r[:, j])
        for j in range(r.shape[1] - 2, -1, -1):
            if np.isnan(r[:, j]).all():
                r[:, j] = r[:, j + 1]
        self.r = r
        self.step = step

    def radius(self, dirs: np.ndarray) -> np.ndarray:
        az = np.degrees(np.arctan2(dirs[..., 0], dirs[..., 2]))
        el = np.degrees(np.arcsin(np.clip(dirs[..., 1], -1, 1)))
        i = (az - self.az[0]) / self.step
        j = np.clip((el - self.el[0]) / self.step, 0, len(self.el) - 1)
        # the table is a max over each cell's corners: conservative between samples (ears, nose)
        i0, j0 = np.clip(np.floor(i).astype(int), 0, len(self.az) - 2), np.clip(np.floor(j).astype(int), 0, len(self.el) - 2)
        return np.maximum.reduce([self.r[i0, j0], self.r[i0 + 1, j0], self.r[i0, j0 + 1], self.r[i0 + 1, j0 + 1]])

    def push_out(self, p: np.ndarray, lift: np.ndarray | float) -> np.ndarray:
        d = p - CENTRE
        r = np.linalg.norm(d, axis=-1)
        u = d / np.maximum(r, 1e-9)[..., None]
        # keep out of the face first: in front of the ears and below the brows, hair stays beside the face
        face = (p[..., 2] > -0.005) & (p[..., 1] < 0.045) & (np.abs(p[..., 0]) < 0.082)
        if face.any():
            p = p.copy()
            p[..., 0] = np.where(face, np.where(p[..., 0] >= 0, 1.0, -1.0) * 0.082, p[..., 0])
            d = p - CENTRE
            r = np.linalg.norm(d, axis=-1)
            u = d / np.maximum(r, 1e-9)[..., None]
        rr = np.maximum(r, self.radius(u) + lift)
        return CENTRE + u * rr[..., None]

    def hug(self, p: np.ndarray, lift: np.ndarray | float, height: np.ndarray | float) -> np.ndarray:
        """``p`` pushed out to ``lift`` over the head and pulled in to at most ``lift + height`` over it (seen
        from CENTRE): short hair follows the scalp's curve instead of leaving it along a tangent."""
        d = p - CENTRE
        r = np.linalg.norm(d, axis=-1)
        u = d / np.maximum(r, 1e-9)[..., None]
        rr = np.minimum(r, self.radius(u) + lift + height)
        return self.push_out(CENTRE + u * rr[..., None], lift)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _tangential(v: np.ndarray, n: np.ndarray) -> np.ndarray:
    return v - n * np.einsum("...i,...i->...", v, n)[..., None]


def _cap(caster: RayCaster, params: HairParams, rng: np.random.Generator, n_az: int, n_cap: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scalp cover grid (n_cap, n_az, 3): the outer head surface plus ``thickness``, with its
    azimuths, elevations and hairline parameter t (0 crown .. 1 hairline)."""
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
    return cap, az, el, t


def _cover_texture(params: HairParams, size: int = 128) -> np.ndarray:
    """RGBA of the scalp cover: opaque strands, a soft hairline; speckled for buzz, thin at a receding crown."""
    rgb = strand_texture(params.dye or params.color, params.seed, size).astype(np.float64) / 255.0
    rng = np.random.default_rng(params.seed + 3)
    v = 1.0 - (np.arange(size) + 0.5) / size  # rows: v = 1 (crown) at the top .. 0 (hairline)
    alpha = np.clip(v / 0.15, 0, 1)[:, None] * np.ones((1, size))
    # not a helmet: the cover shows between cards, which shade it, so it is a little lighter than the hair's base
    # colour, with clumps of lighter and darker strands across it rather than one even tone
    patches = ndimage.gaussian_filter(rng.standard_normal((size, size)), (6.0, 3.0), mode="wrap")
    rgb = rgb * (1.12 + 0.6 * patches / (np.abs(patches).max() + 1e-9))[..., None]
    if params.style in ("buzz", "receding"):
        speck = ndimage.gaussian_filter(rng.random((size, size)), 0.7, mode="wrap")
        speck = (speck - speck.mean()) / (speck.std() + 1e-9)
        alpha *= np.clip((0.72 if params.style == "buzz" else 0.85) + 0.12 * speck, 0.3, 1)
        rgb *= 0.8
    if params.style == "receding":  # a thinning crown
        alpha *= 1 - 0.55 * np.clip((v - 0.75) / 0.2, 0, 1)[:, None]
    if params.grey > 0:
        grey = rng.random((1, size)) < params.grey
        rgb = np.where(grey[..., None], np.array([0.7, 0.69, 0.66]), rgb)
    if params.style not in ("buzz", "receding"):  # full styles: an opaque cover (rays stop there; cheaper)
        return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    tex = np.concatenate([rgb, alpha[..., None]], -1)
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8)


def scalp_roots(head_vertices: np.ndarray, head_faces: np.ndarray, params: HairParams, n: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform root points on the scalp (skin above the hairline) and their outward normals."""
    tri = np.asarray(head_vertices, np.float64)[head_faces]
    cen = tri.mean(1)
    d = _unit(cen - CENTRE)
    az = np.degrees(np.arctan2(d[:, 0], d[:, 2]))
    el = np.degrees(np.arcsin(np.clip(d[:, 1], -1, 1)))
    scalp = (el > hairline_elevation(az, params.hairline_shift) + 1.0) & (cen[:, 2] < 0.09)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1) * scalp
    idx = rng.choice(len(tri), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    pts = np.einsum("nk,nkc->nc", w, tri[idx])
    nrm = _unit(cross[idx])
    nrm *= np.sign(np.einsum("ij,ij->i", nrm, pts - CENTRE))[:, None]
    return pts, nrm


def _resample(curves: np.ndarray, lengths: np.ndarray, n: int) -> np.ndarray:
    """Each polyline (N, K, 3) cut at its arc length ``lengths`` and resampled to n points."""
    seg = np.linalg.norm(np.diff(curves, axis=1), axis=-1)
    s = np.concatenate([np.zeros((len(curves), 1)), np.cumsum(seg, 1)], 1)
    out = np.empty((len(curves), n, 3))
    for i in range(len(curves)):
        q = np.linspace(0, min(lengths[i], s[i, -1]), n)
        for c in range(3):
            out[i, :, c] = np.interp(q, s[i], curves[i, :, c])
    return out


def _grow(coll: Collider, roots: np.ndarray, normals: np.ndarray, params: HairParams, st: _Style,
          rng: np.random.Generator, lengths: np.ndarray, lift: np.ndarray, flyaway: np.ndarray) -> np.ndarray:
    """Growth curves (N, segs + 1, 3) from the roots: comb direction, gravity, collisions."""
    N, S = len(roots), st.segs
    down = np.array([0.0, -1.0, 0.0])
    x = np.array([1.0, 0.0, 0.0])
    back = np.array([0.0, 0.0, -1.0])
    rel = roots - CENTRE
    if st.comb == "part":  # away from the parting line, down and a little back
        side = np.where(roots[:, 0] >= params.part, 1.0, -1.0)[:, None]
        # the parting combs the top and the front to the sides; behind the crown hair falls straight down, so
        # the back of a long style closes over the nape instead of opening along a parting down the back
        front = np.clip((rel[:, 2:3] + 0.03) / 0.06, 0, 1) if st.hug is None else np.ones((N, 1))
        comb = side * x * front + down * (0.35 + 0.65 * (1 - front)) + back * 0.25
    elif st.comb == "radial":
        comb = normals.copy()
    else:  # swept back and down from the front, away from the centre line
        comb = back * 0.9 + down * 0.5 + np.sign(rel[:, :1]) * x * 0.25
    comb = comb + rng.normal(0, 0.12, (N, 3))
    d = _unit(_tangential(comb, normals)) if st.comb != "radial" else _unit(comb)
    d = _unit(d + normals * (st.rise + 0.4 * flyaway)[:, None])
    n_sub = 3  # integration substeps per card segment (the card keeps every third point)
    K = S * n_sub
    step = lengths / K
    pts = np.empty((N, K + 1, 3))
    lift0 = np.minimum(lift, 0.0015 + params.thickness)  # roots sit on the scalp; the layer lifts over 3 cm
    p = roots + normals * lift0[:, None]
    pts[:, 0] = p
    g = st.gravity * (1 - 0.5 * flyaway)
    hover = (st.hug or 0.0) + 0.015 * flyaway  # flyaways may stand off the layer a little more
    for k in range(1, K + 1):
        d = _unit(d + g[:, None] * down * (step[:, None] / 0.01) * 0.5)
        lk = lift0 + (lift - lift0) * np.minimum(k * step / 0.03, 1.0)
        q = coll.push_out(p + d * step[:, None], lk) if st.hug is None else coll.hug(p + d * step[:, None], lk, hover)
        d = _unit(q - p)
        p = q
        pts[:, k] = p
    return pts[:, ::n_sub]


def _gather(coll: Collider, roots: np.ndarray, normals: np.ndarray, params: HairParams, st: _Style,
            rng: np.random.Generator, lift: np.ndarray) -> np.ndarray:
    """Ponytail and bun: over the scalp to a tie point, then a hanging tail or a coiled bun."""
    N = len(roots)
    S1, S2 = 6, st.segs - 6
    tie_el = 5.0 if params.style == "ponytail" else 38.0
    tie_dir = spherical_dirs(np.array([180.0]), np.array([tie_el]))[0]
    tie = CENTRE + tie_dir * (coll.radius(tie_dir[None])[0] + 0.004)
    out = np.empty((N, S1 + S2 + 1, 3))
    u0 = _unit(roots - CENTRE)
    jitter = rng.normal(0, 0.004, (N, 3))
    for k in range(S1 + 1):  # along the scalp: direction interpolation, lifted out by the collider
        s = k / S1
        u = _unit(u0 * (1 - s) + tie_dir * s)
        rr = coll.radius(u) + lift * (1 - s) + 0.004 * s
        out[:, k] = CENTRE + u * rr[:, None] + jitter * s * (1 - s)
    out[:, :S1 + 1] = coll.push_out(out[:, :S1 + 1], lift[:, None])
    s = np.linspace(0, 1, S2 + 1)[1:]
    ang = rng.uniform(0, 2 * np.pi, N)
    rad = np.sqrt(rng.random(N))
    if params.style == "ponytail":
        L = params.length
        # the tail: out from the tie, then down under gravity; strands spread in a disc that grows a little
        path = tie[None] + (np.array([0.0, 0.0, -0.025])[None] * np.minimum(s * L / 0.05, 1)[:, None]
                            + np.array([0.0, -1.0, 0.0])[None] * np.maximum(s * L - 0.03, 0)[:, None])
        e1, e2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
        spread = (0.008 + 0.012 * s)[None, :] * rad[:, None]
        off = spread[..., None] * (np.cos(ang)[:, None, None] * e1 + np.sin(ang)[:, None, None] * e2 * 0.7)
        tail = path[None] + off
        tail[..., 2] -= 0.015 * np.sin(np.pi * s)[None]  # a slight arc away from the neck
        out[:, S1 + 1:] = tail
        out[:, S1 + 1:] = coll.push_out(out[:, S1 + 1:], 0.004)
        return out
    # bun: each strand coils around the bun centre on a sphere, its own latitude
    R = 0.026 + 0.008 * rng.random()
    centre = tie + tie_dir * (R * 0.85)
    e1 = _unit(np.cross(tie_dir, np.array([1.0, 0.0, 0.0])))
    e2 = np.cross(tie_dir, e1)
    lat = np.arcsin(np.clip(rng.uniform(-0.95, 0.95, N), -1, 1))
    turns = rng.uniform(0.8, 1.4, N) * 2 * np.pi
    th = ang[:, None] + turns[:, None] * s[None]
    rr = R * (0.75 + 0.25 * np.minimum(s / 0.3, 1))[None] * (1 + 0.05 * rad[:, None])
    pos = (np.cos(lat)[:, None, None] * (np.cos(th)[..., None] * e1 + np.sin(th)[..., None] * e2)
           + np.sin(lat)[:, None, None] * tie_dir)
    out[:, S1 + 1:] = centre + pos * rr[..., None]
    out[:, S1 + 1:] = coll.push_out(out[:, S1 + 1:], 0.004)
    return out


def _frames(curves: np.ndarray, rng: np.random.Generator, radial: bool) -> tuple[np.ndarray, np.ndarray]:
    """Tangents and card side vectors (lying on the head: perpendicular to the tangent and the
    outward direction; a random twist for radial hair)."""
    tang = _unit(np.gradient(curves, axis=1))
    out = _unit(curves - CENTRE)
    if radial:
        ref = _unit(rng.normal(size=(len(curves), 1, 3)) + 0 * curves)
    else:
        ref = out
    side = np.cross(tang, ref)
    bad = np.linalg.norm(side, axis=-1) < 0.2
    side[bad] = np.cross(tang[bad], np.array([0.0, 1.0, 0.0]) if not radial else np.array([1.0, 0.0, 0.0]))
    return tang, _unit(side)


def _ribbons(curves: np.ndarray, side: np.ndarray, width: np.ndarray, variant: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quads along each curve: vertices (N*(K)*2, 3), faces, per-face UVs (u across one atlas column,
    v from root 0 to tip 1)."""
    N, K = curves.shape[:2]
    s = np.linspace(0, 1, K)
    w = width[:, None] * (1.0 - 0.55 * s[None]) / 2
    left = curves - side * w[..., None]
    right = curves + side * w[..., None]
    verts = np.stack([left, right], 2).reshape(-1, 3)  # (N, K, 2)
    base = (np.arange(N) * K * 2)[:, None] + np.arange(K - 1)[None] * 2  # (N, K-1)
    a, b, c, d = base, base + 1, base + 2, base + 3  # a=left_k, b=right_k, c=left_k+1, d=right_k+1
    faces = np.concatenate([np.stack([a, b, c], -1), np.stack([b, d, c], -1)], 1).reshape(-1, 3)
    u0 = variant / CARD_VARIANTS
    du = 1.0 / CARD_VARIANTS
    uv_vert = np.stack([np.broadcast_to(np.stack([u0, u0 + du], 1)[:, None, :], (N, K, 2)),
                        np.broadcast_to(s[None, :, None], (N, K, 2))], -1).reshape(-1, 2)
    return verts.astype(np.float32), faces.astype(np.int32), uv_vert[faces].astype(np.float32)


def build_hair(head_vertices: np.ndarray, head_faces: np.ndarray, params: HairParams,
               n_az: int = 96, n_cap: int = 28) -> list[Part]:
    """Hair parts for a head mesh: the scalp cover ``hair`` first, then ``hair_cards``, the flyaway
    cards ``hair_flyaways`` (and ``hair_bun``); empty for ``bald``. Styles not in STYLES (the
    reconstruction scaffold's plain shell) get the cover only."""
    if params.style == "bald":
        return []
    caster = RayCaster(head_vertices, head_faces)
    rng = np.random.default_rng(params.seed)
    cap, az, el, t = _cap(caster, params, rng, n_az, n_cap)
    n_rows = cap.shape[0]
    verts = cap.reshape(-1, 3)
    faces = drop_degenerate(verts, grid_faces(n_rows, n_az, wrap_cols=True), eps=1e-10)
    # UV: u around the head (8 texture repeats), v from crown (1) to the hairline (0).
    uu = (np.arange(n_az + 1) / n_az) * 8.0
    vv = 1.0 - np.arange(n_rows) / (n_rows - 1)
    col = faces % n_az
    wraps = (col.max(1, keepdims=True) == n_az - 1) & (col == 0)
    u_face = np.where(wraps, n_az, col)
    face_uv = np.stack([uu[u_face], vv[faces // n_az]], -1).astype(np.float32)
    parts = [Part("hair", verts, faces, "hair", face_uv=face_uv, texture=_cover_texture(params))]
    st = _STYLES.get(params.style)
    if st is None:
        return parts

    coll = Collider(caster)
    n = max(16, int(round(st.cards * params.density)))
    roots, normals = scalp_roots(head_vertices, head_faces, params, n * 2, rng)
    if st.comb == "part":  # a parting line over the top: no roots on it
        on_top = (roots[:, 1] > 0.06) & (roots[:, 2] > -0.06)
        keep = ~(on_top & (np.abs(roots[:, 0] - params.part) < 0.003))
        roots, normals = roots[keep], normals[keep]
    if params.style == "receding":  # thinning crown
        crown = _unit(roots - CENTRE)[:, 1]
        keep = rng.random(len(roots)) > 0.6 * np.clip((crown - 0.85) / 0.1, 0, 1)
        roots, normals = roots[keep], normals[keep]
    roots, normals = roots[:n], normals[:n]
    n = len(roots)
    height = np.clip((_unit(roots - CENTRE)[:, 1] + 0.3) / 1.3, 0, 1)  # 0 at the nape .. 1 at the crown
    base_lift = min(1.7 * params.thickness + 0.0008, 0.006)  # an afro's cards grow through its thick cover
    lift = base_lift + st.volume * height + rng.uniform(0, 0.0015, n)
    flyaway = (rng.random(n) < 0.03).astype(np.float64)
    lengths = params.length * rng.uniform(0.8, 1.0, n)
    # flyaways are short loose hairs standing a little off the rest, not strands the length of the style
    fly_len = FLYAWAY_MAX_LENGTH * np.random.default_rng(params.seed + 11).uniform(0.5, 1.0, n)  # own stream
    lengths = np.where(flyaway > 0, np.minimum(lengths, fly_len), lengths)
    if st.comb == "gather":
        curves = _gather(coll, roots, normals, params, st, rng, lift)
    else:
        curves = _grow(coll, roots, normals, params, st, rng, lengths, lift, flyaway)
        if st.cut is not None:  # a straight cut: strands end near one height (a little jagged)
            y_cut = st.cut + rng.normal(0, 0.006, n)
            below = curves[..., 1] < y_cut[:, None]
            first = np.where(below.any(1), below.argmax(1), curves.shape[1] - 1)
            seg = np.linalg.norm(np.diff(curves, axis=1), axis=-1)
            arc = np.concatenate([np.zeros((n, 1)), np.cumsum(seg, 1)], 1)
            keep_len = np.maximum(arc[np.arange(n), first], 0.04)
            curves = _resample(curves, keep_len, curves.shape[1])
    # clumping: each card is pulled towards its nearest guide's curve, more towards the tip
    n_guides = max(4, n // 8)
    gi = cKDTree(roots[:n_guides]).query(roots)[1]
    s = np.linspace(0, 1, curves.shape[1])[None, :, None]
    guide = curves[gi] - curves[gi][:, :1] + curves[:, :1]
    pull = st.clump * s ** 1.5 * (1 - flyaway)[:, None, None]
    curves = curves * (1 - pull) + guide * pull
    # waves and curls as offsets in each card's frame, growing in over the first centimetres
    tang, side = _frames(curves, rng, st.comb == "radial")
    arc = np.concatenate([np.zeros((n, 1)), np.cumsum(np.linalg.norm(np.diff(curves, axis=1), axis=-1), 1)], 1)
    ramp = np.clip(arc / 0.03, 0, 1)[..., None]
    if st.wave[0] > 0:
        phase = rng.uniform(0, 2 * np.pi, n)[:, None] * 0.3 + (roots[:, 0] * 20)[:, None]
        curves = curves + side * (st.wave[0] * np.sin(2 * np.pi * arc / st.wave[1] + phase))[..., None] * ramp
    if st.curl[0] > 0:
        binorm = _unit(np.cross(tang, side))
        ph = 2 * np.pi * arc / (st.curl[1] * rng.uniform(0.8, 1.2, n)[:, None]) + rng.uniform(0, 2 * np.pi, n)[:, None]
        curves = curves + (side * np.cos(ph)[..., None] + binorm * np.sin(ph)[..., None]) * st.curl[0] * ramp
    arc_lift = np.minimum(lift[:, None], 0.0015 + params.thickness + arc[:, 1:] * 0.3)
    if st.hug is None:
        curves[:, 1:] = coll.push_out(curves[:, 1:], arc_lift * 0.7)
    else:  # short styles: back within their layer after clumping and curls
        hover = st.hug + st.curl[0] + 0.015 * flyaway[:, None]
        curves[:, 1:] = coll.hug(curves[:, 1:], arc_lift * 0.7, hover + lift[:, None] - arc_lift * 0.7)
    tang, side = _frames(curves, rng, st.comb == "radial")
    if st.comb == "gather":  # past the tie the cards of a tail or bun have no head to lie on: twist them
        twist = rng.normal(size=(n, 1, 3))
        alt = _unit(np.cross(tang, twist))
        side[:, 7:] = alt[:, 7:]
    width = st.width * rng.uniform(0.7, 1.3, n) * (1 - 0.6 * flyaway)
    variant = rng.integers(0, CARD_VARIANTS, n)
    v, f, uv = _ribbons(curves, side, width, variant)
    v = coll.push_out(v.astype(np.float64), 0.0012).astype(np.float32)
    tex = card_texture(params)
    # flyaways are a part of their own: sub-pixel wisps at training resolutions, rendered like the other cards. Default
    # surface samples leave them out (anyhead.render.views.INTERIOR_PARTS), but GT points include them: the depth test
    # in render_sample keeps the flyaway samples some target records, thinned with the rest (views.even_subset)
    fly = np.repeat(flyaway > 0, 2 * (curves.shape[1] - 1))
    vert_card = np.repeat(flyaway > 0, 2 * curves.shape[1])
    if fly.any():  # a flat ribbon vanishes edge-on: flyaways are crossed cards (a second ribbon at 90 degrees)
        fi = np.flatnonzero(flyaway > 0)
        side2 = _unit(np.cross(tang[fi], side[fi]))
        v2, f2, uv2 = _ribbons(curves[fi], side2, width[fi], variant[fi])
        v2 = coll.push_out(v2.astype(np.float64), 0.0012).astype(np.float32)
    for name, fsel, vsel in (("hair_cards", ~fly, ~vert_card), ("hair_flyaways", fly, vert_card)):
        if fsel.any():
            remap = np.cumsum(vsel) - 1
            pv, pf, puv = v[vsel], remap[f[fsel]].astype(np.int32), uv[fsel]
            if name == "hair_flyaways":
                pv, pf, puv = np.concatenate([pv, v2]), np.concatenate([pf, f2 + len(pv)]), np.concatenate([puv, uv2])
            parts.append(Part(name, pv, pf, "hair", face_uv=puv, texture=tex))

    if params.style == "bun":
        d = spherical_dirs(np.array([180.0]), np.array([38.0]))
        rb = caster.outer_surface(CENTRE, d)[0]
        radius = 0.024
        bv, bf = sphere(CENTRE + d[0] * (rb + 0.004 + radius * 0.85), radius * np.array([1.0, 0.9, 0.9]), 3)
        nb = (bv - bv.mean(0)) / np.linalg.norm(bv - bv.mean(0), axis=1, keepdims=True)
        buv = np.stack([np.arctan2(nb[:, 0], nb[:, 2]) / np.pi * 4.0, nb[:, 1] * 0.5 + 0.5], -1)
        tex = strand_texture(params.dye or params.color, params.seed + 1, 128)
        parts.append(Part("hair_bun", bv, bf, "hair", face_uv=buv[bf].astype(np.float32), texture=tex))
    return parts


def tuck_under_hat(parts: list[Part], hat: list[Part]) -> list[Part]:
    """Hair cards pressed under a hat: a card vertex beyond the hat (seen from CENTRE, the hat's surface
    lies between it and the head) moves in along that line to just inside the hat, so cards run on under
    the hat instead of poking through it and come out below its rim with no gap. Parts other than
    ``hair_cards`` / ``hair_flyaways`` pass unchanged (hats are fitted over the scalp cover)."""
    if not hat:
        return parts
    vs, fs, off = [], [], 0
    for h in hat:
        vs.append(h.vertices)
        fs.append(np.asarray(h.faces) + off)
        off += len(h.vertices)
    caster = RayCaster(np.concatenate(vs), np.concatenate(fs))
    out = []
    for p in parts:
        if p.name not in ("hair_cards", "hair_flyaways"):
            out.append(p)
            continue
        rel = p.vertices.astype(np.float64) - CENTRE
        r = np.linalg.norm(rel, axis=1)
        hit = caster.cast(np.broadcast_to(CENTRE, rel.shape), rel / np.maximum(r, 1e-9)[:, None])
        outside = (hit["primID"] >= 0) & (hit["tfar"] < r + HAT_CLEARANCE)
        v = p.vertices.copy()
        # hair under the hat is pressed down under it (not cut), so it carries on to come out below the brim
        v[outside] = (CENTRE + rel[outside] / r[outside, None] * (hit["tfar"][outside] - HAT_CLEARANCE)[:, None])
        out.append(Part(p.name, v.astype(p.vertices.dtype), p.faces, p.material, face_uv=p.face_uv, texture=p.texture))
    return out
