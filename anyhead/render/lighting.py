"""Lighting of a rendered head: an environment as order-2 spherical harmonics plus 1-3 lights.

A :class:`Lighting` holds everything the shader needs, in the head frame and linear RGB:

* ``sh``: 9 x RGB radiance coefficients of the environment (real SH, bands 0-2, the usual
  ``Y_00 .. Y_22`` order). Diffuse ambient is the irradiance ``sum_l A_l L_lm Y_lm(n) / pi``
  (Ramamoorthi & Hanrahan 2001: ``A_0 = pi, A_1 = 2 pi / 3, A_2 = pi / 4``).
* ``lights``: directional or point lights, each with a colour from its colour temperature
  (:func:`kelvin_to_rgb`) times an intensity. The first light is the key: it alone casts shadows
  (one shadow ray per shaded point) when ``shadows`` is on.

:meth:`Lighting.sample` draws one from a :class:`~anyhead.config.LightingConfig`: an environment
preset (studio, outdoor, indoor; each a few smooth lobes projected onto SH) with a random rotation
about the vertical, a small tilt and a random intensity, plus ``n_lights`` lights of random colour
temperature, all scaled so the brightest irradiance over the head's front half is a drawn exposure
level, and lowered further for very light skin that would clip to white (:meth:`Lighting.protect_highlights`).
One lighting is drawn per head (per rendered sample): all views of a sample share it, so targets stay 3D-consistent.
``to_dict`` / ``from_dict`` round-trip it exactly (the sample's ``meta.json`` records it, so any view can be
re-rendered bit for bit).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..config import LightingConfig

ENV_PRESETS = ("studio", "outdoor", "indoor", "neutral")
# Brightest linear value exposure lets the subject's skin reach when it faces the peak irradiance: inside the renderer's
# tone-curve shoulder (raycast._tonemap rolls off from 0.8 and saturates near 1.1), so very light skin keeps its
# shading instead of clipping to white; dark skin never gets there and keeps the drawn exposure.
SKIN_HIGHLIGHT = 0.9
_XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
_BAND = np.array([1.0] + [2.0 / 3.0] * 3 + [0.25] * 5)  # A_l / pi per coefficient


def sh_basis(n: np.ndarray) -> np.ndarray:
    """Real SH basis up to band 2 at unit directions ``n`` (N, 3) -> (N, 9)."""
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    return np.stack([np.full_like(x, 0.282095), 0.488603 * y, 0.488603 * z, 0.488603 * x, 1.092548 * x * y,
                     1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z, 0.546274 * (x * x - y * y)], 1)


def sh_irradiance(n: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """Diffuse ambient (irradiance / pi, linear RGB) at normals ``n`` from radiance coefficients ``sh`` (9, 3)."""
    return np.clip(sh_basis(n) @ (np.asarray(sh, np.float32) * _BAND[:, None].astype(np.float32)), 0, None)


@lru_cache(maxsize=1)
def _wyman_cmf() -> tuple[np.ndarray, np.ndarray]:
    """CIE 1931 2-degree colour matching functions (Wyman, Sloan & Shirley 2013 multi-lobe fit), 380-780 nm."""
    lam = np.arange(380.0, 781.0, 2.0)

    def g(mu: float, s1: float, s2: float) -> np.ndarray:
        return np.exp(-0.5 * ((lam - mu) / np.where(lam < mu, s1, s2)) ** 2)

    xyz = np.stack([1.056 * g(599.8, 37.9, 31.0) + 0.362 * g(442.0, 16.0, 26.7) - 0.065 * g(501.1, 20.4, 26.2),
                    0.821 * g(568.8, 46.9, 40.5) + 0.286 * g(530.9, 16.3, 31.1),
                    1.217 * g(437.0, 11.8, 36.0) + 0.681 * g(459.0, 26.0, 13.8)], 1)
    return lam, xyz


def _blackbody_rgb(kelvin: float) -> np.ndarray:
    lam, cmf = _wyman_cmf()
    m = lam * 1e-9
    planck = 1.0 / (m ** 5 * (np.exp(1.4388e-2 / (m * kelvin)) - 1.0))
    return _XYZ_TO_SRGB @ (cmf * planck[:, None]).sum(0)


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Linear-RGB colour of a black body at ``kelvin``, white-balanced so 6500 K is neutral, luminance 1.

    Planck's law integrated against the CIE 1931 colour matching functions, to linear sRGB primaries;
    negative components (outside the gamut, below ~1500 K) are clipped. Warm (low K) is red-heavy.
    """
    rgb = np.clip(_blackbody_rgb(float(kelvin)) / _blackbody_rgb(6500.0), 0.0, None)
    return rgb / (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2])


