"""Procedural appearance of ICT heads: skin, lips, brows, stubble/beard in UV space; eyes, teeth.

The skin texture is baked in UV space: every texel of the Face and BackHead UV tiles (ICT's UDIM
tiles 0 and 1, side by side in one 2:1 atlas) is mapped back to its 3D position on the neutral
mesh, and colour fields are evaluated there, relative to the 68 landmarks. The texture therefore
follows the topology and fits every identity.

Skin tones are drawn along the Monk Skin Tone scale (10 reference swatches, Google 2022, CC-BY),
interpolated in linear RGB, so the full range of human skin is covered.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .ict import ICTModel

MONK_SWATCHES = ["f6ede4", "f3e7db", "f7ead0", "eadaba", "d7bd96", "a07e56", "825c43", "604134", "3a312a", "292420"]
HAIR_COLORS: dict[str, tuple[float, float, float]] = {  # sRGB, natural shades
    "black": (0.05, 0.04, 0.035), "dark_brown": (0.16, 0.10, 0.07), "brown": (0.30, 0.19, 0.11),
    "light_brown": (0.48, 0.33, 0.20), "dark_blonde": (0.62, 0.48, 0.30), "blonde": (0.82, 0.68, 0.45),
    "auburn": (0.40, 0.15, 0.07), "red": (0.62, 0.26, 0.10), "grey": (0.55, 0.54, 0.52), "white": (0.85, 0.84, 0.80),
}
IRIS_COLORS: dict[str, tuple[float, float, float]] = {
    "dark_brown": (0.18, 0.10, 0.05), "brown": (0.35, 0.20, 0.08), "hazel": (0.45, 0.35, 0.15),
    "green": (0.30, 0.42, 0.22), "blue": (0.30, 0.45, 0.65), "grey": (0.45, 0.50, 0.55),
}
BEARDS = ("none", "stubble", "moustache", "goatee", "full")


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def monk_tone_rgb(tone: float) -> np.ndarray:
    """sRGB colour of a continuous Monk Skin Tone value in [1, 10]."""
    sw = np.array([[int(h[i:i + 2], 16) / 255.0 for i in (0, 2, 4)] for h in MONK_SWATCHES])
    t = float(np.clip(tone, 1.0, 10.0)) - 1.0
    i = min(int(t), 8)
    f = t - i
    return linear_to_srgb((1 - f) * srgb_to_linear(sw[i]) + f * srgb_to_linear(sw[i + 1]))


@dataclass
class AppearanceParams:
    """Everything that decides a head's colours; recorded in the asset's provenance."""

    skin_tone: float  # Monk scale, 1 (lightest) .. 10 (darkest)
    redness: float
    lip_tint: float
    brow_thickness: float  # metres
    brow_darkness: float
    beard: str
    hair_color: str
    iris_color: str
    seed: int

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "AppearanceParams":
        tone = float(rng.uniform(1.0, 10.0))
        dark_hair = ["black", "dark_brown", "brown"]
        hair = str(rng.choice(dark_hair if tone > 6 and rng.random() < 0.85 else list(HAIR_COLORS)))
        iris = str(rng.choice(["dark_brown", "brown"] if tone > 6 else list(IRIS_COLORS)))
        return cls(skin_tone=tone, redness=float(rng.uniform(0.0, 1.0)), lip_tint=float(rng.uniform(0.0, 1.0)),
                   brow_thickness=float(rng.uniform(0.004, 0.009)), brow_darkness=float(rng.uniform(0.5, 0.95)),
                   beard=str(rng.choice(BEARDS, p=[0.55, 0.15, 0.08, 0.08, 0.14])), hair_color=hair, iris_color=iris,
                   seed=int(rng.integers(0, 2**31 - 1)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def value_noise(p: np.ndarray, cell: float, rng: np.random.Generator, period: int = 64) -> np.ndarray:
    """Smooth 3D value noise (unit variance) at feature size ``cell`` metres.

    The lattice is periodic (``period`` cells) so fine noise stays cheap; a random offset hides
    the period's alignment.
    """
    grid = ndimage.gaussian_filter(rng.standard_normal((period,) * 3), 0.8, mode="wrap")
    grid /= grid.std() + 1e-9
    coords = (np.asarray(p) / cell + rng.uniform(0, period, 3)).T
    return ndimage.map_coordinates(grid, coords, order=1, mode="grid-wrap")


class _FrontMask:
    """Masks drawn in the frontal (x, y) plane and looked up for front-facing surface points."""

    def __init__(self, res: float = 0.0005, x0: float = -0.13, y0: float = -0.26, w: float = 0.26, h: float = 0.40):
        self.res, self.x0, self.y1 = res, x0, y0 + h
        self.size = (int(w / res), int(h / res))

    def _px(self, xy: np.ndarray) -> list[tuple[float, float]]:
        return [((x - self.x0) / self.res, (self.y1 - y) / self.res) for x, y in xy]

    def draw(self, polygons: list[np.ndarray] = (), lines: list[tuple[np.ndarray, float]] = (), blur: float = 0.002) -> np.ndarray:
        img = Image.new("F", self.size, 0.0)
        d = ImageDraw.Draw(img)
        for poly in polygons:
            d.polygon(self._px(poly[:, :2]), fill=1.0)
        for line, width in lines:
            d.line(self._px(line[:, :2]), fill=1.0, width=max(1, int(width / self.res)), joint="curve")
        a = np.asarray(img, dtype=np.float64)
        return ndimage.gaussian_filter(a, blur / self.res) if blur > 0 else a

    def lookup(self, mask: np.ndarray, p: np.ndarray) -> np.ndarray:
        col = (p[:, 0] - self.x0) / self.res
        row = (self.y1 - p[:, 1]) / self.res
        return ndimage.map_coordinates(mask, [row, col], order=1, mode="constant", cval=0.0)


def _uv_texel_positions(model: ICTModel, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise the Face+BackHead UV tiles; return (rows, cols, 3D neutral positions) of covered texels."""
    W, H = 2 * height, height
    tiles = [model.materials.index("M_Face"), model.materials.index("M_BackHead")]
    sel = np.flatnonzero(np.isin(model.face_material, tiles))
    uv = model.uv[model.faces_uv[sel]].astype(np.float64)  # (F, 3, 2); u in [0, 2)
    px = np.stack([uv[..., 0] / 2.0 * W, (1.0 - uv[..., 1]) * H], axis=-1)
    img = Image.new("I", (W, H), -1)
    draw = ImageDraw.Draw(img)
    for i, tri in enumerate(px):
        draw.polygon([tuple(t) for t in tri], fill=i)
    ids = np.asarray(img)
    rows, cols = np.nonzero(ids >= 0)
    tid = ids[rows, cols]
    a, b, c = px[tid, 0], px[tid, 1], px[tid, 2]
    q = np.stack([cols + 0.5, rows + 0.5], axis=1)
    v0, v1, v2 = b - a, c - a, q - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    w1 = np.clip((d11 * d20 - d01 * d21) / den, 0, 1)
    w2 = np.clip((d00 * d21 - d01 * d20) / den, 0, 1)
    w0 = np.clip(1 - w1 - w2, 0, 1)
    tri3 = model.neutral[model.faces[sel[tid]]].astype(np.float64)
    pos = w0[:, None] * tri3[:, 0] + w1[:, None] * tri3[:, 1] + w2[:, None] * tri3[:, 2]
    return rows, cols, pos


