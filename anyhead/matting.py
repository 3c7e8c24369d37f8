"""Alpha matte of head, hair and shoulders from mediapipe's selfie segmentation.

The segmentation model runs at 256 x 256 and its mask is soft and blurry at the boundary; it is
refined with a guided filter (He et al., opencv-contrib's ``ximgproc``) that snaps the transition to
the colour edges of the image (hair strands keep partial alpha), then limited to the connected
region that holds the face so stray blobs (a second person, a poster) are dropped.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .face import segment_person

GUIDE_RADIUS_FRAC = 1 / 64  # guided-filter radius as a fraction of the image side
GUIDE_EPS = 1e-3
SHARPEN = 6.0  # slope applied to the segmentation's soft mask around 0.5


def alpha_matte(rgb: np.ndarray, face_uv: np.ndarray | None = None) -> np.ndarray:
    """(H, W) float32 alpha in [0, 1] of the person in a head-and-shoulders crop ``rgb``.

    ``face_uv`` (landmark pixels) picks the region to keep; without it the largest region is kept."""
    import cv2

    H, W = rgb.shape[:2]
    soft = segment_person(rgb)
    if soft.shape != (H, W):
        soft = cv2.resize(soft, (W, H), interpolation=cv2.INTER_LINEAR)
    r = max(2, round(GUIDE_RADIUS_FRAC * max(H, W)))
    # the model's mask is a wide ramp at this size: steepen it to a near-binary one, then let the guided
    # filter put the soft transition back where the colour edges are
    hard = np.clip((soft - 0.5) * SHARPEN + 0.5, 0.0, 1.0).astype(np.float32)
    refined = cv2.ximgproc.guidedFilter(rgb.astype(np.float32) / 255.0, hard, r, GUIDE_EPS)
    alpha = np.clip(refined, 0.0, 1.0)
    # keep the region that holds the face (or the largest one): a person is one connected blob
    labels, n = ndimage.label(alpha > 0.5)
    if n > 1:
        if face_uv is not None and len(face_uv):
            ij = np.clip(np.round(face_uv).astype(int), 0, [W - 1, H - 1])
            ids = labels[ij[:, 1], ij[:, 0]]
            ids = ids[ids > 0]
            keep = np.bincount(ids).argmax() if len(ids) else 0
        else:
            keep = 0
        if keep == 0:
            keep = np.bincount(labels.ravel())[1:].argmax() + 1
        region = ndimage.binary_dilation(labels == keep, iterations=max(1, r // 2))
        alpha = np.where(region, alpha, 0.0)
    return alpha.astype(np.float32)


def composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 RGB of ``rgb`` over a white background."""
    a = alpha[..., None].astype(np.float32)
    return np.clip(rgb.astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)
