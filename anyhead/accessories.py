"""Accessories placed with the head's landmarks: glasses, hats (cap, beanie), earrings, headphones,
plus an adapter for user meshes (OBJ/GLB/PLY) placed by an anchor spec.

Anchors (:func:`anchors`) are computed per head from the 68 landmarks and the mesh itself (ear
points by extremal search), so accessories fit every identity. Hats and headphone bands are
fitted to the outer envelope of head *and hair* by ray casting, so they sit on the hair.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .assets import Part
from .geometry import RayCaster, cylinder, ellipse, fan, grid_faces, sphere, spherical_dirs, tube
from .ict import ICTModel
from .io import InputError, load_triangle_mesh

if TYPE_CHECKING:
    from .config import AccessorySpec

ACCESSORY_KINDS = ("glasses", "hat", "earrings", "headphones")
FRAME_COLORS = [(0.05, 0.05, 0.05), (0.35, 0.2, 0.1), (0.6, 0.6, 0.62), (0.55, 0.1, 0.1), (0.1, 0.15, 0.35)]
CLOTH_COLORS = [(0.1, 0.1, 0.12), (0.6, 0.1, 0.1), (0.1, 0.25, 0.5), (0.2, 0.35, 0.2), (0.75, 0.7, 0.6), (0.85, 0.5, 0.1)]
METAL_COLORS = [(0.83, 0.69, 0.22), (0.75, 0.75, 0.78), (0.72, 0.45, 0.2)]
CENTRE = np.array([0.0, 0.0, -0.01])


def anchors(model: ICTModel, verts: np.ndarray) -> dict[str, np.ndarray]:
    """Named anchor points (head frame, metres) for one head's vertices."""
    lm = verts[model.landmarks].astype(np.float64)
    skin = np.concatenate([model.region("face"), model.region("head_neck")])
    v = verts[skin].astype(np.float64)
    eye_r, eye_l = lm[36:42].mean(0), lm[42:48].mean(0)  # subject's right (x < 0), left (x > 0)
    out = {"eye_right": eye_r, "eye_left": eye_l, "eye_center": (eye_r + eye_l) / 2, "nose_bridge": lm[27],
           "nose_tip": lm[30], "chin": lm[8], "top_of_head": v[np.argmax(v[:, 1])]}
    band = v[(v[:, 1] > eye_r[1] - 0.035) & (v[:, 1] < eye_r[1] + 0.015) & (v[:, 2] < eye_r[2] - 0.04)]
    for side, sign in (("right", -1.0), ("left", 1.0)):
        s = band[band[:, 0] * sign > 0]
        outer = s[np.argmax(s[:, 0] * sign)]  # the ear's outermost point
        ear = s[np.linalg.norm(s - outer, axis=1) < 0.03]
        ear = ear[np.abs(ear[:, 0]) > np.abs(outer[0]) - 0.012]
        out[f"ear_{side}"] = ear.mean(0)
        out[f"ear_{side}_outer"] = outer
        out[f"earlobe_{side}"] = ear[np.argmin(ear[:, 1])]
        out[f"ear_{side}_top"] = ear[np.argmax(ear[:, 1])]
    return out


def _envelope(parts: list[Part]) -> RayCaster:
    vs, fs, off = [], [], 0
    for p in parts:
        if p.name in ("skin", "hair", "hair_bun"):
            vs.append(p.vertices)
            fs.append(p.faces + off)
            off += len(p.vertices)
    return RayCaster(np.concatenate(vs), np.concatenate(fs))