def skin_texture(model: ICTModel, params: AppearanceParams, height: int = 512) -> np.ndarray:
    """Bake the skin atlas (height x 2*height sRGB uint8) for the Face and BackHead tiles."""
    return skin_maps(model, params, height)[0]


def skin_maps(model: ICTModel, params: AppearanceParams, height: int = 512, look: Any = None
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """The skin atlas and, with a :class:`~anyhead.look.LookParams`, its detail (pores, freckles, moles, lash
    line) and spec map ((height, 2*height, 2) uint8, see :class:`~anyhead.assets.Part`)."""
    rng = np.random.default_rng(params.seed)
    rows, cols, p = _uv_texel_positions(model, height)
    lm = model.neutral[model.landmarks].astype(np.float64)
    base = srgb_to_linear(monk_tone_rgb(params.skin_tone))
    light = 1.0 - (params.skin_tone - 1.0) / 9.0  # redness shows more on light skin

    # Subsurface-like tone variation: low-frequency blotches plus pores.
    col = base[None, :] * (1.0 + 0.06 * value_noise(p, 0.03, rng)[:, None] + 0.03 * value_noise(p, 0.002, rng)[:, None])
    red = np.zeros(len(p))
    for centre, r in [((lm[2] + lm[31]) / 2, 0.025), ((lm[14] + lm[35]) / 2, 0.025), (lm[30], 0.012)]:
        red += np.exp(-((p - centre) ** 2).sum(1) / (2 * r * r))
    red += np.clip((np.abs(p[:, 0]) - 0.065) / 0.01, 0, 1)  # ears
    red *= params.redness * (0.15 + 0.25 * light)
    col = col * (1.0 - red[:, None] * np.array([0.0, 0.35, 0.3]))

    fm = _FrontMask()
    front = np.clip((p[:, 2] - 0.02) / 0.02, 0, 1)  # only surfaces facing forward get frontal masks

    # Lips: outer-lip polygon (landmarks 48-59).
    lips = fm.lookup(fm.draw([lm[48:60]], blur=0.0008), p) * front
    lip_col = base * np.array([0.78, 0.52, 0.52]) * (0.8 + 0.3 * params.lip_tint)
    col = col * (1 - lips[:, None]) + lip_col[None] * lips[:, None]

    hair_lin = srgb_to_linear(HAIR_COLORS[params.hair_color])
    strands = np.clip(0.6 + 0.5 * value_noise(p * np.array([1.0, 4.0, 1.0]), 0.0015, rng), 0, 1)

    # Brows: thick polylines along landmarks 17-21 and 22-26, lifted 2 mm.
    lift = np.array([0.0, 0.002, 0.0])
    brows = fm.lookup(fm.draw(lines=[(lm[17:22] + lift, params.brow_thickness), (lm[22:27] + lift, params.brow_thickness)],
                              blur=0.0015), p) * front
    a = np.clip(brows * params.brow_darkness * strands, 0, 1)[:, None]
    col = col * (1 - a) + hair_lin[None] * a

    # Facial hair regions from landmarks: jaw line 3-13, cheeks up to the nose wings, moustache.
    if params.beard != "none":
        nose_base, mouth_l, mouth_r, chin = lm[33], lm[48], lm[54], lm[8]
        jaw = lm[3:14]
        full = np.concatenate([jaw, [lm[13] + [0, 0.035, 0], lm[35] + [0.008, -0.004, 0], lm[31] + [-0.008, -0.004, 0],
                                     lm[3] + [0, 0.035, 0]]])
        moustache = np.array([mouth_l + [-0.004, 0.001, 0], nose_base + [-0.012, -0.003, 0], nose_base + [0.012, -0.003, 0],
                              mouth_r + [0.004, 0.001, 0], lm[51] + [0, 0.001, 0]])
        goatee = np.array([mouth_l + [-0.004, -0.003, 0], mouth_r + [0.004, -0.003, 0], chin + [0.014, 0.0, 0],
                           chin + [0, -0.006, 0], chin + [-0.014, 0.0, 0]])
        polys = {"stubble": [full, moustache], "moustache": [moustache], "goatee": [goatee, moustache], "full": [full, moustache]}
        region = fm.lookup(fm.draw(polys[params.beard], blur=0.003), p) * front
        # the beard also wraps under the chin and along the jaw, which the frontal plane misses
        under = np.clip((lm[8, 1] + 0.01 - p[:, 1]) / 0.01, 0, 1) * np.clip((p[:, 2] - 0.0) / 0.03, 0, 1) * np.clip(
            (p[:, 1] - (lm[8, 1] - 0.06)) / 0.01, 0, 1)
        if params.beard in ("stubble", "full"):
            region = np.maximum(region, under * (np.abs(p[:, 0]) < 0.06))
        region *= 1 - np.clip(lips * 3, 0, 1)
        density = {"stubble": 0.4, "moustache": 0.9, "goatee": 0.9, "full": 0.95}[params.beard]
        speck = np.clip(0.5 + 0.8 * value_noise(p, 0.0007, rng), 0, 1) if params.beard == "stubble" else strands
        a = np.clip(region * density * speck, 0, 1)[:, None]
        col = col * (1 - a) + hair_lin[None] * a

    spec = None
    if look is not None:
        from .look import skin_detail

        # the lash line: a thin darker line along the upper lid margins
        lash = fm.lookup(fm.draw(lines=[(lm[36:40] + [0, 0.0004, 0], 0.0008), (lm[42:46] + [0, 0.0004, 0], 0.0008)],
                                 blur=0.0004), p) * front
        col = col * (1 - 0.45 * np.clip(lash, 0, 1))[:, None]
        col, spec = skin_detail(col, p, lm, front, lips, base, look)

    tex = np.zeros((height, 2 * height, 3))
    tex[rows, cols] = linear_to_srgb(col)
    # Dilate into empty texels so bilinear lookups at seams never see black.
    filled = np.zeros((height, 2 * height), bool)
    filled[rows, cols] = True
    idx = ndimage.distance_transform_edt(~filled, return_distances=False, return_indices=True)
    tex = tex[idx[0], idx[1]]
    spec_map = None
    if spec is not None:
        sm = np.full((height, 2 * height, 2), 1.0)
        sm[rows, cols] = spec
        spec_map = (np.clip(sm[idx[0], idx[1]] * 128, 0, 255) + 0.5).astype(np.uint8)
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8), spec_map