def _fibonacci_dirs(n: int = 2048) -> np.ndarray:
    i = np.arange(n) + 0.5
    y = 1 - 2 * i / n
    r = np.sqrt(1 - y * y)
    phi = np.pi * (3 - np.sqrt(5)) * i
    return np.stack([r * np.cos(phi), y, r * np.sin(phi)], 1)


def _lobe(d: np.ndarray, axis: Any, sharpness: float) -> np.ndarray:
    a = np.asarray(axis, np.float64)
    return np.exp(sharpness * (d @ (a / np.linalg.norm(a)) - 1.0))


def environment_radiance(preset: str, d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Radiance (linear RGB) of an environment preset in unit directions ``d`` (N, 3), before rotation.

    ``studio``: dark grey room, one or two big soft boxes in front and above, a faint floor bounce.
    ``outdoor``: blue sky brightening to the horizon, a bright sky region around the sun, dim ground.
    ``indoor``: warm walls, a ceiling light, a cool window on one side.
    ``neutral``: a plain grey sky over a darker floor (the renderer's fixed default).
    """
    up = d[:, 1:2]
    if preset == "studio":
        rad = np.full((len(d), 3), 0.06) + 0.04 * np.clip(-up, 0, 1)
        for _ in range(int(rng.integers(1, 3))):
            axis = (rng.uniform(-1, 1), rng.uniform(0.1, 0.9), rng.uniform(0.3, 1.0))
            rad += 1.4 * _lobe(d, axis, rng.uniform(4, 10))[:, None] * np.array([1.0, 1.0, 1.0])
    elif preset == "outdoor":
        zen, hor = np.array([0.20, 0.35, 0.75]), np.array([0.70, 0.78, 0.88])
        t = np.clip(up, 0, 1) ** 0.6
        sky = hor * (1 - t) + zen * t
        ground = np.array([0.22, 0.20, 0.15]) * rng.uniform(0.6, 1.4)
        rad = np.where(up > 0, sky, ground) * 1.1
        sun = (rng.uniform(-1, 1), rng.uniform(0.2, 1.0), rng.uniform(-1, 1))
        rad = rad + 1.2 * _lobe(d, sun, 6.0)[:, None] * np.array([1.0, 0.95, 0.85])
    elif preset == "indoor":
        wall = np.array([0.50, 0.42, 0.33]) * rng.uniform(0.5, 0.9)
        rad = np.repeat(wall[None] * 0.6, len(d), 0) + 0.15 * np.clip(-up, 0, 1) * np.array([0.4, 0.3, 0.2])
        rad = rad + 1.0 * _lobe(d, (0, 1, 0), 5.0)[:, None] * np.array([1.0, 0.9, 0.75])
        win = (rng.choice([-1, 1]) * rng.uniform(0.6, 1.0), rng.uniform(0.0, 0.4), rng.uniform(-0.5, 0.8))
        rad = rad + 1.3 * _lobe(d, win, 8.0)[:, None] * np.array([0.8, 0.9, 1.0])
    elif preset == "neutral":
        rad = np.where(up > 0, np.array([0.45, 0.47, 0.52]), np.array([0.18, 0.16, 0.15])) * np.ones((len(d), 1))
    else:
        raise ValueError(f"unknown environment preset {preset!r}; presets: {', '.join(ENV_PRESETS)}")
    return rad


def project_sh(radiance_fn: Any, rotation: np.ndarray | None = None, n: int = 2048) -> np.ndarray:
    """Radiance SH coefficients (9, 3) of an environment ``radiance_fn(directions)``, rotated by ``rotation``
    (3 x 3, environment -> head frame), by quadrature over a Fibonacci sphere."""
    d = _fibonacci_dirs(n)
    rad = radiance_fn(d)
    world = d if rotation is None else d @ rotation.T
    return (sh_basis(world).T @ rad) * (4 * np.pi / n)


def _rotation(yaw_deg: float, tilt_deg: float) -> np.ndarray:
    y, t = np.radians(yaw_deg), np.radians(tilt_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return ry @ rx


@dataclass
class Light:
    """One light. ``vector`` points towards the light (directional) or is its position (point, head frame,
    metres; intensity is the irradiance at the head centre, falling off with the squared distance)."""

    kind: str  # "directional" or "point"
    vector: tuple[float, float, float]
    color: tuple[float, float, float]  # linear RGB, intensity included
    kelvin: float = 6500.0
    intensity: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vector": [float(v) for v in self.vector], "color": [float(v) for v in self.color],
                "kelvin": float(self.kelvin), "intensity": float(self.intensity)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Light":
        return cls(d["kind"], tuple(d["vector"]), tuple(d["color"]), d.get("kelvin", 6500.0), d.get("intensity", 1.0))


def _neutral_sh() -> tuple[float, ...]:
    """The fixed default environment: grey sky over a darker ground (a linear gradient in n_y)."""
    sky, ground = np.array([0.45, 0.47, 0.52]), np.array([0.18, 0.16, 0.15])
    sh = np.zeros((9, 3))
    sh[0] = (sky + ground) / 2 / 0.282095
    sh[1] = (sky - ground) / 2 / (2 / 3 * 0.488603)
    return tuple(float(v) for v in sh.ravel())


def _default_lights() -> tuple[Light, ...]:
    return (Light("directional", (0.4, 0.5, 0.75), (1.6, 1.55, 1.5)), Light("directional", (-0.6, 0.1, 0.5), (0.45, 0.48, 0.55)))


@dataclass
class Lighting:
    """Head-frame lighting shared by all views of one head (see the module docstring)."""

    sh: tuple[float, ...] = field(default_factory=_neutral_sh)  # 27 floats: (9, 3) radiance coefficients
    lights: tuple[Light, ...] = field(default_factory=_default_lights)
    shadows: bool = True
    info: dict[str, Any] = field(default_factory=lambda: {"preset": "neutral"})  # how it was drawn (for the record)

    def sh_matrix(self) -> np.ndarray:
        return np.asarray(self.sh, np.float32).reshape(9, 3)

    @classmethod
    def sample(cls, rng: np.random.Generator, cfg: "LightingConfig | None" = None, shadows: bool = True,
               skin_albedo: float | None = None) -> "Lighting":
        """A random environment preset (rotated, scaled) and 1-3 lights of random colour temperature; with the
        subject's ``skin_albedo``, exposed down if need be so light skin does not clip (:meth:`protect_highlights`)."""
        if cfg is None:
            from ..config import LightingConfig

            cfg = LightingConfig()
        preset = str(rng.choice(cfg.presets))
        yaw, tilt = float(rng.uniform(-180, 180)), float(rng.uniform(-cfg.env_tilt, cfg.env_tilt))
        env_int = float(rng.uniform(*cfg.env_intensity))
        env_seed = int(rng.integers(0, 2**31 - 1))
        sh = project_sh(lambda d: environment_radiance(preset, d, np.random.default_rng(env_seed)), _rotation(yaw, tilt))
        sh *= env_int
        n_lights = int(rng.integers(cfg.n_lights[0], cfg.n_lights[1] + 1))
        lights = []
        for i in range(n_lights):
            if i == 0:  # key: from the front hemisphere, above the eyes
                az, el = rng.uniform(-cfg.key_yaw, cfg.key_yaw), rng.uniform(*cfg.key_elevation)
                inten = rng.uniform(*cfg.key_intensity)
            else:  # fill / rim / back lights from anywhere around, dimmer
                az, el = rng.uniform(-180, 180), rng.uniform(-15, 60)
                inten = rng.uniform(*cfg.key_intensity) * rng.uniform(*cfg.other_intensity)
            a, e = np.radians(az), np.radians(el)
            direction = np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
            kelvin = float(rng.uniform(*cfg.kelvin))
            point = bool(rng.random() < cfg.point_prob)
            vec = direction * rng.uniform(*cfg.point_distance) if point else direction
            color = kelvin_to_rgb(kelvin) * inten
            lights.append(Light("point" if point else "directional", tuple(float(v) for v in vec),
                                tuple(float(v) for v in color), kelvin, float(inten)))
        # exposure: scale everything so the brightest irradiance on the head's front half is a drawn level
        # (a studio key over a bright environment and two more lights would otherwise wash light skin out)
        peak = float(rng.uniform(*cfg.exposure))
        out = cls(tuple(float(v) for v in sh.ravel()), tuple(lights), shadows, {})
        k = peak / out.peak_irradiance()
        out = out.scaled(k)
        out.info = {"preset": preset, "env_yaw": yaw, "env_tilt": tilt, "env_intensity": env_int, "env_seed": env_seed,
                    "exposure": peak, "exposure_scale": k}
        return out.protect_highlights(skin_albedo) if skin_albedo is not None else out

    def peak_irradiance(self, channel: bool = False) -> float:
        """The brightest irradiance over normals of the head's front half, lights unshadowed: of the luminance,
        or with ``channel`` of the brightest colour channel (a warm light's red)."""
        n = _fibonacci_dirs(512)
        n = n[n[:, 2] > -0.3]
        w = np.eye(3) if channel else np.array([[0.2126], [0.7152], [0.0722]])
        e = sh_irradiance(n, self.sh_matrix()) @ w
        for lt in self.lights:
            ell = np.asarray(lt.vector) / np.linalg.norm(lt.vector)
            e = e + np.clip(n @ ell, 0, None)[:, None] * (np.asarray(lt.color) @ w)[None]
        return float(e.max())

    def scaled(self, k: float) -> "Lighting":
        """This lighting with the environment and every light ``k`` times as bright."""
        sh = tuple(float(v * k) for v in self.sh)
        lights = tuple(Light(lt.kind, lt.vector, tuple(float(c * k) for c in lt.color), lt.kelvin, float(lt.intensity * k))
                       for lt in self.lights)
        return Lighting(sh, lights, self.shadows, dict(self.info))

    def protect_highlights(self, skin_albedo: float) -> "Lighting":
        """This lighting, exposed down just enough that skin of linear albedo ``skin_albedo`` (its brightest
        channel) facing the peak irradiance (its brightest channel) stays at or below :data:`SKIN_HIGHLIGHT`;
        unchanged (the same object) when it already does, as it always does for dark skin."""
        k = SKIN_HIGHLIGHT / max(float(skin_albedo) * self.peak_irradiance(channel=True), 1e-9)
        if k >= 1.0:
            return self
        out = self.scaled(k)
        out.info["highlight_scale"] = k
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"sh": [float(v) for v in self.sh], "lights": [lt.to_dict() for lt in self.lights], "shadows": bool(self.shadows),
                "info": dict(self.info)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Lighting":
        """The lighting recorded by :meth:`to_dict` (a sample's ``meta.json``), exactly."""
        return cls(tuple(float(v) for v in d["sh"]), tuple(Light.from_dict(x) for x in d["lights"]), bool(d["shadows"]),
                   dict(d.get("info", {})))