def glasses(model: ICTModel, verts: np.ndarray, a: dict[str, np.ndarray], rng: np.random.Generator) -> list[Part]:
    face = verts[model.region("face")].astype(np.float64)
    frame_r = float(rng.uniform(0.0012, 0.0022))
    ry = float(rng.uniform(0.014, 0.02))
    rims, lenses, inner, outer = [], [], [], []
    for side in ("right", "left"):
        c = a[f"eye_{side}"].copy()
        rx = min(float(rng.uniform(0.02, 0.026)), abs(c[0]) - 0.009)
        c[1] += 0.002
        near = face[((face[:, 0] - c[0]) / (rx + 0.004)) ** 2 + ((face[:, 1] - c[1]) / (ry + 0.004)) ** 2 < 1.0]
        z = near[:, 2].max() + 0.006 + frame_r
        loop = ellipse(np.array([c[0], c[1], z]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), rx, ry, 48)
        rims.append(tube(loop, frame_r, 8, closed=True))
        lenses.append(fan(loop, loop.mean(0)))
        sign = 1.0 if side == "left" else -1.0
        inner.append(loop[np.argmin(loop[:, 0] * sign)])
        outer.append(loop[np.argmax(loop[:, 0] * sign)])
    z_front = max(inner[0][2], inner[1][2])
    bridge_y = a["nose_bridge"][1]
    nose = face[(np.abs(face[:, 0]) < 0.006) & (np.abs(face[:, 1] - bridge_y) < 0.006)]
    z_bridge = max(z_front, nose[:, 2].max() + 0.004 + frame_r)
    bridge = np.array([inner[0], [inner[0][0] * 0.5, bridge_y + 0.002, z_bridge], [0, bridge_y + 0.003, z_bridge],
                       [inner[1][0] * 0.5, bridge_y + 0.002, z_bridge], inner[1]])
    parts_v = [rims[0], rims[1], tube(bridge, frame_r, 8)]
    skin = verts[np.concatenate([model.region("face"), model.region("head_neck")])].astype(np.float64)
    for side, o in zip(("right", "left"), outer):
        ear = a[f"ear_{side}_top"]
        sign = np.sign(o[0])
        y = o[1]
        # keep the temple arm just outside the skin at its height, all the way back to the ear
        zs = np.linspace(o[2], ear[2] - 0.005, 8)
        path = []
        for z in zs:
            band = skin[(np.abs(skin[:, 1] - y) < 0.008) & (np.abs(skin[:, 2] - z) < 0.008) & (skin[:, 0] * sign > 0)]
            x = (np.abs(band[:, 0]).max() if len(band) else abs(o[0])) + 0.004 + frame_r
            path.append([sign * max(x, abs(o[0])), y, z])
        path = np.array(path)
        path[0] = o
        parts_v.append(tube(path, frame_r, 8))
    vs, fs, off = [], [], 0
    for v, f in parts_v:
        vs.append(v)
        fs.append(f + off)
        off += len(v)
    color = np.array(FRAME_COLORS[rng.integers(len(FRAME_COLORS))], np.float32)
    frame_v = np.concatenate(vs)
    out = [Part("glasses_frame", frame_v, np.concatenate(fs), "plastic", vertex_colors=np.tile(color, (len(frame_v), 1)))]
    lv = np.concatenate([lenses[0][0], lenses[1][0]])
    lf = np.concatenate([lenses[0][1], lenses[1][1] + len(lenses[0][0])])
    tint = np.array([0.55, 0.6, 0.62], np.float32) * (0.3 if rng.random() < 0.25 else 1.0)
    out.append(Part("glasses_lens", lv, lf, "glass", vertex_colors=np.tile(tint, (len(lv), 1)), opacity=0.25))
    return out