def eye_mouth_colors(model: ICTModel, vertices: np.ndarray, params: AppearanceParams) -> np.ndarray:
    """Per-vertex sRGB colours for eyeballs (sclera, iris, pupil), teeth, gums and lashes."""
    rng = np.random.default_rng(params.seed + 1)
    colors = np.zeros((len(vertices), 3))
    colors[model.region("eyeballs")] = (0.90, 0.88, 0.84)
    colors[model.region("teeth")] = (0.92, 0.88, 0.78)
    colors[model.region("gums_tongue")] = (0.70, 0.33, 0.33)
    colors[model.region("eyelashes")] = (0.04, 0.035, 0.03)
    iris = np.array(IRIS_COLORS[params.iris_color])
    # ICT's sclera mesh includes the cornea dome in front of the iris; colour both by the angle
    # from each eyeball's optical axis so the iris shows through.
    eyes = model.region("eyeballs")
    v = vertices[eyes].astype(np.float64)
    for side in (v[:, 0] < 0, v[:, 0] >= 0):
        idx, e = eyes[side], v[side]
        centre = e.mean(0)
        front = e[np.argmax(e[:, 2])]
        axis = (front - centre) / np.linalg.norm(front - centre)
        ang = np.degrees(np.arccos(np.clip(((e - centre) / np.linalg.norm(e - centre, axis=1, keepdims=True)) @ axis, -1, 1)))
        c = iris[None] * (0.8 + 0.4 * rng.random((len(idx), 1)))
        c = np.where((ang > 28)[:, None], c * 0.55, c)  # limbal ring
        c = np.where((ang < 11)[:, None], 0.02, c)  # pupil
        colors[idx] = np.where((ang < 33)[:, None], np.clip(c, 0, 1), colors[idx])
    return colors.astype(np.float32)
