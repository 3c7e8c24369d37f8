"""The one camera module of the repository.

Convention (recorded as :data:`CONVENTION` in every shard and exported file):

* Cameras are OpenCV: x right, y down, z forward (the camera looks along +z).
* A camera is a world-to-camera 4x4 matrix ``w2c`` plus pixel intrinsics ``K``
  (3x3, principal point in pixels, pixel centres at integer + 0.5).
* The head frame is metric (metres), +y up, +z out of the face, head centre at the origin.

OpenGL / Blender cameras (x right, y up, z backward) are converted only at the edges with
:func:`opengl_to_opencv` / :func:`opencv_to_opengl`.

All functions take and return numpy arrays; :func:`plucker_rays_torch` is the torch twin of
:func:`plucker_rays` used inside models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CONVENTION: dict[str, str] = {
    "camera": "opencv",  # x right, y down, z forward
    "extrinsics": "world_to_camera_4x4",
    "intrinsics": "pixels_K_3x3_pixel_centres_at_half",
    "world": "head_frame_metres_y_up_z_out_of_face_origin_head_centre",
    "units": "metres",
}

# OpenCV <-> OpenGL camera axes differ by a flip of y and z.
_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def _normalize(v: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=axis, keepdims=True), eps)


def look_at(eye: np.ndarray, target: np.ndarray = (0.0, 0.0, 0.0), up: np.ndarray = (0.0, 1.0, 0.0)) -> np.ndarray:
    """World-to-camera 4x4 (OpenCV) of a camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that should appear upwards in the image (image y points
    the other way, since OpenCV's y is down).
    """
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    forward = _normalize(target - eye)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: pick any perpendicular
        right = np.cross(forward, np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.9 else np.array([1.0, 0.0, 0.0]))
    right = _normalize(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ eye
    return w2c


def intrinsics_from_fov(fov_x_deg: float, width: int, height: int, fov_y_deg: float | None = None) -> np.ndarray:
    """Pinhole K from a horizontal field of view (square pixels unless ``fov_y_deg`` is given)."""
    fx = 0.5 * width / np.tan(0.5 * np.radians(fov_x_deg))
    fy = fx if fov_y_deg is None else 0.5 * height / np.tan(0.5 * np.radians(fov_y_deg))
    return np.array([[fx, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])


def intrinsics_from_focal_mm(focal_mm: float, width: int, height: int, sensor_width_mm: float = 36.0) -> np.ndarray:
    """Pinhole K from a 35 mm-equivalent focal length (the way photographers state it)."""
    fx = focal_mm / sensor_width_mm * width
    return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])


def fov_from_intrinsics(K: np.ndarray, width: int) -> float:
    """Horizontal field of view in degrees."""
    return float(np.degrees(2.0 * np.arctan(0.5 * width / K[0, 0])))


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (batched over leading axes)."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def camera_center(w2c: "Any") -> "Any":
    """Camera centre(s) -R^T t in world coordinates of (..., 4, 4) world-to-camera matrices, numpy
    arrays or torch tensors alike (the one implementation for data, models and benchmarks)."""
    R, t = w2c[..., :3, :3], w2c[..., :3, 3:4]
    return -(R.swapaxes(-1, -2) @ t)[..., 0]


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ T[:3, :3].T + T[:3, 3]


def project(pts: np.ndarray, w2c: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points to pixels. Returns ``(uv (N, 2), depth (N,))``; depth is camera z."""
    pc = transform_points(w2c, pts)
    z = pc[:, 2]
    uvw = pc @ np.asarray(K, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[:, :2] / uvw[:, 2:3]
    return uv, z


def unproject(uv: np.ndarray, depth: np.ndarray, w2c: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Inverse of :func:`project`: pixels plus camera-z depth to world points."""
    uv = np.asarray(uv, dtype=np.float64)
    ones = np.ones((uv.shape[0], 1))
    rays_cam = np.concatenate([uv, ones], axis=1) @ np.linalg.inv(K).T
    pc = rays_cam * np.asarray(depth, dtype=np.float64)[:, None]
    return transform_points(invert_rigid(w2c), pc)


def rays_through(w2c: np.ndarray, K: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-space unit rays (origins, directions) through pixel coordinates ``uv`` (N, 2)."""
    uv = np.asarray(uv, dtype=np.float64)
    pix = np.concatenate([uv, np.ones((len(uv), 1))], axis=1)
    c2w = invert_rigid(w2c)
    d_world = _normalize(pix @ (c2w[:3, :3] @ np.linalg.inv(K)).T)
    return np.broadcast_to(c2w[:3, 3], d_world.shape), d_world


def pixel_grid(width: int, height: int, samples_per_side: int = 1) -> np.ndarray:
    """Pixel coordinates (H*s*W*s, 2) of an s x s stratified grid per pixel, row-major.

    OpenCV convention: pixel (0, 0)'s centre is at (0.5, 0.5)."""
    s = int(samples_per_side)
    u, v = np.meshgrid((np.arange(width * s) + 0.5) / s, (np.arange(height * s) + 0.5) / s)
    return np.stack([u.ravel(), v.ravel()], axis=1)


def pixel_rays(w2c: np.ndarray, K: np.ndarray, width: int, height: int, samples_per_side: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through a pixel grid (see :func:`pixel_grid`); directions are unit length.

    With ``samples_per_side = s`` each pixel gets an s x s stratified grid of sub-pixel rays
    (supersampling); rays come out in (H*s, W*s) row-major order.
    """
    return rays_through(w2c, K, pixel_grid(width, height, samples_per_side))


def plucker_rays(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Plücker coordinates ``(d, o x d)`` (..., 6) of rays; d is normalised first.

    The moment ``o x d`` does not depend on which point of the line is used as ``o``.
    """
    d = _normalize(np.asarray(directions, dtype=np.float64))
    m = np.cross(np.asarray(origins, dtype=np.float64), d)
    return np.concatenate([d, m], axis=-1)


def plucker_rays_torch(origins: "Any", directions: "Any") -> "Any":
    """Torch twin of :func:`plucker_rays` (differentiable, any device)."""
    import torch

    d = torch.nn.functional.normalize(directions, dim=-1)
    m = torch.cross(origins.expand_as(d), d, dim=-1)
    return torch.cat([d, m], dim=-1)


def opengl_to_opencv(c2w_gl: np.ndarray) -> np.ndarray:
    """OpenGL/Blender camera-to-world 4x4 to OpenCV world-to-camera 4x4."""
    return invert_rigid(np.asarray(c2w_gl, dtype=np.float64) @ _FLIP_YZ)


def opencv_to_opengl(w2c: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera 4x4 to OpenGL/Blender camera-to-world 4x4."""
    return invert_rigid(np.asarray(w2c, dtype=np.float64)) @ _FLIP_YZ


def orbit_camera(yaw_deg: float, pitch_deg: float, radius: float, target: np.ndarray = (0.0, 0.0, 0.0)) -> np.ndarray:
    """World-to-camera of a camera on a sphere around ``target``.

    Yaw 0 / pitch 0 looks at the face from the front (+z); positive yaw moves the camera
    towards the subject's left (+x); positive pitch moves it up (+y). Yaw 180 sees the back.
    """
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    target = np.asarray(target, dtype=np.float64)
    eye = target + radius * np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    up = (0.0, 1.0, 0.0) if abs(pitch_deg) < 89.9 else (0.0, 0.0, -np.sign(pitch_deg))
    return look_at(eye, target, up)


def roll_camera(w2c: np.ndarray, roll_deg: float) -> np.ndarray:
    """``w2c`` turned about its own optical axis by ``roll_deg`` (positive: the image content turns
    clockwise on screen, i.e. the camera rolls counter-clockwise as seen from behind it)."""
    r = np.radians(roll_deg)
    c, s = np.cos(r), np.sin(r)
    R = np.eye(4)
    R[:2, :2] = [[c, -s], [s, c]]
    return R @ np.asarray(w2c, dtype=np.float64)


def yaw_of_camera(w2c: np.ndarray) -> float:
    """Absolute yaw (degrees, 0..180) of the camera centre around the head's y axis; 0 = front."""
    c = camera_center(w2c)
    return float(np.degrees(np.abs(np.arctan2(c[0], c[2]))))


@dataclass
class Camera:
    """A pinhole camera in the repository's convention (see module docstring)."""

    w2c: np.ndarray
    K: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        self.w2c = np.asarray(self.w2c, dtype=np.float64).reshape(4, 4)
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.width, self.height = int(self.width), int(self.height)

    @property
    def c2w(self) -> np.ndarray:
        return invert_rigid(self.w2c)

    @property
    def center(self) -> np.ndarray:
        return camera_center(self.w2c)

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return project(pts, self.w2c, self.K)

    def rays(self, samples_per_side: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return pixel_rays(self.w2c, self.K, self.width, self.height, samples_per_side)

    def crop(self, x0: float, y0: float, w: int, h: int) -> "Camera":
        """The camera seeing only the pixel window starting at (x0, y0)."""
        K = self.K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        return Camera(self.w2c.copy(), K, w, h)

    def resize(self, width: int, height: int) -> "Camera":
        """The same camera at another resolution (pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return Camera(self.w2c.copy(), K, width, height)

    def to_dict(self) -> dict[str, Any]:
        return {"w2c": self.w2c.tolist(), "K": self.K.tolist(), "width": self.width, "height": self.height, "convention": CONVENTION}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Camera":
        conv = d.get("convention", CONVENTION)
        if conv.get("camera") != "opencv":
            raise ValueError(f"camera convention {conv.get('camera')!r} is not 'opencv'; convert it at the edge first")
        return cls(np.array(d["w2c"]), np.array(d["K"]), d["width"], d["height"])
