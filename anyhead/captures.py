"""Calibrated multi-view captures in: nerfstudio ``transforms.json`` and COLMAP text models, per subject.

A capture folder holds one subject: its images, the cameras in one of two formats, and optionally masks,
a point cloud, a mesh and the transform into the head frame:

* **nerfstudio** ``transforms.json``: ``frames`` with ``file_path`` and ``transform_matrix`` (OpenGL
  camera-to-world), intrinsics ``fl_x``/``fl_y``/``cx``/``cy``/``w``/``h`` (or ``camera_angle_x``) at the top
  level or per frame, ``mask_path`` and ``depth_file_path`` per frame (optional), ``ply_file_path``
  (optional point cloud);
* **COLMAP** text model (``cameras.txt``, ``images.txt``, ``points3D.txt`` optional) in the folder or in
  ``sparse/0``; images under ``images/``; masks under ``masks/<image name>.png`` (optional). Camera models
  ``PINHOLE`` and ``SIMPLE_PINHOLE``, and the distortion models with all distortion parameters zero.

Cameras become OpenCV world-to-camera + pixel K (:mod:`anyhead.cameras`). The capture's own frame (any
scale, any orientation) is mapped into the head frame (metres, +y up, +z out of the face, origin at the head
centre) by a similarity transform ``x_head = s R x + t``: given in ``head_transform.json`` (``scale``,
``rotation`` 3x3, ``translation``), or estimated by triangulating the mediapipe face landmarks
(:mod:`anyhead.face`) of the views that see a face, aligning them (Umeyama, with scale) to the template
head's landmarks (:func:`anyhead.headpose.template`) and refining by reprojection (:func:`refine_transform`).
Points: a mesh (``mesh.ply``/``.obj``/``.glb``)
gives ground-truth surface points with normals, depth images (nerfstudio ``depth_file_path``, camera-z,
``depth_unit_scale_factor``) give ground-truth points without normals (both ``gt_points: true``); a point cloud
(COLMAP points3D, nerfstudio ply) gives points without normals, flagged ``gt_points: false`` (SfM points are not
ground truth).

:func:`capture_sample` writes the same sample format as rendered heads (:mod:`anyhead.samples`): the most
frontal view is ``input_000``, the others targets (square crops around the head, resized). The export helpers
(:func:`export_nerfstudio`, :func:`export_colmap`) write our renders in both formats; the round-trip test uses them.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .cameras import CONVENTION, Camera, opencv_to_opengl, opengl_to_opencv
from .io import InputError, write_bytes, write_json
from .samples import encode_json, encode_view, npy_bytes

if TYPE_CHECKING:
    from .config import CapturesConfig

log = logging.getLogger(__name__)

TRANSFORM_FILE = "head_transform.json"
MESH_NAMES = ("mesh.ply", "mesh.obj", "mesh.glb")
ZERO_DISTORTION_MODELS = {"SIMPLE_RADIAL": 1, "RADIAL": 2, "OPENCV": 4, "FULL_OPENCV": 8}  # extra params after f/cx/cy


@dataclass
class CaptureView:
    name: str
    image: Path
    camera: Camera  # OpenCV, in the capture's frame (or the head frame after :func:`normalise`)
    mask: Path | None = None
    depth: Path | None = None  # camera-z depth image (16-bit PNG, ``Capture.depth_scale`` capture units per step)


@dataclass
class Similarity:
    """``x_head = scale * rotation @ x + translation``."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    source: str = "given"

    def apply(self, pts: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(pts, np.float64) @ self.rotation.T + self.translation

    def camera(self, cam: Camera) -> Camera:
        """The same camera expressed in the target frame (a rigid w2c again, distances in the target's units)."""
        R, t = cam.w2c[:3, :3], cam.w2c[:3, 3]
        Rn = R @ self.rotation.T
        w2c = np.eye(4)
        w2c[:3, :3] = Rn
        w2c[:3, 3] = self.scale * t - Rn @ self.translation
        return Camera(w2c, cam.K.copy(), cam.width, cam.height)

    def inverse(self) -> "Similarity":
        Ri = self.rotation.T
        return Similarity(1 / self.scale, Ri, -Ri @ self.translation / self.scale, self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"scale": float(self.scale), "rotation": self.rotation.tolist(), "translation": self.translation.tolist(),
                "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "given") -> "Similarity":
        R = np.asarray(d["rotation"], np.float64).reshape(3, 3)
        if abs(np.linalg.det(R) - 1) > 1e-4 or np.abs(R @ R.T - np.eye(3)).max() > 1e-4 or not float(d["scale"]) > 0:
            raise ValueError("rotation must be a proper rotation matrix and scale positive")
        return cls(float(d["scale"]), R, np.asarray(d["translation"], np.float64).reshape(3), source)


@dataclass
class Capture:
    subject: str
    folder: Path
    fmt: str  # "nerfstudio" | "colmap"
    views: list[CaptureView]
    points: np.ndarray | None = None  # (N, 3) point cloud in the capture frame
    mesh: Any = None  # trimesh.Trimesh in the capture frame
    transform: Similarity | None = None  # given in head_transform.json
    depth_scale: float = 1e-3  # capture units per depth-image step (nerfstudio's depth_unit_scale_factor)
    extra: dict[str, Any] = field(default_factory=dict)


# -- reading -------------------------------------------------------------------------------------

def detect_format(folder: Path) -> str:
    if (folder / "transforms.json").is_file():
        return "nerfstudio"
    if _colmap_dir(folder) is not None:
        return "colmap"
    raise InputError(folder, "no transforms.json and no COLMAP text model (cameras.txt + images.txt, or sparse/0/)")


def _colmap_dir(folder: Path) -> Path | None:
    for d in (folder, folder / "sparse" / "0", folder / "sparse"):
        if (d / "cameras.txt").is_file() and (d / "images.txt").is_file():
            return d
    return None


def read_capture(folder: str | os.PathLike[str]) -> Capture:
    """One subject's capture folder (see the module docstring); an :class:`InputError` naming the file and problem."""
    folder = Path(folder)
    fmt = detect_format(folder)
    cap = read_nerfstudio(folder) if fmt == "nerfstudio" else read_colmap(folder)
    tf = folder / TRANSFORM_FILE
    if tf.is_file():
        try:
            cap.transform = Similarity.from_dict(json.loads(tf.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(tf, f"bad head transform: {e}") from e
    for name in MESH_NAMES:
        if (folder / name).is_file():
            from .io import load_triangle_mesh

            cap.mesh = load_triangle_mesh(folder / name)
            break
    if not cap.views:
        raise InputError(folder, "the capture has no views")
    for v in cap.views:
        if not v.image.is_file():
            raise InputError(v.image, "image listed by the capture not found")
    return cap


def _num(d: dict, key: str, src: Path) -> float:
    try:
        return float(d[key])
    except (KeyError, TypeError, ValueError):
        raise InputError(src, f"missing or bad {key!r}") from None


def read_nerfstudio(folder: Path) -> Capture:
    path = folder / "transforms.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable: {e}") from e
    views = []
    for i, fr in enumerate(meta.get("frames", [])):
        d = {**meta, **fr}
        img = folder / fr.get("file_path", "")
        if "w" in d and "h" in d:
            W, H = int(d["w"]), int(d["h"])
        else:
            with Image.open(img) as im:
                W, H = im.size
        if "fl_x" in d:
            fx = _num(d, "fl_x", path)
            fy = float(d.get("fl_y", fx))
        elif "camera_angle_x" in d:
            fx = fy = 0.5 * W / np.tan(0.5 * _num(d, "camera_angle_x", path))
        else:
            raise InputError(path, f"frame {i}: no intrinsics (fl_x/fl_y/cx/cy or camera_angle_x)")
        for k in ("k1", "k2", "k3", "k4", "p1", "p2"):
            if abs(float(d.get(k, 0.0))) > 1e-12:
                raise InputError(path, f"frame {i}: lens distortion ({k}) is not supported; undistort the images first")
        cx, cy = float(d.get("cx", W / 2)), float(d.get("cy", H / 2))
        try:
            c2w = np.asarray(fr["transform_matrix"], np.float64).reshape(4, 4)
        except (KeyError, ValueError) as e:
            raise InputError(path, f"frame {i}: bad transform_matrix ({e})") from None
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        mask = folder / fr["mask_path"] if fr.get("mask_path") else None
        depth = folder / fr["depth_file_path"] if fr.get("depth_file_path") else None
        views.append(CaptureView(Path(fr.get("file_path", f"frame_{i}")).stem, img, Camera(opengl_to_opencv(c2w), K, W, H),
                                 mask, depth))
    points = None
    if meta.get("ply_file_path"):
        points = _read_ply_points(folder / meta["ply_file_path"])
    return Capture(folder.name, folder, "nerfstudio", views, points,
                   depth_scale=float(meta.get("depth_unit_scale_factor", 1e-3)))


def _read_ply_points(path: Path) -> np.ndarray:
    import trimesh

    try:
        pc = trimesh.load(path, process=False)
        return np.asarray(pc.vertices, np.float64)
    except Exception as e:  # trimesh raises many types
        raise InputError(path, f"cannot read point cloud: {e}") from e


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _qvec_to_R(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _R_to_qvec(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    q = np.array([w, x, y, z])
    return q if w >= 0 else -q


def read_colmap(folder: Path) -> Capture:
    d = _colmap_dir(folder)
    cams = {}
    for ln in _lines(d / "cameras.txt"):
        p = ln.split()
        try:
            cid, model, W, H, params = int(p[0]), p[1], int(p[2]), int(p[3]), [float(x) for x in p[4:]]
        except (IndexError, ValueError):
            raise InputError(d / "cameras.txt", f"bad line {ln!r}") from None
        if model == "PINHOLE":
            fx, fy, cx, cy = params[:4]
        elif model == "SIMPLE_PINHOLE":
            fx, cx, cy = params[:3]
            fy = fx
        elif model in ZERO_DISTORTION_MODELS:
            if model in ("SIMPLE_RADIAL", "RADIAL"):
                fx, cx, cy = params[:3]
                fy, extra = fx, params[3:]
            else:
                fx, fy, cx, cy = params[:4]
                extra = params[4:]
            if any(abs(x) > 1e-12 for x in extra):
                raise InputError(d / "cameras.txt", f"camera {cid}: {model} with lens distortion is not supported; "
                                 "undistort first (colmap image_undistorter)")
        else:
            raise InputError(d / "cameras.txt", f"camera {cid}: model {model} is not supported")
        cams[cid] = (np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]), W, H)
    views = []
    img_dir = folder / "images" if (folder / "images").is_dir() else folder
    # images.txt: two lines per image; the second (2D points) may be empty, which _lines dropped: parse by content
    raw = [ln for ln in (d / "images.txt").read_text().splitlines() if not ln.lstrip().startswith("#")]
    i = 0
    while i < len(raw):
        p = raw[i].split()
        if len(p) < 10:
            i += 1
            continue
        try:
            q = np.array([float(x) for x in p[1:5]])
            t = np.array([float(x) for x in p[5:8]])
            cid, name = int(p[8]), " ".join(p[9:])
        except ValueError:
            raise InputError(d / "images.txt", f"bad line {raw[i]!r}") from None
        if cid not in cams:
            raise InputError(d / "images.txt", f"image {name}: unknown camera {cid}")
        K, W, H = cams[cid]
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = _qvec_to_R(q), t
        mask = folder / "masks" / f"{name}.png"
        views.append(CaptureView(Path(name).stem, img_dir / name, Camera(w2c, K.copy(), W, H),
                                 mask if mask.is_file() else None))
        i += 2
    points = None
    if (d / "points3D.txt").is_file():
        rows = [ln.split() for ln in _lines(d / "points3D.txt")]
        points = np.array([[float(x) for x in r[1:4]] for r in rows], np.float64).reshape(-1, 3)
    return Capture(folder.name, folder, "colmap", views, points)


# -- the head frame ------------------------------------------------------------------------------

def umeyama(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """The similarity minimising ``|s R src + t - dst|`` (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / a.var(0).sum())
    return Similarity(s, R, mu_d - s * R @ mu_s, "landmarks")


def triangulate(uv: np.ndarray, cams: list[Camera]) -> np.ndarray:
    """DLT triangulation of points seen in several views: ``uv`` (V, N, 2) -> (N, 3)."""
    P = [c.K @ c.w2c[:3] for c in cams]
    out = np.zeros((uv.shape[1], 3))
    for n in range(uv.shape[1]):
        A = np.concatenate([np.stack([u * Pv[2] - Pv[0], v * Pv[2] - Pv[1]]) for (u, v), Pv in zip(uv[:, n], P)])
        X = np.linalg.svd(A)[2][-1]
        out[n] = X[:3] / X[3]
    return out


def estimate_transform(cap: Capture, load: Any = None) -> Similarity:
    """Capture frame -> head frame from the face landmarks of the views that see a face: triangulated, then
    aligned to the template head's landmarks with scale. Views whose landmarks reproject badly are left out."""
    from .cameras import project
    from .face import face_landmarks
    from .headpose import template

    mp_idx, _, tpl = template()
    uvs, cams, used = [], [], []
    for v in cap.views:
        rgb = load_rgb(v.image) if load is None else load(v)
        try:
            lm = face_landmarks(rgb, str(v.image))
        except InputError as e:
            log.info("%s: no face landmarks in %s (%s)", cap.subject, v.name, e.problem)
            continue
        uvs.append(lm.uv[mp_idx])
        cams.append(v.camera)
        used.append(v.name)
    if len(cams) < 2:
        raise InputError(cap.folder, f"the face was found in {len(cams)} view(s); at least 2 are needed to place the head "
                         f"(or give {TRANSFORM_FILE})")
    uv = np.stack(uvs)
    keep = np.ones(len(cams), bool)
    for _ in range(2):  # drop views that disagree (a mis-fitted face mesh on a side view)
        X = triangulate(uv[keep], [c for c, k in zip(cams, keep) if k])
        err = np.array([np.sqrt(np.mean(np.sum((project(X, c.w2c, c.K)[0] - u) ** 2, -1))) for c, u in zip(cams, uv)])
        med = np.median(err[keep])
        new = err <= max(3 * med, 2.0)
        if new.sum() < 2 or np.array_equal(new, keep):
            break
        keep = new
    X = triangulate(uv[keep], [c for c, k in zip(cams, keep) if k])
    sel = np.ones(len(tpl), bool)
    for _ in range(3):  # leave out landmarks far off the template (contour points slide with the view)
        sim = umeyama(X[sel], tpl[sel])
        d = np.linalg.norm(sim.apply(X) - tpl, axis=1)
        sel = d <= 2 * np.median(d)
    sim = umeyama(X[sel], tpl[sel])
    sim = refine_transform(sim, uv[keep], [c for c, k in zip(cams, keep) if k])
    sim.source = (f"landmarks ({int(sel.sum())} of {len(tpl)} template points, {int(keep.sum())} views: "
                  f"{', '.join(n for n, k in zip(used, keep) if k)})")
    return sim


def _yaw_in(sim: Similarity, cam: Camera) -> float:
    c = sim.apply(cam.center[None])[0]
    return float(np.degrees(np.arctan2(c[0], c[2])))


def refine_transform(sim: Similarity, uv: np.ndarray, cams: list[Camera], rounds: int = 2) -> Similarity:
    """Refine a capture -> head similarity by reprojection: the template's landmarks for each view's yaw
    (:func:`anyhead.headpose.template_points`: contour landmarks slide with the view), mapped into the capture
    frame and projected, against the detected landmarks ``uv`` (V, N, 2) of ``cams``; robust least squares."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    from .cameras import project
    from .headpose import template_points

    scale_px = np.median([np.ptp(u, axis=0).max() for u in uv]) / 100  # ~1% of the face in pixels
    for _ in range(rounds):
        tpls = [template_points(_yaw_in(sim, c)) for c in cams]

        def residuals(x: np.ndarray, tpls=tpls) -> np.ndarray:
            s_ = np.exp(x[6])
            R = Rotation.from_rotvec(x[:3]).as_matrix()
            out = []
            for c, u, tp in zip(cams, uv, tpls):
                pts = (tp - x[3:6]) @ R / s_  # head -> capture frame: R^T (p - t) / s
                out.append(((project(pts, c.w2c, c.K)[0] - u) / scale_px).ravel())
            return np.concatenate(out)

        x0 = np.concatenate([Rotation.from_matrix(sim.rotation).as_rotvec(), sim.translation, [np.log(sim.scale)]])
        r = least_squares(residuals, x0, loss="soft_l1", f_scale=2.0, x_scale="jac")
        sim = Similarity(float(np.exp(r.x[6])), Rotation.from_rotvec(r.x[:3]).as_matrix(), r.x[3:6].copy(), sim.source)
    return sim


def load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable image: {e}") from e


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            m = np.asarray(im.convert("L"), np.float32) / 255
    except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable mask: {e}") from e
    if m.shape != shape:
        raise InputError(path, f"mask is {m.shape[1]}x{m.shape[0]}, its image {shape[1]}x{shape[0]}")
    return m


@dataclass
class NormalisedCapture:
    capture: Capture
    transform: Similarity
    cameras: list[Camera]  # head frame
    points: np.ndarray  # (N, 6) head frame, normals zero where unknown
    points_source: str  # "mesh" | "depth" | "colmap_points3D" | "nerfstudio_ply" | "none"
    gt_points: bool


def normalise(cap: Capture, transform: Similarity | None, n_points: int, seed: int = 0) -> NormalisedCapture:
    """Cameras and points of ``cap`` in the head frame (``transform``: capture -> head)."""
    if transform is None:
        transform = cap.transform if cap.transform is not None else estimate_transform(cap)
    cams = [transform.camera(v.camera) for v in cap.views]
    if cap.mesh is not None:
        import trimesh

        rng = np.random.default_rng(seed)
        pts, fid = trimesh.sample.sample_surface(cap.mesh, n_points, seed=int(rng.integers(1 << 31)))
        nrm = transform.rotation @ np.asarray(cap.mesh.face_normals[fid]).T
        points, src, gt = np.concatenate([transform.apply(pts), nrm.T], 1), "mesh", True
    elif any(v.depth is not None for v in cap.views):
        pts = depth_points(cap, n_points, seed)
        points, src, gt = np.concatenate([transform.apply(pts), np.zeros_like(pts)], 1), "depth", True
    elif cap.points is not None and len(cap.points):
        pts = transform.apply(cap.points)
        points = np.concatenate([pts, np.zeros_like(pts)], 1)
        src, gt = ("colmap_points3D" if cap.fmt == "colmap" else "nerfstudio_ply"), False
    else:
        points, src, gt = np.zeros((0, 6)), "none", False
    return NormalisedCapture(cap, transform, cams, points.astype(np.float32), src, gt)


def depth_points(cap: Capture, n: int, seed: int) -> np.ndarray:
    """``n`` points (capture frame) unprojected from the views' depth images, where the depth is valid and, when a
    mask is given, fully inside it (silhouette pixels mix foreground and background depths)."""
    from .cameras import pixel_grid, unproject

    pts = []
    for v in cap.views:
        if v.depth is None:
            continue
        try:
            with Image.open(v.depth) as im:
                d = np.asarray(im).astype(np.float64) * cap.depth_scale
        except (OSError, ValueError) as e:
            raise InputError(v.depth, f"unreadable depth image: {e}") from e
        if d.shape != (v.camera.height, v.camera.width):
            raise InputError(v.depth, f"depth is {d.shape[1]}x{d.shape[0]}, its camera {v.camera.width}x{v.camera.height}")
        ok = d > 0
        if v.mask is not None:
            ok &= load_mask(v.mask, d.shape) >= 0.999
        # interior only: a pixel whose neighbours all have depth (no edge-averaged depths)
        ok[1:-1, 1:-1] &= ok[:-2, 1:-1] & ok[2:, 1:-1] & ok[1:-1, :-2] & ok[1:-1, 2:]
        ok[[0, -1]] = False
        ok[:, [0, -1]] = False
        uv = pixel_grid(v.camera.width, v.camera.height)[ok.ravel()]
        pts.append(unproject(uv, d[ok], v.camera.w2c, v.camera.K))
    allp = np.concatenate(pts) if pts else np.zeros((0, 3))
    if len(allp) > n:
        allp = allp[np.sort(np.random.default_rng(seed).choice(len(allp), n, replace=False))]
    return allp


# -- samples -------------------------------------------------------------------------------------

def _square_crop(cam: Camera, res: int) -> tuple[int, int, int, Camera]:
    """The largest square window around the head centre's projection, and the camera of it resized to res."""
    side = min(cam.width, cam.height)
    uv, _ = cam.project(np.zeros((1, 3)))
    x0 = int(np.clip(round(uv[0, 0] - side / 2), 0, cam.width - side))
    y0 = int(np.clip(round(uv[0, 1] - side / 2), 0, cam.height - side))
    return x0, y0, side, cam.crop(x0, y0, side, side).resize(res, res)


def capture_sample(norm: NormalisedCapture, key: str, cfg: "CapturesConfig") -> dict[str, bytes]:
    """The files of one multi-view sample (the format of :mod:`anyhead.samples`) of a normalised capture."""
    import cv2

    from .cameras import yaw_of_camera

    cap = norm.capture
    # the most frontal camera (its centre closest to the +z axis of the head frame) is the input
    order = sorted(range(len(norm.cameras)), key=lambda i: yaw_of_camera(norm.cameras[i].w2c))
    inp, rest = order[0], sorted(order[1:])
    if len(rest) > cfg.max_targets:
        rest = [rest[int(j)] for j in np.linspace(0, len(rest) - 1, cfg.max_targets).round().astype(int)]
    files: dict[str, bytes] = {}
    views = []
    masks_used = set()
    for role, idx in [("input", [inp]), ("target", rest)]:
        for n, i in enumerate(idx):
            v, cam = cap.views[i], norm.cameras[i]
            name = f"input_{n:03d}" if role == "input" else f"view_{n:03d}"
            rgb = load_rgb(v.image)
            if rgb.shape[:2] != (cam.height, cam.width):
                raise InputError(v.image, f"image is {rgb.shape[1]}x{rgb.shape[0]}, its camera {cam.width}x{cam.height}")
            x0, y0, side, out_cam = _square_crop(cam, cfg.res)
            crop = np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side])
            if v.mask is not None and cfg.masks != "none":
                alpha, msrc = load_mask(v.mask, rgb.shape[:2])[y0:y0 + side, x0:x0 + side], "given"
            elif cfg.masks == "estimate":
                from .matting import alpha_matte

                alpha, msrc = alpha_matte(crop), "estimated (mediapipe selfie segmentation + colour model)"
            else:
                alpha, msrc = np.ones(crop.shape[:2], np.float32), "none"
            masks_used.add(msrc)
            if side != cfg.res:
                crop = cv2.resize(crop, (cfg.res, cfg.res), interpolation=cv2.INTER_AREA)
                alpha = cv2.resize(np.ascontiguousarray(alpha, np.float32), (cfg.res, cfg.res), interpolation=cv2.INTER_AREA)
            files.update(encode_view(name, crop, alpha))
            c = out_cam.center
            yaw = float(np.degrees(np.arctan2(c[0], c[2])))
            pitch = float(np.degrees(np.arcsin(np.clip(c[1] / max(np.linalg.norm(c), 1e-9), -1, 1))))
            views.append({"name": name, "role": role, "yaw": yaw, "pitch": pitch, **out_cam.to_dict(),
                          "capture_view": v.name, "crop": [x0, y0, side]})
    files["cameras.json"] = encode_json({"convention": CONVENTION, "views": views})
    files["points.npy"] = npy_bytes(norm.points)
    files["meta.json"] = encode_json({
        "asset_id": key, "identity_id": f"capture-{key}", "source": "capture", "single_view": False,
        "capture_format": cap.fmt, "gt_points": norm.gt_points, "points_source": norm.points_source,
        "point_normals": norm.points_source == "mesh", "head_transform": norm.transform.to_dict(),
        "mask_source": sorted(masks_used), "n_inputs": 1, "n_targets": len(rest),
        "provenance": {"source": str(cap.folder)}, "convention": CONVENTION})
    return files


def capture_tasks(cfg: "CapturesConfig", out: Path) -> list[Any]:
    """One :class:`anyhead.stages.Task` per subject folder; the plan hash covers the settings and every file of
    the folder (name, size, modification time), so an edited capture is rebuilt."""
    from .config import to_dict
    from .stages import Task, plan_hash

    settings = {k: v for k, v in to_dict(cfg).items() if k != "dirs"}
    tasks = []
    for key, folder in capture_folders(cfg):
        files = sorted((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                       for p in folder.rglob("*") if p.is_file())
        tasks.append(Task(key, out / key, plan_hash("capture", settings, files), {"folder": str(folder), "cfg": cfg}))
    return tasks


def build_capture(task: Any) -> dict[str, Any]:
    """Read, normalise and write one subject (a folder like a rendered head's) into ``task.out``."""
    from .stages import write_folder

    cfg, folder = task.payload["cfg"], Path(task.payload["folder"])
    norm = normalise(read_capture(folder), None, cfg.gt_points)
    files = capture_sample(norm, task.id, cfg)
    meta = json.loads(files.pop("meta.json")) | {"plan_hash": task.hash}
    write_folder(task.out, files, meta)
    return {"id": task.id, "identity_id": meta["identity_id"], "source": str(folder), "transform": norm.transform.source,
            "gt_points": norm.gt_points}


def capture_folders(cfg: "CapturesConfig") -> list[tuple[str, Path]]:
    """(key, subject folder) of every capture under ``cfg.dirs`` (each sub-folder with a transforms.json or a
    COLMAP model is one subject; a configured folder that is itself a capture is one too)."""
    from .io import source_key

    out, used = [], set()
    for d in cfg.dirs:
        root = Path(d)
        if not root.is_dir():
            raise InputError(root, "capture folder not found")
        subs = [root] if _is_capture(root) else sorted(p for p in root.iterdir() if p.is_dir() and _is_capture(p))
        for p in subs:
            rel = p.name if p == root else p.relative_to(root).as_posix()
            key = source_key("capture_", rel, strip_suffix=False)
            if key in used:
                key = source_key("capture_", rel, salt=f"{d}:", strip_suffix=False)
            used.add(key)
            out.append((key, p))
    return out


def _is_capture(p: Path) -> bool:
    return (p / "transforms.json").is_file() or _colmap_dir(p) is not None


# -- export (our renders out, for round trips and for other tools) -------------------------------

def export_nerfstudio(folder: str | os.PathLike[str], views: list[tuple[str, np.ndarray, Camera]],
                      points: np.ndarray | None = None, masks: list[np.ndarray] | None = None,
                      depths: list[np.ndarray] | None = None, depth_scale: float = 1e-3) -> Path:
    """Write ``views`` ((name, rgb, OpenCV camera)) as a nerfstudio capture: images/, transforms.json (OpenGL
    camera-to-world, per-frame intrinsics), masks/, depths/ (16-bit PNG, ``depth_scale`` units a step) and a
    points.ply when given."""
    folder = Path(folder)
    frames = []
    for i, (name, rgb, cam) in enumerate(views):
        Image.fromarray(rgb).save(_mk(folder / "images" / f"{name}.png"))
        fr = {"file_path": f"images/{name}.png", "transform_matrix": opencv_to_opengl(cam.w2c).tolist(),
              "fl_x": cam.K[0, 0], "fl_y": cam.K[1, 1], "cx": cam.K[0, 2], "cy": cam.K[1, 2], "w": cam.width, "h": cam.height}
        if masks is not None:
            Image.fromarray((np.clip(masks[i], 0, 1) * 255 + 0.5).astype(np.uint8)).save(_mk(folder / "masks" / f"{name}.png"))
            fr["mask_path"] = f"masks/{name}.png"
        if depths is not None:
            d = np.clip(np.round(np.asarray(depths[i]) / depth_scale), 0, 65535).astype(np.uint16)
            Image.fromarray(d).save(_mk(folder / "depths" / f"{name}.png"))
            fr["depth_file_path"] = f"depths/{name}.png"
        frames.append(fr)
    meta: dict[str, Any] = {"camera_model": "OPENCV", "frames": frames}
    if depths is not None:
        meta["depth_unit_scale_factor"] = depth_scale
    if points is not None:
        import trimesh

        trimesh.PointCloud(np.asarray(points)[:, :3]).export(_mk(folder / "points.ply"))
        meta["ply_file_path"] = "points.ply"
    write_json(folder / "transforms.json", meta)
    return folder


def export_colmap(folder: str | os.PathLike[str], views: list[tuple[str, np.ndarray, Camera]],
                  points: np.ndarray | None = None, masks: list[np.ndarray] | None = None) -> Path:
    """Write ``views`` as a COLMAP text model (sparse/0/{cameras,images,points3D}.txt, one PINHOLE camera per image)
    with images/ and masks/<image name>.png."""
    folder = Path(folder)
    cams, imgs = ["# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"], ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    for i, (name, rgb, cam) in enumerate(views, 1):
        Image.fromarray(rgb).save(_mk(folder / "images" / f"{name}.png"))
        if masks is not None:
            Image.fromarray((np.clip(masks[i - 1], 0, 1) * 255 + 0.5).astype(np.uint8)).save(
                _mk(folder / "masks" / f"{name}.png.png"))
        K = cam.K
        cams.append(f"{i} PINHOLE {cam.width} {cam.height} {K[0, 0]!r} {K[1, 1]!r} {K[0, 2]!r} {K[1, 2]!r}")
        q, t = _R_to_qvec(cam.w2c[:3, :3]), cam.w2c[:3, 3]
        imgs.append(f"{i} {' '.join(repr(float(x)) for x in q)} {' '.join(repr(float(x)) for x in t)} {i} {name}.png")
        imgs.append("")
    d = folder / "sparse" / "0"
    write_bytes(d / "cameras.txt", ("\n".join(cams) + "\n").encode())
    write_bytes(d / "images.txt", ("\n".join(imgs) + "\n").encode())
    if points is not None:
        rows = ["# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]"]
        rows += [f"{i} {x!r} {y!r} {z!r} 128 128 128 0" for i, (x, y, z) in enumerate(np.asarray(points, float)[:, :3], 1)]
        write_bytes(d / "points3D.txt", ("\n".join(rows) + "\n").encode())
    return folder


def write_transform(folder: str | os.PathLike[str], sim: Similarity) -> None:
    """``head_transform.json`` (capture -> head frame) in a capture folder."""
    write_json(Path(folder) / TRANSFORM_FILE, sim.to_dict())


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def random_similarity(rng: np.random.Generator) -> Similarity:
    """A random similarity (scale 0.2-20, any rotation, translation up to 5 units): tests move heads with it."""
    from scipy.spatial.transform import Rotation

    return Similarity(float(np.exp(rng.uniform(np.log(0.2), np.log(20)))), Rotation.random(random_state=rng).as_matrix(),
                      rng.uniform(-5, 5, 3), "random")


__all__ = ["Capture", "CaptureView", "NormalisedCapture", "Similarity", "capture_folders", "capture_sample",
           "estimate_transform", "export_colmap", "export_nerfstudio", "normalise", "random_similarity",
           "read_capture", "triangulate", "umeyama", "write_transform"]