def hat(model: ICTModel, verts: np.ndarray, a: dict[str, np.ndarray], parts: list[Part], rng: np.random.Generator) -> list[Part]:
    kind = str(rng.choice(["cap", "beanie"]))
    env = _envelope(parts)
    n_az, n_rows = 72, 20
    az = np.linspace(-180, 180, n_az, endpoint=False)
    brow_el = np.degrees(np.arctan2(a["eye_center"][1] + 0.03 - CENTRE[1], 0.1))
    lower = np.interp(np.abs(az), [0, 90, 180], [brow_el, 20.0 if kind == "cap" else 12.0, 0.0 if kind == "cap" else -8.0])
    t = np.linspace(0, 1, n_rows)
    el = 90.0 - t[:, None] * (90.0 - lower[None, :])
    d = spherical_dirs(np.broadcast_to(az, el.shape), el).reshape(-1, 3)
    r = env.outer_surface(CENTRE, d)
    r = np.where(np.isnan(r), np.nanmedian(r), r)
    thick = 0.006 if kind == "cap" else 0.009
    grid = (CENTRE + d * (r + thick)[:, None]).reshape(n_rows, n_az, 3)
    rows = [grid]
    if kind == "beanie":  # folded cuff: a slightly larger band over the bottom rows
        cuff = grid[-6:] * np.array([1.06, 1.0, 1.06])
        rows = [grid[:-6], cuff[:1] + (grid[-6:-5] - cuff[:1]) * 0.0, cuff]
    g = np.concatenate(rows)
    color = np.array(CLOTH_COLORS[rng.integers(len(CLOTH_COLORS))], np.float32)
    v = g.reshape(-1, 3)
    f = grid_faces(len(g), n_az, wrap_cols=True)
    out = [Part(f"hat_{kind}", v, f, "cloth", vertex_colors=np.tile(color, (len(v), 1)))]
    if kind == "cap":  # brim: a curved sheet reaching forward from the front edge
        front = np.abs(az) <= 60
        edge = grid[-1][front]
        order = np.argsort(az[front])
        edge = edge[order]
        out_dir = edge - np.array([0.0, edge[:, 1].mean(), CENTRE[2]])
        out_dir[:, 1] = 0
        out_dir /= np.linalg.norm(out_dir, axis=1, keepdims=True)
        reach = 0.065 * np.cos(np.radians(az[front][order])) ** 1.5
        brim = np.stack([edge, edge + out_dir * reach[:, None] * 0.5 + [0, -0.006, 0],
                         edge + out_dir * reach[:, None] + [0, -0.015, 0]])
        bv = brim.reshape(-1, 3)
        bf = grid_faces(3, len(edge))
        out.append(Part("hat_brim", bv, bf, "cloth", vertex_colors=np.tile(color * 0.9, (len(bv), 1))))
    return out


def earrings(a: dict[str, np.ndarray], rng: np.random.Generator) -> list[Part]:
    color = np.array(METAL_COLORS[rng.integers(len(METAL_COLORS))], np.float32)
    hoop = rng.random() < 0.5
    vs, fs, off = [], [], 0
    for side in ("right", "left"):
        lobe = a[f"earlobe_{side}"]
        sign = np.sign(lobe[0])
        if hoop:
            r = float(rng.uniform(0.006, 0.011))
            c = lobe + np.array([sign * 0.002, -r - 0.002, 0.0])
            v, f = tube(ellipse(c, np.array([0, 1.0, 0]), np.array([0, 0, 1.0]), r, r, 32), 0.0008, 6, closed=True)
        else:
            v, f = sphere(lobe + np.array([sign * 0.0035, -0.002, 0.0]), 0.0025, 2)
        vs.append(v)
        fs.append(f + off)
        off += len(v)
    v = np.concatenate(vs)
    return [Part("earrings", v, np.concatenate(fs), "metal", vertex_colors=np.tile(color, (len(v), 1)))]


def headphones(a: dict[str, np.ndarray], parts: list[Part], rng: np.random.Generator) -> list[Part]:
    env = _envelope(parts)
    color = np.array(FRAME_COLORS[rng.integers(len(FRAME_COLORS))], np.float32)
    cup_r, depth = float(rng.uniform(0.032, 0.04)), 0.022
    vs, fs, off = [], [], 0
    cup_x = []
    for side in ("right", "left"):
        ear = a[f"ear_{side}"]
        sign = np.sign(ear[0])
        x = abs(a[f"ear_{side}_outer"][0]) + 0.004 + depth / 2
        cup_x.append(sign * x)
        v, f = cylinder(np.array([sign * x, ear[1], ear[2]]), np.array([1.0, 0, 0]), cup_r, depth)
        vs.append(v)
        fs.append(f + off)
        off += len(v)
    # band: over the envelope in the coronal plane through the ears
    z = (a["ear_right"][2] + a["ear_left"][2]) / 2
    y0 = (a["ear_right"][1] + a["ear_left"][1]) / 2 + cup_r * 0.8
    ang = np.linspace(-1.0, 1.0, 41) * np.radians(80)
    centre = np.array([0.0, y0 - 0.02, z])
    d = np.stack([np.sin(ang), np.cos(ang), np.zeros_like(ang)], 1)
    r = env.outer_surface(centre, d)
    r = np.where(np.isnan(r), np.nanmax(r), r) + 0.012
    path = centre + d * r[:, None]
    path = np.concatenate([[[cup_x[0], y0, z]], path, [[cup_x[1], y0, z]]])
    v, f = tube(path, 0.005, 10)
    vs.append(v)
    fs.append(f + off)
    v = np.concatenate(vs)
    return [Part("headphones", v, np.concatenate(fs), "plastic", vertex_colors=np.tile(color, (len(v), 1)))]


