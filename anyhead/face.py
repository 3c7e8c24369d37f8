"""Face analysis with mediapipe 0.10.21: face detection, the 478-point face mesh (with iris) and
selfie segmentation. All three models ship inside the mediapipe wheel; nothing is downloaded.

Coordinates are pixels of the analysed image with the repository's convention (pixel centres at
integer + 0.5): mediapipe's normalised x times the width is exactly that.

The graphs are built once per process and guarded by a lock (the web demo calls from threads).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .io import InputError

log = logging.getLogger(__name__)

N_LANDMARKS = 478  # 468 mesh points + 2 x 5 iris points (refine_landmarks)
DETECT_SIDE = 640  # the full-range detector sees the photo at most this big (it runs at 192 px inside)
MESH_CROP_SIDE = 512  # the face mesh gets a square crop around the face of this size
MESH_CROP_SCALE = 1.9  # crop side / detector box side: the mesh model wants some margin around the face
MIN_DETECTION_SCORE = 0.5

_LOCK = threading.Lock()


@dataclass
class FaceBox:
    """A detected face: box corners in pixels (x0, y0, x1, y1) and the detector's score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def size(self) -> float:
        return max(self.x1 - self.x0, self.y1 - self.y0)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(getattr(self, k)), 2) for k in ("x0", "y0", "x1", "y1", "score")}


@dataclass
class FaceLandmarks:
    """The face mesh of the chosen face: (478, 2) pixels and mediapipe's relative depth (478,)."""

    uv: np.ndarray
    z: np.ndarray
    box: FaceBox
    n_faces: int  # faces the detector found (the largest is used)


@lru_cache(maxsize=1)
def _mp() -> Any:
    try:
        import mediapipe as mp
    except ImportError as e:  # pragma: no cover - a broken install
        raise RuntimeError("face analysis needs mediapipe==0.10.21 (pip install -e .)") from e
    return mp


@lru_cache(maxsize=2)
def _detector(model: int) -> Any:
    # model 1: the full-range (up to ~5 m) detector, for group photos and small faces; model 0: the short-range
    # one (selfie distance), which also finds some close-up faces the full-range model misses
    return _mp().solutions.face_detection.FaceDetection(model_selection=model, min_detection_confidence=MIN_DETECTION_SCORE)


@lru_cache(maxsize=1)
def _mesh() -> Any:
    return _mp().solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                              min_detection_confidence=0.3)


@lru_cache(maxsize=1)
def _segmenter() -> Any:
    # model 0: the square "general" model (256 x 256 input), made for head-and-shoulders framing
    return _mp().solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if abs(scale - 1.0) < 1e-6:
        return rgb
    H, W = rgb.shape[:2]
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def detect_faces(rgb: np.ndarray) -> list[FaceBox]:
    """Face boxes in pixels of ``rgb``, largest first (full-range BlazeFace, short-range when it finds none)."""
    H, W = rgb.shape[:2]
    s = min(1.0, DETECT_SIDE / max(H, W))
    small = np.ascontiguousarray(_resize(rgb, s))
    with _LOCK:
        detections = _detector(1).process(small).detections or _detector(0).process(small).detections or []
    boxes = []
    for d in detections:
        b = d.location_data.relative_bounding_box
        boxes.append(FaceBox(b.xmin * W, b.ymin * H, (b.xmin + b.width) * W, (b.ymin + b.height) * H, float(d.score[0])))
    return sorted(boxes, key=lambda b: -b.size)


def _square_crop(rgb: np.ndarray, cx: float, cy: float, side: float, out: int) -> tuple[np.ndarray, np.ndarray]:
    """The square window (centre, side) resampled to out x out (white outside the image), and the
    2x3 affine that maps pixels of the photo to pixels of the crop."""
    import cv2

    s = out / side
    A = np.array([[s, 0.0, out / 2 - s * cx], [0.0, s, out / 2 - s * cy]])
    # cv2 works in pixel-index coordinates (centres at integers): shift by half a pixel either side
    A_cv = A.copy()
    A_cv[:, 2] += A[:, :2].sum(1) * 0.5 - 0.5
    crop = cv2.warpAffine(rgb, A_cv, (out, out), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))
    return crop, A


def face_landmarks(rgb: np.ndarray, source: str) -> FaceLandmarks:
    """Landmarks of the largest face in ``rgb``. Several faces: the largest, with a warning.
    No face: :class:`InputError` naming ``source``."""
    boxes = detect_faces(rgb)
    if not boxes:
        raise InputError(source, "no face found (mediapipe face detector)")
    if len(boxes) > 1:
        log.warning("%s: %d faces found; using the largest (%.0f px)", source, len(boxes), boxes[0].size)
    box = boxes[0]
    cx, cy = box.center
    crop, A = _square_crop(rgb, cx, cy, MESH_CROP_SCALE * box.size, MESH_CROP_SIDE)
    with _LOCK:
        res = _mesh().process(np.ascontiguousarray(crop))
    if not res.multi_face_landmarks:
        raise InputError(source, "a face was detected but the face mesh could not fit it (too small, blurred or occluded?)")
    lm = res.multi_face_landmarks[0].landmark
    pts = np.array([[p.x * MESH_CROP_SIDE, p.y * MESH_CROP_SIDE, p.z * MESH_CROP_SIDE] for p in lm], np.float64)
    if len(pts) != N_LANDMARKS:
        raise RuntimeError(f"mediapipe returned {len(pts)} landmarks, expected {N_LANDMARKS} (is mediapipe 0.10.21 installed?)")
    s = A[0, 0]
    uv = (pts[:, :2] - A[:, 2]) / s  # back to photo pixels
    return FaceLandmarks(uv, pts[:, 2] / s, box, len(boxes))


def segment_person(rgb: np.ndarray) -> np.ndarray:
    """Soft person mask (H, W) in [0, 1] from the selfie segmentation model."""
    with _LOCK:
        res = _segmenter().process(np.ascontiguousarray(rgb))
    return np.clip(np.asarray(res.segmentation_mask, np.float32), 0.0, 1.0)


def mesh_index_groups() -> dict[str, set[int]]:
    """Mediapipe's named landmark groups (lips, eyes, irises, face oval ...) as index sets."""
    c = _mp().solutions.face_mesh_connections
    names = ("FACEMESH_LIPS", "FACEMESH_LEFT_EYE", "FACEMESH_RIGHT_EYE", "FACEMESH_IRISES", "FACEMESH_FACE_OVAL",
             "FACEMESH_LEFT_EYEBROW", "FACEMESH_RIGHT_EYEBROW", "FACEMESH_NOSE")
    return {n.removeprefix("FACEMESH_").lower(): {i for e in getattr(c, n) for i in e} for n in names}
