"""Camera rigs: the input-portrait distribution and the dense 360-degree target rig.

Both are built with the shared camera module, so everything is OpenCV / head frame.
"""
from __future__ import annotations

import numpy as np

from ..cameras import Camera, intrinsics_from_focal_mm, intrinsics_from_fov, orbit_camera, roll_camera

LOOK_AT = np.array([0.0, -0.02, 0.0])  # a little below the head centre so the chin and neck fit
TARGET_DISTANCE = 0.65
TARGET_FOV = 30.0


def target_rig(n: int, res: int, pitch_range: tuple[float, float]) -> list[tuple[Camera, float, float]]:
    """``n`` cameras around the head: yaw evenly spaced over 360 degrees (front at 0), pitch spread
    over ``pitch_range`` by a golden-ratio sequence so the top and the back are covered.
    Returns (camera, yaw, pitch) triples; the rig is the same for every head."""
    K = intrinsics_from_fov(TARGET_FOV, res, res)
    golden = (np.sqrt(5) - 1) / 2
    out = []
    for i in range(n):
        yaw = (i * 360.0 / n + 180.0) % 360.0 - 180.0
        pitch = pitch_range[0] + ((0.5 + i * golden) % 1.0) * (pitch_range[1] - pitch_range[0])
        out.append((Camera(orbit_camera(yaw, pitch, TARGET_DISTANCE, LOOK_AT), K, res, res), float(yaw), float(pitch)))
    return out


def sample_input_camera(rng: np.random.Generator, res: int, max_yaw: float, pitch_range: tuple[float, float],
                        max_roll: float, focal_mm: tuple[float, float], distance_jitter: float
                        ) -> tuple[Camera, dict[str, float]]:
    """One portrait camera: yaw uniform in +-max_yaw, pitch uniform in ``pitch_range`` (degrees, positive:
    from above), roll about the optical axis uniform in +-max_roll, a 35 mm-equivalent focal length in
    ``focal_mm``, and a distance that keeps the head a similar size in frame, jittered by
    +-``distance_jitter`` (relative). With ``max_roll`` 0 no roll is drawn (the random stream, and so the
    cameras, are those of rigs without roll)."""
    yaw = float(rng.uniform(-max_yaw, max_yaw))
    pitch = float(rng.uniform(*pitch_range))
    f_lo, f_hi = focal_mm
    focal = float(rng.uniform(f_lo, f_hi))
    # the head spans ~0.36 m; keep it at ~80% of the frame at 50 mm-equivalent distance scaling
    distance = 0.36 / 0.8 / (36.0 / focal) * (1.0 + float(rng.uniform(-1, 1)) * distance_jitter)
    roll = float(rng.uniform(-max_roll, max_roll)) if max_roll > 0 else 0.0
    K = intrinsics_from_focal_mm(focal, res, res)
    w2c = orbit_camera(yaw, pitch, distance, LOOK_AT)
    cam = Camera(roll_camera(w2c, roll) if roll else w2c, K, res, res)
    return cam, {"yaw": yaw, "pitch": pitch, "roll": roll, "focal_mm": focal, "distance": distance}