def build_accessories(kinds: list[str], model: ICTModel, verts: np.ndarray, parts: list[Part],
                      rng: np.random.Generator) -> list[Part]:
    """Accessory parts for ``kinds`` (a subset of :data:`ACCESSORY_KINDS`)."""
    unknown = set(kinds) - set(ACCESSORY_KINDS)
    if unknown:
        raise ValueError(f"unknown accessory kinds {sorted(unknown)}; known: {ACCESSORY_KINDS}")
    a = anchors(model, verts)
    out: list[Part] = []
    for k in kinds:
        if k == "glasses":
            out += glasses(model, verts, a, rng)
        elif k == "hat":
            out += hat(model, verts, a, parts, rng)
        elif k == "earrings":
            out += earrings(a, rng)
        elif k == "headphones":
            out += headphones(a, parts, rng)
    return out


def load_user_accessory(path: str | os.PathLike[str], spec: "AccessorySpec | str | os.PathLike[str]",
                        anchor_points: dict[str, np.ndarray]) -> Part:
    """Load a user's accessory mesh (OBJ/GLB/PLY) and place it at a named anchor.

    ``spec`` is an :class:`anyhead.config.AccessorySpec` or a JSON file holding one: ``anchor`` (a key
    of :func:`anchors`), ``offset`` (metres, head frame), ``scale``, ``rotation_deg`` (xyz Euler),
    ``units`` (m/cm/mm of the file), ``name``, ``material``, ``color`` (when the mesh has no colours).
    """
    from .config import AccessorySpec, ConfigError, parse

    path = Path(path)
    if not isinstance(spec, AccessorySpec):
        spec_path = Path(spec)
        if not spec_path.exists():
            raise InputError(spec_path, "anchor spec not found")
        try:
            spec = parse(AccessorySpec, json.loads(spec_path.read_text()))
        except json.JSONDecodeError as e:
            raise InputError(spec_path, f"anchor spec is not valid JSON: {e}") from e
        except ConfigError as e:
            raise InputError(spec_path, f"anchor spec: {e}") from e
    if not path.exists():
        raise InputError(path, "accessory mesh not found")
    if spec.anchor not in anchor_points:
        raise InputError(path, f"anchor {spec.anchor!r} unknown; choose one of {sorted(anchor_points)}")
    mesh = load_triangle_mesh(path)
    unit = {"m": 1.0, "cm": 0.01, "mm": 0.001}[spec.units]
    from scipy.spatial.transform import Rotation

    R = Rotation.from_euler("xyz", spec.rotation_deg, degrees=True).as_matrix()
    v = (np.asarray(mesh.vertices) * unit * spec.scale) @ R.T
    v = v + anchor_points[spec.anchor] + np.asarray(spec.offset, np.float64)
    colors = None
    try:
        vc = mesh.visual.to_color().vertex_colors
        if vc is not None and len(vc) == len(v):
            colors = np.asarray(vc)[:, :3].astype(np.float32) / 255.0
    except Exception:  # meshes without visuals fall back to the spec colour
        colors = None
    if colors is None:
        colors = np.tile(np.asarray(spec.color, np.float32), (len(v), 1))
    return Part(spec.name or f"user_{path.stem}", v, np.asarray(mesh.faces), spec.material, vertex_colors=colors)
