"""Realistic-look details of a head: skin detail, eyes, lashes, and the shoulders with a garment.

* :class:`LookParams` is drawn per head from its own random stream (``[seed, 13]``), so adding it
  changes no other choice of existing heads.
* :func:`skin_detail` adds pores, freckles and moles to the baked skin albedo and returns the
  regional specular map (T-zone shinier and smoother, cheeks rougher), all from the head's seed.
* :func:`eye_uvs` / :func:`eye_texture` map each eyeball by the angle from its optical axis (a polar
  map, seamless) onto a painted texture: sclera with veins and a darker periphery, a radial-fibre iris
  with a collarette and a dark limbal ring, the pupil, and the upper lid's shadow.
* :func:`eyelashes` replaces ICT's opaque lash cards (which render as black rings: upstream draws them
  with an alpha texture) with thin curved ribbons rooted on the lid margins.
* :func:`torso_parts` grows a torso from the open end of the ICT neck (its first ring *is* the neck's
  boundary loop, so there is no gap) and dresses it: crew-neck t-shirt, v-neck, collared shirt,
  hoodie, turtleneck or a strap top, plain or patterned.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .appearance import HAIR_COLORS, IRIS_COLORS, linear_to_srgb, srgb_to_linear, value_noise
from .assets import Part
from .geometry import RayCaster, grid_faces, tube

if TYPE_CHECKING:
    from .config import LookConfig

GARMENTS = ("crew", "vneck", "collar", "hoodie", "turtleneck", "straps")
BODY_PARTS = ("torso", "garment", "garment_trim")  # the parts torso_parts adds (not accessories)
PATTERNS = ("plain", "stripes", "checks", "dots")
GARMENT_COLORS: dict[str, tuple[float, float, float]] = {  # sRGB
    "white": (0.90, 0.90, 0.88), "black": (0.08, 0.08, 0.09), "grey": (0.50, 0.50, 0.52), "navy": (0.12, 0.16, 0.32),
    "sky": (0.50, 0.66, 0.82), "red": (0.70, 0.13, 0.14), "burgundy": (0.40, 0.08, 0.14), "olive": (0.36, 0.38, 0.20),
    "forest": (0.13, 0.32, 0.20), "mustard": (0.82, 0.62, 0.18), "beige": (0.78, 0.70, 0.58), "pink": (0.90, 0.62, 0.70),
    "teal": (0.10, 0.45, 0.47), "denim": (0.28, 0.38, 0.55),
}


@dataclass
class LookParams:
    """Per-head look choices (recorded in the head's spec)."""

    shoulders: bool
    garment: str
    garment_color: str
    pattern: str
    pattern_color: str
    shoulder_width: float  # half-width of the torso at the shoulders, metres
    freckles: float  # 0 (none) .. 1 (dense)
    moles: int
    pores: float
    subsurface: float
    seed: int

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: "LookConfig") -> "LookParams":
        w = np.array([getattr(cfg.garments, g) for g in GARMENTS], np.float64)
        garment = str(rng.choice(GARMENTS, p=w / w.sum()))
        colors = list(GARMENT_COLORS)
        gc = str(rng.choice(colors))
        pc = str(rng.choice([c for c in colors if c != gc]))
        pattern = str(rng.choice(PATTERNS[1:])) if rng.random() < cfg.pattern_prob else "plain"
        freckles = float(rng.uniform(0.3, 1.0)) if rng.random() < cfg.freckle_prob else 0.0
        return cls(cfg.shoulders, garment, gc, pattern, pc, float(rng.uniform(0.19, 0.23)), freckles,
                   int(rng.integers(cfg.moles[0], cfg.moles[1] + 1)), float(cfg.pores), float(cfg.subsurface),
                   int(rng.integers(0, 2**31 - 1)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- skin ------------------------------------------------------------------------------------------


def _smooth(x: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def _spots(p: np.ndarray, weight: np.ndarray, n: int, radius: tuple[float, float], rng: np.random.Generator
           ) -> np.ndarray:
    """Soft round spots (0..1) at ``n`` texels drawn with probability ``weight``."""
    if n <= 0 or weight.sum() <= 0:
        return np.zeros(len(p))
    idx = rng.choice(len(p), size=n, p=weight / weight.sum())
    r = rng.uniform(*radius, n)
    s = rng.uniform(0.5, 1.0, n)
    d, i = cKDTree(p[idx]).query(p, k=1)
    return s[i] * np.exp(-0.5 * (d / r[i]) ** 4)  # flat-topped, soft edge


def skin_detail(col: np.ndarray, p: np.ndarray, lm: np.ndarray, front: np.ndarray, lips: np.ndarray, base: np.ndarray,
                look: LookParams) -> tuple[np.ndarray, np.ndarray]:
    """Pores, freckles and moles on the linear albedo ``col`` of texels at neutral positions ``p``; returns
    (albedo, spec map (N, 2): specular strength and shininess scales)."""
    rng = np.random.default_rng([look.seed, 1])
    n = len(p)
    # regions: T-zone (forehead centre, nose ridge, chin), cheeks, lips
    brow_y = lm[17:27, 1].mean()
    forehead = _smooth(p[:, 1], brow_y, brow_y + 0.01) * (1 - _smooth(np.abs(p[:, 0]), 0.03, 0.05)) * front
    a, b = lm[27], lm[30]
    t = np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
    nose = np.exp(-((p - (a + t[:, None] * (b - a))) ** 2).sum(1) / (2 * 0.009 ** 2)) * front
    chin = np.exp(-((p - lm[8] - [0, 0.012, 0]) ** 2).sum(1) / (2 * 0.012 ** 2)) * front
    tzone = np.clip(forehead + nose + 0.6 * chin, 0, 1)
    cheek = np.zeros(n)
    for c in ((lm[2] + lm[31]) / 2, (lm[14] + lm[35]) / 2):
        cheek += np.exp(-((p - c) ** 2).sum(1) / (2 * 0.02 ** 2))
    cheek = np.clip(cheek, 0, 1) * front
    ks = 1.0 + 0.8 * tzone - 0.35 * cheek + 0.6 * lips
    shin = 1.0 + 0.5 * tzone - 0.4 * cheek - 0.2 * lips
    # pores: sparse pits in fine noise, most visible on nose and cheeks; they also break up the highlight
    fine = value_noise(p, 0.0005, rng)
    pits = np.clip(fine - 0.9, 0, None) * look.pores * (0.6 + 0.8 * np.clip(nose + cheek, 0, 1))
    col = col * (1 - np.clip(0.10 * pits, 0, 0.3))[:, None]
    ks *= 1 - np.clip(0.35 * pits, 0, 0.6) + 0.08 * look.pores * value_noise(p, 0.0012, rng)
    # freckles: nose bridge and cheeks, a little on the forehead
    if look.freckles > 0:
        centre = (lm[29] + lm[30]) / 2
        d = p - centre
        band = np.exp(-0.5 * ((d[:, 0] / 0.045) ** 2 + (d[:, 1] / 0.028) ** 2)) * front * (1 - lips)
        f = _spots(p, band + 0.15 * forehead, int(450 * look.freckles), (0.0004, 0.0010), rng)
        light = np.clip(1.2 - base.mean() * 0.8, 0.5, 1.0)
        col = col * (1 - 0.35 * light * f[:, None] * np.array([0.45, 0.62, 0.75]))
    # moles: a few dark spots on the face and neck, away from lips and eyes
    if look.moles > 0:
        eye_y = lm[36:48, 1].mean()
        w = (np.clip(p[:, 2] + 0.04, 0, None) > 0) * (np.abs(p[:, 1] - eye_y) > 0.012) * (1 - lips) * (p[:, 1] < 0.06)
        m = _spots(p, w.astype(np.float64), look.moles, (0.0007, 0.0016), rng)
        mole = base * np.array([0.30, 0.20, 0.16])
        col = col * (1 - m[:, None]) + mole[None] * m[:, None]
        ks *= 1 - 0.4 * m
    spec = np.stack([np.clip(ks, 0.05, 1.99), np.clip(shin, 0.2, 1.99)], 1)
    return col, spec


# -- eyes ------------------------------------------------------------------------------------------


def _eye_frames(model: Any, vertices: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(centre, axis, up, right) of each eyeball: the subject's right eye (x < 0) first."""
    eyes = model.region("eyeballs")
    v = vertices[eyes].astype(np.float64)
    out = []
    for side in (v[:, 0] < 0, v[:, 0] >= 0):
        e = v[side]
        centre = e.mean(0)
        front = e[np.argmax(e[:, 2])]
        axis = (front - centre) / np.linalg.norm(front - centre)
        up = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
        up /= np.linalg.norm(up)
        out.append((centre, axis, up, np.cross(up, axis)))
    return out


def eye_uvs(model: Any, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-corner UVs (F, 3, 2) of eyeball faces: a polar map of the angle from each eye's optical axis,
    r = 0.5 sqrt(angle / 180 deg), in the left (subject's right eye) or right half of the atlas."""
    frames = _eye_frames(model, vertices)
    q = vertices[faces].astype(np.float64)  # (F, 3, 3)
    side = (q[:, :, 0].mean(1) >= 0).astype(int)
    uv = np.zeros(q.shape[:2] + (2,))
    for s, (centre, axis, up, right) in enumerate(frames):
        sel = side == s
        d = q[sel] - centre
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        ang = np.arccos(np.clip(d @ axis, -1, 1))
        phi = np.arctan2(d @ up, d @ right)
        r = 0.5 * np.sqrt(ang / np.pi) * 0.98
        uv[sel, :, 0] = (s + 0.5 + r * np.cos(phi)) / 2
        uv[sel, :, 1] = 0.5 + r * np.sin(phi)
    return uv.astype(np.float32)


def eye_texture(iris_color: str, seed: int, res: int = 256) -> np.ndarray:
    """The two-eye atlas (res x 2 res sRGB uint8) matching :func:`eye_uvs`."""
    rng = np.random.default_rng([seed, 2])
    y, x = np.mgrid[0:res, 0:res]
    tu, tv = (x + 0.5) / res - 0.5, 0.5 - (y + 0.5) / res
    r = np.minimum(np.hypot(tu, tv) / 0.98, 0.5)
    phi = np.arctan2(tv, tu)
    ang = np.degrees(np.pi * (2 * r) ** 2)  # degrees from the optical axis
    el = np.sin(np.radians(ang)) * np.sin(phi)  # height on the eyeball (unit sphere), + up
    dirs = np.stack([np.sin(np.radians(ang)) * np.cos(phi), el, np.cos(np.radians(ang))], -1).reshape(-1, 3)
    tiles = []
    iris_lin = srgb_to_linear(IRIS_COLORS[iris_color])
    for _ in range(2):
        pupil = rng.uniform(9.5, 12.5)
        # sclera: off-white, darker and a little pink towards the periphery, thin red veins
        col = np.ones((res, res, 3)) * srgb_to_linear(np.array([0.82, 0.78, 0.74]))
        col *= (1 - 0.35 * _smooth(ang, 40, 95))[..., None]
        col *= (1 - 0.12 * _smooth(ang, 40, 90)[..., None] * np.array([0.0, 0.6, 0.7]))
        n = value_noise(dirs * 0.012, 0.0016, rng).reshape(res, res)
        n2 = value_noise(dirs * 0.012, 0.004, rng).reshape(res, res)
        veins = np.exp(-(n / 0.09) ** 2) * _smooth(ang, 38, 70) * _smooth(n2, 0.0, 1.0)
        col *= 1 - 0.7 * veins[..., None] * np.array([0.15, 0.75, 0.75])
        # iris: radial fibres, collarette, darker rim; limbal ring blends into the sclera
        k = np.arange(18, 90)
        fib = (rng.normal(0, 1, len(k))[:, None, None] * np.sin(k[:, None, None] * phi[None] + rng.uniform(0, 2 * np.pi, len(k))
                                                              [:, None, None] + 3 * r[None])).sum(0) / np.sqrt(len(k))
        radial = value_noise(np.stack([np.cos(phi) * 2, np.sin(phi) * 2, r * 20], -1).reshape(-1, 3), 0.3, rng).reshape(res, res)
        iris = iris_lin * (0.8 + 0.22 * np.tanh(0.8 * fib) + 0.08 * radial)[..., None]
        coll = np.exp(-0.5 * ((ang - pupil * 1.45) / 1.6) ** 2)
        iris = iris * (1 + 0.35 * coll)[..., None] + 0.06 * coll[..., None] * np.array([0.9, 0.7, 0.4])
        iris *= (1 - 0.55 * _smooth(ang, 24, 29))[..., None]  # limbal ring
        w_iris = 1 - _smooth(ang, 30, 33.5)
        col = col * (1 - w_iris[..., None]) + iris * w_iris[..., None]
        w_pupil = 1 - _smooth(ang, pupil - 0.6, pupil + 0.6)
        col = col * (1 - w_pupil[..., None]) + 0.004 * w_pupil[..., None]
        # upper-lid shadow and darker corners
        across = np.abs(np.sin(np.radians(ang)) * np.cos(phi))  # towards the corners
        shade = 1 - 0.5 * _smooth(el, 0.22, 0.45) - 0.2 * _smooth(-el, 0.3, 0.5) - 0.25 * _smooth(across, 0.55, 0.8)
        col *= np.clip(shade, 0.3, 1)[..., None]
        tiles.append(col)
    tex = linear_to_srgb(np.concatenate(tiles, 1))
    return (np.clip(tex, 0, 1) * 255 + 0.5).astype(np.uint8)


def eyelashes(lm: np.ndarray, hair_color: str, seed: int) -> Part:
    """Thin curved lash ribbons rooted on the upper and lower lid margins (landmarks 36-47)."""
    rng = np.random.default_rng([seed, 3])
    vs, fs, off = [], [], 0
    margins = [(lm[[36, 37, 38, 39]], True, -1), (lm[[39, 40, 41, 36]], False, -1),
               (lm[[45, 44, 43, 42]], True, 1), (lm[[42, 47, 46, 45]], False, 1)]
    for pts, upper, side in margins:
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        t_knots = np.concatenate([[0], np.cumsum(seg)]) / seg.sum()
        coef = [np.polyfit(t_knots, pts[:, k], 3) for k in range(3)]
        count = 46 if upper else 22
        ts = np.sort(rng.uniform(0.06, 0.94, count)) if upper else np.sort(rng.uniform(0.15, 0.85, count))
        for t in ts:
            root = np.array([np.polyval(c, t) for c in coef])
            tangent = np.array([np.polyval(np.polyder(c), t) for c in coef])
            tangent /= np.linalg.norm(tangent)
            outer = t if upper else 1 - t  # 0 at the inner corner for upper margins (ordered outer -> inner for right)
            outer = 1 - outer if side < 0 else outer
            length = (rng.uniform(0.0045, 0.0070) if upper else rng.uniform(0.0018, 0.0030)) * (0.7 + 0.4 * np.sin(np.pi * t))
            up = 1.0 if upper else -1.0
            d0 = np.array([side * 0.3 * outer, up * 0.1, 1.0])
            d0 /= np.linalg.norm(d0)
            curl = np.array([0.0, up * 0.9, -0.4]) * rng.uniform(0.7, 1.2)
            s = np.linspace(0, 1, 4)[:, None]
            path = root + np.array([0, 0, 0.0006]) + length * (s * d0 + s ** 2 * curl * 0.5)
            width = (0.0002 * (1 - s) + 0.00002) * (1.0 if upper else 0.7)
            v = np.concatenate([path - tangent * width, path + tangent * width])  # (8, 3): left edge, right edge
            f = np.array([[0, 4, 1], [1, 4, 5], [1, 5, 2], [2, 5, 6], [2, 6, 3], [3, 6, 7]]) + off
            vs.append(v)
            fs.append(f)
            off += len(v)
    v = np.concatenate(vs)
    col = np.minimum(np.array(HAIR_COLORS[hair_color]) * 0.4, 0.09) + 0.01  # lashes are darker than the hair
    return Part("eyelashes", v, np.concatenate(fs), "hair", vertex_colors=np.tile(col, (len(v), 1)))


# -- torso and garments -----------------------------------------------------------------------------


def _boundary_loop(faces: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Vertex indices of the lowest open boundary loop of a mesh, ordered."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    b = uniq[counts == 1]
    adj: dict[int, list[int]] = {}
    for a, c in b:
        adj.setdefault(int(a), []).append(int(c))
        adj.setdefault(int(c), []).append(int(a))
    loops, seen = [], set()
    for start in adj:
        if start in seen:
            continue
        loop, prev, cur = [start], -1, start
        seen.add(start)
        while True:
            nxt = [n for n in adj[cur] if n != prev and (n not in seen or (n == start and len(loop) > 2))]
            if not nxt or nxt[0] == start:
                break
            prev, cur = cur, nxt[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(np.array(loop))
    return min(loops, key=lambda lp: vertices[lp, 1].mean() - 0.001 * len(lp))


class Torso:
    """The torso surface grown from the neck's boundary loop: column ``m`` starts at loop point ``Q[m]``
    and runs outwards (direction ``d[m]``) and down along a superellipse profile; ``s`` is metres along it."""

    def __init__(self, skin_vertices: np.ndarray, skin_faces: np.ndarray, half_width: float, subdiv: int = 3,
                 depth: float = 0.2) -> None:
        loop = _boundary_loop(skin_faces, skin_vertices)
        q = skin_vertices[loop].astype(np.float64)
        c = q.mean(0)
        ang = np.arctan2(q[:, 0] - c[0], q[:, 2] - c[2])
        if np.sum(np.sin(np.diff(np.unwrap(ang)))) < 0:  # walk with increasing angle
            loop, q, ang = loop[::-1], q[::-1], ang[::-1]
        start = int(np.argmin(np.abs(np.unwrap(ang) - np.pi)))  # start at the back
        loop, q = np.roll(loop, -start), np.roll(q, -start, 0)
        f = np.arange(subdiv)[:, None] / subdiv
        self.loop = loop
        self.Q = (q[:, None] * (1 - f[None]) + np.roll(q, -1, 0)[:, None] * f[None]).reshape(-1, 3)
        self.M = len(self.Q)
        self.loop_col = np.repeat(np.arange(len(q)), subdiv)  # loop vertex each column starts from (or after)
        self.loop_frac = np.tile(f[:, 0], len(q))
        self.centre = c
        self.theta = np.arctan2(self.Q[:, 0] - c[0], self.Q[:, 2] - c[2])  # 0 = front, +: subject's left
        d = np.stack([np.sin(self.theta), np.zeros(self.M), np.cos(self.theta)], 1)
        self.d = d
        A, B = half_width, 0.112
        cz = c[2] - 0.005
        rel = self.Q[:, [0, 2]] - [c[0], cz]
        r_e = 1.0 / np.sqrt((d[:, 0] / A) ** 2 + (d[:, 2] / B) ** 2)
        self.S = np.maximum(r_e - np.linalg.norm(rel, axis=1), 0.015)
        self.bottom = self.Q[:, 1].min() - depth
        self.H = self.Q[:, 1] - self.bottom
        self.slope = 0.55 * np.sin(self.theta) ** 2
        self._u = np.linspace(0, 1, 257)
        prof = self._profile(np.arange(self.M)[:, None], self._u[None])  # (M, 257, 3)
        seg = np.linalg.norm(np.diff(prof, axis=1), axis=-1)
        self._s = np.concatenate([np.zeros((self.M, 1)), np.cumsum(seg, 1)], 1)
        self.length = self._s[:, -1]

    def _interp(self, a: np.ndarray, m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, np.float64) % self.M
        i0 = np.floor(m).astype(int)
        t = m - i0
        i1 = (i0 + 1) % self.M
        if a.ndim == 1:
            return a[i0] * (1 - t) + a[i1] * t
        return a[i0] * (1 - t)[..., None] + a[i1] * t[..., None]

    def _profile(self, m: np.ndarray, u: np.ndarray) -> np.ndarray:
        m, u = np.broadcast_arrays(np.asarray(m, np.float64), np.asarray(u, np.float64))
        Q, S, H, k = self._interp(self.Q, m), self._interp(self.S, m), self._interp(self.H, m), self._interp(self.slope, m)
        th = self._interp(np.unwrap(self.theta), m)
        d = np.stack([np.sin(th), np.zeros_like(th), np.cos(th)], -1)
        phi = u * np.pi / 2
        e = 0.85
        xo = S * np.sin(phi) ** e
        yo = -H * (1 - np.cos(phi) ** e) - k * xo
        return Q + xo[..., None] * d + yo[..., None] * np.array([0.0, 1.0, 0.0])

    def u_of_s(self, m: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Profile parameter at ``s`` metres down column ``m`` (integer columns)."""
        m = np.asarray(m).astype(int) % self.M
        s = np.broadcast_to(s, m.shape)
        out = np.empty(m.shape)
        for i in np.unique(m):
            sel = m == i
            out[sel] = np.interp(s[sel], self._s[i], self._u)
        return out

    def point(self, m: np.ndarray, s: np.ndarray, lift: float = 0.0) -> np.ndarray:
        """Surface point at column ``m`` (fractional ok), ``s`` metres along, lifted ``lift`` along the normal."""
        m, s = np.broadcast_arrays(np.asarray(m, np.float64), np.asarray(s, np.float64))
        mi = np.round(m).astype(int) % self.M
        u = np.clip(self.u_of_s(mi, s), 0, 1)
        p = self._profile(m, u)
        if lift:
            du = 1e-3
            pu = self._profile(m, np.clip(u + du, 0, 1)) - self._profile(m, np.clip(u - du, 0, 1))
            pm = self._profile(m + 0.5, u) - self._profile(m - 0.5, u)
            n = np.cross(pu, pm)
            n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
            out = (p - self.centre) * np.array([1.0, 0.0, 1.0]) + np.array([0.0, 0.3, 0.0]) * (s[..., None] < 0.03)
            n *= np.sign(np.einsum("...i,...i->...", n, out))[..., None] + (np.einsum("...i,...i->...", n, out) == 0)[..., None]
            p = p + lift * n
        return p

    def grid(self, s_top: np.ndarray, rows: int, lift: float = 0.0) -> np.ndarray:
        """Vertices (rows x M, 3) from ``s_top[m]`` to the bottom of every column."""
        frac = np.linspace(0, 1, rows)[:, None]
        s = s_top[None] + frac * (self.length[None] - s_top[None])
        m = np.broadcast_to(np.arange(self.M)[None], s.shape)
        return self.point(m, s, lift).reshape(-1, 3)


def _pattern_texture(look: LookParams, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng([look.seed, 4])
    a = srgb_to_linear(GARMENT_COLORS[look.garment_color])
    b = srgb_to_linear(GARMENT_COLORS[look.pattern_color])
    y, x = np.mgrid[0:size, 0:size] / size
    if look.pattern == "stripes":
        w = ((y * 2) % 1 < rng.uniform(0.25, 0.5)).astype(np.float64)
    elif look.pattern == "checks":
        w = 0.5 * (((x * 2) % 1 < 0.3).astype(float) + ((y * 2) % 1 < 0.3).astype(float))
    elif look.pattern == "dots":
        w = (np.hypot((x * 4) % 1 - 0.5, (y * 4) % 1 - 0.5) < 0.16).astype(float)
    else:
        w = np.zeros_like(x)
    w = ndimage.gaussian_filter(w, 0.7, mode="wrap")
    col = a * (1 - w[..., None]) + b * w[..., None]
    knit = ndimage.gaussian_filter(rng.standard_normal((size, size)), 0.6, mode="wrap")
    col *= (1 + 0.05 * knit / knit.std())[..., None]
    return (np.clip(linear_to_srgb(col), 0, 1) * 255 + 0.5).astype(np.uint8)


def _neckline(g: str, theta: np.ndarray, torso: Torso) -> np.ndarray:
    """Where the garment's edge is, per column: metres down the torso from the neck loop (> 0), or metres up
    the neck above it (< 0: the garment climbs the neck to its root, or to under the jaw for a turtleneck).

    ICT's neck ends low and wide (its open end runs over the trapezius at the sides), so a crew neck has to
    climb the neck to sit at the neck's root: about 4.5 cm above the loop's front at the front, level with its
    back at the back."""
    a = np.abs((theta + np.pi) % (2 * np.pi) - np.pi)  # 0 front, pi back
    front = np.clip(np.cos(theta), 0, None) ** 2
    c = np.cos(theta)
    y_back = torso.Q[:, 1].max()
    y_root = y_back + np.where(c > 0, -0.045 * c, 0.005 * c) - 0.02 * np.sin(theta) ** 2  # the neck's root
    band = np.clip(y_root - torso.Q[:, 1], 0, None)  # climb to it
    vee = np.clip(1 - a / 0.6, 0, None)
    if g == "crew":
        return -band + 0.004
    if g == "vneck":
        return -band * (1 - np.clip(vee * 3, 0, 1)) + 0.085 * vee + 0.004
    if g == "collar":
        v2 = np.clip(1 - a / 0.32, 0, None)
        return -band * (1 - np.clip(v2 * 3, 0, 1)) + 0.05 * v2 + 0.003
    if g == "hoodie":
        return -band - 0.004
    if g == "turtleneck":
        return -np.clip(y_root + 0.045 - torso.Q[:, 1], 0, None)
    if g == "straps":  # front and back panels; bare shoulders down to the armpits at the sides
        side = np.sin(theta) ** 4
        return 0.085 + 0.02 * front + side * np.clip(torso.S + 0.07 - 0.085, 0, None)
    raise ValueError(f"unknown garment {g!r}; garments: {', '.join(GARMENTS)}")


def _band_rows(torso: Torso, skin: Part, edge: np.ndarray, thick: float, rows: int) -> np.ndarray:
    """Rows ((rows + 1) x M, 3) of the garment up the neck: a hem row on the skin, then from ``-edge`` metres above
    the loop (row 1) down to the loop (the last row), ``thick`` outside the skin; where ``edge`` >= 0 every row is
    the garment's edge point."""
    M = torso.M
    up = np.clip(-edge, 0, None)
    caster = RayCaster(skin.vertices, skin.faces)
    d = torso.d
    out = np.empty((rows, M, 3))
    base = torso.point(np.arange(M), np.clip(edge, 0, None), thick)
    loop_r = np.linalg.norm((torso.Q - torso.centre)[:, [0, 2]], axis=1)
    hem = None
    for k in range(rows):
        f = 1 - k / (rows - 1)  # 1 at the top row
        y = torso.Q[:, 1] + f * up
        centre = np.stack([np.full(M, torso.centre[0]), y, np.full(M, torso.centre[2])], 1)
        # the skin's distance from the neck axis along each column's direction (cast inwards from outside)
        hit = caster.cast(centre + d * 0.3, -d)
        r = np.where(hit["primID"] >= 0, 0.3 - hit["tfar"], loop_r)
        ring = centre + (r + thick)[:, None] * d
        out[k] = np.where((up > 0)[:, None], ring if k < rows - 1 else base, base)
        if k == 0:  # the hem: the garment's edge turns in to the skin (no see-through gap under the edge)
            hem = np.where((up > 0)[:, None], centre + (r + 0.0005)[:, None] * d,
                           torso.point(np.arange(M), np.clip(edge, 0, None), 0.0005))
    return np.concatenate([hem[None], out]).reshape(-1, 3)
    return out.reshape(-1, 3)


def torso_parts(skin: Part, look: LookParams, hair_color: str) -> list[Part]:
    """Torso (skin) joined to the neck's open end, and the garment over it (see the module docstring)."""
    torso = Torso(skin.vertices, skin.faces, look.shoulder_width)
    M, rows = torso.M, 44
    # skin colour at the join: the baked texture at the loop's vertices, blending to their mean downwards
    corner = {}
    for fi, f in enumerate(skin.faces):
        for k in range(3):
            corner.setdefault(int(f[k]), (fi, k))
    loop_uv = np.array([skin.face_uv[corner[int(i)][0], corner[int(i)][1]] for i in torso.loop])
    H, W = skin.texture.shape[:2]
    px = np.clip((loop_uv[:, 0] % 1.0) * W, 0, W - 1).astype(int)
    py = np.clip((1 - loop_uv[:, 1] % 1.0) * H, 0, H - 1).astype(int)
    lc = srgb_to_linear(skin.texture[py, px] / 255.0)
    col0 = lc[torso.loop_col] * (1 - torso.loop_frac[:, None]) + lc[(torso.loop_col + 1) % len(lc)] * torso.loop_frac[:, None]
    frac = np.linspace(0, 1, rows)[:, None, None]
    blend = np.clip(frac * 4, 0, 1)
    cols = linear_to_srgb(col0[None] * (1 - blend) + lc.mean(0)[None, None] * blend).reshape(-1, 3)
    v = torso.grid(np.zeros(M), rows)
    v[:M] = torso.Q  # exactly the loop (and points on its edges)
    f = grid_faces(rows, M, wrap_cols=True)
    bottom = v[-M:].mean(0)
    v = np.concatenate([v, bottom[None]])
    cols = np.concatenate([cols, cols[-1:]])
    i = np.arange(M)
    cap = np.stack([np.full(M, len(v) - 1), (rows - 1) * M + (i + 1) % M, (rows - 1) * M + i], 1)
    parts = [Part("torso", v, np.concatenate([f, cap]), "skin", vertex_colors=np.clip(cols, 0, 1).astype(np.float32))]

    g = look.garment
    thick = {"hoodie": 0.010}.get(g, 0.003)
    edge = _neckline(g, torso.theta, torso)
    s_top = np.clip(edge, 0, None)
    brows = 12
    band = _band_rows(torso, skin, edge, thick, brows)
    gv = np.concatenate([band[:-M], torso.grid(s_top, 36, lift=thick)])
    grow = len(gv) // M
    gf = grid_faces(grow, M, wrap_cols=True)
    # pattern UVs: around the body (seamless: a whole number of repeats) and down in metres
    reps = max(1, int(round(np.sum(np.linalg.norm(np.diff(torso.Q, axis=0, append=torso.Q[:1]), axis=1)) * 3 / 0.07)))
    u = np.broadcast_to(np.arange(M + 1)[None] / M * reps, (grow, M + 1))
    vv = (gv[:, 1].reshape(grow, M)) / 0.07
    vv = np.concatenate([vv, vv[:, :1]], 1)
    # UVs per corner: the wrap column's second column gets u = reps (not 0)
    uvgrid = np.stack([u, vv], -1).reshape(-1, 2)
    r_, c_ = np.divmod(gf, M)
    c_fix = c_.copy()
    wrap = (c_ == 0) & (np.max(c_, axis=1, keepdims=True) == M - 1)
    c_fix[wrap] = M
    face_uv = uvgrid[r_ * (M + 1) + c_fix].astype(np.float32)
    tex = _pattern_texture(look)
    gcol = np.array(GARMENT_COLORS[look.garment_color])
    parts.append(Part("garment", gv, gf, "cloth", face_uv=face_uv, texture=tex))
    trims = _trims(g, torso, s_top, thick, gv[M:2 * M], skin)
    if trims is not None:
        tv, tf = trims
        parts.append(Part("garment_trim", tv, tf, "cloth", vertex_colors=np.tile(gcol * 0.92, (len(tv), 1)).astype(np.float32)))
    return parts


def _trims(g: str, torso: Torso, s_top: np.ndarray, thick: float, top: np.ndarray, skin: Part
           ) -> tuple[np.ndarray, np.ndarray] | None:
    """Collar, hood, drawstrings, turtleneck roll or straps: (vertices, faces) or None. ``top``: the garment's edge."""
    M = torso.M
    a = np.abs((torso.theta + np.pi) % (2 * np.pi) - np.pi)
    outward = np.stack([np.sin(torso.theta), np.zeros(M), np.cos(torso.theta)], 1)
    vs, fs = [], []

    def add(v: np.ndarray, f: np.ndarray) -> None:
        fs.append(f + sum(len(x) for x in vs))
        vs.append(np.asarray(v, np.float64))

    if g == "collar":  # a band standing up along the neck, a little off it, open at the front
        keep = np.flatnonzero(a > 0.22)
        order = keep[np.argsort((torso.theta[keep]) % (2 * np.pi))]
        caster = RayCaster(skin.vertices, skin.faces)
        d = torso.d[order]
        fr = np.clip(1 - a[order] / 1.2, 0, 1)  # towards the front the collar points spread out
        rows = []
        for k, h in enumerate((0.0, 0.012, 0.026)):
            y = top[order, 1] + h - 0.008 * fr * (k == 2)
            centre = np.stack([np.full(len(order), torso.centre[0]), y, np.full(len(order), torso.centre[2])], 1)
            hit = caster.cast(centre + d * 0.3, -d)
            r = np.where(hit["primID"] >= 0, 0.3 - hit["tfar"], np.linalg.norm((top[order] - centre)[:, [0, 2]], axis=1))
            p = centre + (r + thick + 0.002 + 0.002 * k + 0.012 * fr * k / 2)[:, None] * d
            rows.append(top[order] if k == 0 else p)
        add(np.concatenate(rows), grid_faces(3, len(order)))
    elif g == "hoodie":  # the hood lying around the back of the neck, and two drawstrings
        back = np.flatnonzero(a > np.pi - 1.5)
        back = back[np.argsort(torso.theta[back] % (2 * np.pi))]
        path = top[back] + outward[back] * 0.03 + [0, 0.012, 0]
        t = np.linspace(0, 1, len(back))
        rad = 0.006 + 0.024 * np.sin(np.pi * t) ** 0.7
        add(*tube(path[::2], rad[::2], sides=12))
        for sgn in (-1, 1):
            i = int(np.argmin(np.abs(torso.theta - sgn * 0.35)))
            p0 = top[i] + outward[i] * 0.004
            path = p0 + np.linspace(0, 1, 6)[:, None] * np.array([0, -0.09, 0.012])
            add(*tube(path, 0.0022, sides=6))
    elif g == "turtleneck":  # a rolled top edge
        ring_out = top + outward * 0.005
        v = np.concatenate([top, ring_out + [0, 0.002, 0], ring_out + [0, -0.012, 0]])
        add(v, grid_faces(3, M, wrap_cols=True))
    elif g == "straps":
        for sgn in (-1, 1):
            th_f, th_b = sgn * 0.62, sgn * (np.pi - 0.62)
            w = np.linspace(0, 1, 28)
            th = th_f + w * (th_b - th_f)
            mf = np.interp(th % (2 * np.pi), np.sort(torso.theta % (2 * np.pi)), np.argsort(torso.theta % (2 * np.pi)),
                           period=2 * np.pi)
            mi = np.round(mf).astype(int) % M
            s_end = s_top[mi]
            s = 0.035 + (s_end + 0.01 - 0.035) * np.abs(2 * w - 1) ** 2.2
            c = torso.point(mi, s, thick + 0.001)
            tng = np.gradient(c, axis=0)
            nrm = torso.point(mi, s, 0.01) - torso.point(mi, s, 0.0)
            side = np.cross(tng, nrm)
            side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-12)
            add(np.concatenate([c - side * 0.006, c + side * 0.006]), grid_faces(2, len(w)))
    else:
        return None
    return np.concatenate(vs).astype(np.float32), np.concatenate(fs).astype(np.int32)


def neck_loop(skin: Part) -> np.ndarray:
    """The open end of the neck (ordered boundary loop points of the skin part), where the torso joins."""
    return skin.vertices[_boundary_loop(skin.faces, skin.vertices)].astype(np.float64)


