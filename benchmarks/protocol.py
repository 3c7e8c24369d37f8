"""The evaluation protocol (v2) as one typed object: which views go in which bucket, how images are
composited, which pixels a masked metric sees, and which views count for identity similarity.

* **Relative view angle** (the primary buckets): the angle, about the head centre, between the
  input camera's direction and the target camera's direction, i.e. the angle between the vectors
  from the head centre to the two camera centres. Inputs vary by +-40 degrees of yaw, so the
  absolute yaw of a target says little about how far it is from what the method saw; this angle
  does. Buckets ``0-30``, ``30-90``, ``90-150``, ``150-180`` degrees, each closed on its upper edge
  (30 degrees falls in ``0-30``).
* **Absolute yaw** (a second view of the same numbers): ``front <=30``, ``side 30-120``,
  ``back >=120`` degrees of wrapped |yaw| (the v1 buckets; ``anyhead.card`` keeps a plain copy for
  the dataset card, since ``anyhead`` never imports ``benchmarks``).
* **Compositing**: predictions are rendered on white; ground-truth renders are composited on white
  with their own (soft) mask: ``rgb * m + (1 - m)``.
* **Masks**: a pixel is foreground where the mask is > 0.5. Masked metrics use the union of the GT
  mask and the predicted alpha (:meth:`EvaluationProtocol.eval_region`), so a prediction that
  spills outside the head is penalised, not ignored.
* **Identity (CSIM)**: only views within 90 degrees of the input count; views further away show
  the back or the side of the head, where a face detector and a face embedding say nothing.

Cameras are OpenCV world-to-camera 4x4 matrices in the head frame (see ``anyhead.cameras``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

from anyhead.cameras import camera_center

ArrayT = TypeVar("ArrayT")

ANGLE_EDGES_DEG: tuple[float, ...] = (0.0, 30.0, 90.0, 150.0, 180.0)
ANGLE_BUCKETS: tuple[str, ...] = ("0-30", "30-90", "90-150", "150-180")
YAW_BUCKETS: tuple[str, ...] = ("front <=30", "side 30-120", "back >=120")
YAW_FRONT_MAX_DEG = 30.0
YAW_BACK_MIN_DEG = 120.0


def relative_angle_deg(input_w2c: np.ndarray, target_w2c: np.ndarray,
                       center: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray | float:
    """Angle in degrees (0..180) about ``center`` between the input camera and each target camera.

    Args:
        input_w2c: (4, 4) world-to-camera of the input view (OpenCV).
        target_w2c: (4, 4) or (V, 4, 4) world-to-camera of the targets.
        center: the head centre in world coordinates (the head frame's origin).
    Returns:
        a float for one target, else (V,) float64.
    """
    c = np.asarray(center, dtype=np.float64)
    a = camera_center(np.asarray(input_w2c, dtype=np.float64)) - c
    b = camera_center(np.asarray(target_w2c, dtype=np.float64)) - c
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    # atan2 of |a x b| and a . b: accurate at 0 and 180 degrees, where arccos of the dot product is not
    ang = np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), b @ a))
    return float(ang) if np.ndim(ang) == 0 else ang


def angle_bucket(angle_deg: float, edges: Sequence[float] = ANGLE_EDGES_DEG,
                 names: Sequence[str] = ANGLE_BUCKETS) -> str:
    """The relative-angle bucket of ``angle_deg``; buckets are (lo, hi], the first one [0, 30]."""
    if not 0.0 <= angle_deg <= 180.0 + 1e-9:
        raise ValueError(f"relative angle {angle_deg} is outside [0, 180] degrees")
    for name, hi in zip(names, edges[1:]):
        if angle_deg <= hi + 1e-9:
            return name
    return names[-1]


def wrap_abs_yaw(yaw_deg: float) -> float:
    """|yaw| wrapped into [0, 180] degrees."""
    return abs(((float(yaw_deg) + 180.0) % 360.0) - 180.0)


def yaw_bucket(yaw_deg: float) -> str:
    """The absolute-yaw bucket (v1): front <= 30, back >= 120, side in between (wrapped |yaw|)."""
    a = wrap_abs_yaw(yaw_deg)
    return YAW_BUCKETS[0] if a <= YAW_FRONT_MAX_DEG else YAW_BUCKETS[2] if a >= YAW_BACK_MIN_DEG else YAW_BUCKETS[1]


def yaw_offset_cameras(input_w2c: np.ndarray, offsets_deg: Sequence[float] = (-30.0, -15.0, 0.0, 15.0, 30.0),
                       center: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """(len(offsets), 4, 4) cameras that orbit the input camera (4, 4) about the vertical (+y) axis through
    ``center`` by each offset in degrees (positive towards +x, like ``anyhead.cameras.orbit_camera``'s yaw).
    For portraits without ground truth: render the reconstruction at the input camera and at +-15/30 degrees."""
    w2c = np.asarray(input_w2c, dtype=np.float64)
    c = np.eye(4)
    c[:3, 3] = center
    c_inv = np.eye(4)
    c_inv[:3, 3] = -np.asarray(center, dtype=np.float64)
    out = []
    for deg in offsets_deg:
        t = np.radians(-deg)  # rotating the world by -yaw is moving the camera by +yaw
        R = np.eye(4)
        R[0, 0], R[0, 2], R[2, 0], R[2, 2] = np.cos(t), np.sin(t), -np.sin(t), np.cos(t)
        out.append(w2c @ c @ R @ c_inv)
    return np.stack(out)


@dataclass(frozen=True)
class ViewLabel:
    """Where one target view sits in the protocol."""

    angle_deg: float  # relative to the input camera, about the head centre
    angle_bucket: str
    yaw_deg: float  # absolute, wrapped |yaw|
    yaw_bucket: str
    counts_for_csim: bool


@dataclass(frozen=True)
class EvaluationProtocol:
    """The benchmark's evaluation protocol v2 (see the module docstring); frozen so a result can name it.

    ``card()`` is the protocol's definition as written into every result.
    """

    name: str = "anyhead-protocol-v2"
    angle_edges_deg: tuple[float, ...] = ANGLE_EDGES_DEG
    angle_buckets: tuple[str, ...] = ANGLE_BUCKETS
    yaw_buckets: tuple[str, ...] = YAW_BUCKETS
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mask_threshold: float = 0.5
    csim_max_angle_deg: float = 90.0
    masked_region: str = "union"  # "union" of GT mask and predicted alpha, or "gt" (v1)

    def __post_init__(self) -> None:
        if len(self.angle_buckets) != len(self.angle_edges_deg) - 1:
            raise ValueError("angle_buckets needs one name per interval of angle_edges_deg")
        if list(self.angle_edges_deg) != sorted(self.angle_edges_deg) or self.angle_edges_deg[0] != 0 \
                or self.angle_edges_deg[-1] != 180:
            raise ValueError(f"angle_edges_deg must rise from 0 to 180, got {self.angle_edges_deg}")
        if self.masked_region not in ("union", "gt"):
            raise ValueError(f"masked_region must be 'union' or 'gt', got {self.masked_region!r}")

    def relative_angles(self, input_w2c: np.ndarray, target_w2c: np.ndarray) -> np.ndarray:
        """(V,) angles in degrees of targets (V, 4, 4) from the input (4, 4), about the protocol's centre."""
        return np.atleast_1d(relative_angle_deg(input_w2c, np.asarray(target_w2c).reshape(-1, 4, 4), self.center))

    def angle_bucket(self, angle_deg: float) -> str:
        return angle_bucket(angle_deg, self.angle_edges_deg, self.angle_buckets)

    def yaw_bucket(self, yaw_deg: float) -> str:
        return yaw_bucket(yaw_deg)

    def counts_for_csim(self, angle_deg: float) -> bool:
        """Whether a view this far from the input enters CSIM and the detection rate."""
        return angle_deg <= self.csim_max_angle_deg + 1e-9

    def label_views(self, input_w2c: np.ndarray, target_w2c: np.ndarray,
                    target_yaw_deg: Sequence[float | None] | None = None) -> list[ViewLabel]:
        """Labels for every target view (V, 4, 4). Yaw comes from the camera records where given
        (``target_yaw_deg``), else from the camera centre (``anyhead.cameras.yaw_of_camera``)."""
        w2c = np.asarray(target_w2c, dtype=np.float64).reshape(-1, 4, 4)
        angles = self.relative_angles(input_w2c, w2c)
        out = []
        for i, a in enumerate(angles):
            y = None if target_yaw_deg is None else target_yaw_deg[i]
            if y is None:
                c = camera_center(w2c[i]) - np.asarray(self.center)
                y = float(np.degrees(np.arctan2(c[0], c[2])))
            out.append(ViewLabel(float(a), self.angle_bucket(float(a)), wrap_abs_yaw(y), self.yaw_bucket(y),
                                 self.counts_for_csim(float(a))))
        return out

    def label_sample(self, sample: Any) -> list[ViewLabel]:
        """Labels of a decoded sample's (``anyhead.samples.decode_sample``) target views, in their order,
        relative to its first input view."""
        inp = next(v for v in sample.views if v.role == "input")
        targets = [v for v in sample.views if v.role == "target"]
        if not targets:
            return []
        return self.label_views(inp.camera.w2c, np.stack([v.camera.w2c for v in targets]),
                                [v.yaw for v in targets])

    def composite_gt(self, rgb: ArrayT, mask: ArrayT) -> ArrayT:
        """GT colour composited on the protocol's background with its own soft mask.

        ``rgb`` (..., 3, H, W) with ``mask`` (..., 1, H, W) (torch layout), or (..., H, W, 3) with
        (..., H, W, 1) (numpy layout); values in [0, 1]. Works for numpy arrays and torch tensors."""
        bg = self._background_like(rgb)
        return rgb * mask + (1 - mask) * bg

    def _background_like(self, rgb: Any) -> Any:
        bg = np.asarray(self.background, dtype=np.float32)
        if rgb.shape[-1] != 3:  # channels first
            bg = bg[:, None, None]
        try:
            import torch

            if isinstance(rgb, torch.Tensor):
                return torch.as_tensor(bg, dtype=rgb.dtype, device=rgb.device)
        except ImportError:  # numpy-only callers
            pass
        return bg

    def foreground(self, mask: ArrayT) -> ArrayT:
        """Binary foreground (same type as ``mask``, boolean) at the protocol's threshold."""
        return mask > self.mask_threshold

    def eval_region(self, gt_mask: ArrayT, pred_alpha: ArrayT | None = None) -> ArrayT:
        """The pixels a masked image metric averages over: GT foreground, united with the predicted
        foreground where ``masked_region == "union"`` (so false positives outside the head count)."""
        fg = self.foreground(gt_mask)
        if pred_alpha is None or self.masked_region == "gt":
            return fg
        return fg | self.foreground(pred_alpha)

    def card(self) -> dict[str, Any]:
        """The protocol's definitions for the result files (JSON-serialisable)."""
        e = self.angle_edges_deg
        return {
            "name": self.name,
            "relative_angle": "angle about the head centre between the vectors to the input and the target camera "
                              "centres (OpenCV w2c, head frame), degrees",
            "angle_buckets": {n: f"{'[' if i == 0 else '('}{e[i]:g}, {e[i + 1]:g}]"
                              for i, n in enumerate(self.angle_buckets)},
            "yaw_buckets": {YAW_BUCKETS[0]: f"wrapped |yaw| <= {YAW_FRONT_MAX_DEG:g}",
                            YAW_BUCKETS[1]: f"{YAW_FRONT_MAX_DEG:g} < |yaw| < {YAW_BACK_MIN_DEG:g}",
                            YAW_BUCKETS[2]: f"|yaw| >= {YAW_BACK_MIN_DEG:g}"},
            "center": list(self.center),
            "background": list(self.background),
            "compositing": "predictions rendered on the background; GT rgb * mask + (1 - mask) * background",
            "mask_threshold": self.mask_threshold,
            "masked_region": ("GT mask > t or predicted alpha > t" if self.masked_region == "union" else "GT mask > t"),
            "csim_views": f"relative angle <= {self.csim_max_angle_deg:g} degrees",
        }

    def to_dict(self) -> dict[str, Any]:
        """All fields, for logging the exact protocol object."""
        return asdict(self)


DEFAULT_PROTOCOL = EvaluationProtocol()
