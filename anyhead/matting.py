"""Alpha matte of head, hair and shoulders from mediapipe's selfie segmentation.

The segmentation model runs at 256 x 256 and is upsampled, so its boundary is smooth and can cut
through hair. It is refined in a band around its 0.5 contour with a local colour model: foreground
and background colours are averaged from the sure regions on either side (Gaussian-weighted, so each
boundary pixel sees its neighbourhood), and a band pixel's alpha is its colour's position on the
line from the local background to the local foreground colour (the compositing equation
``I = a F + (1 - a) B`` solved for ``a``). Where the two colours are too alike to tell apart, the
segmentation's own value is kept. Finally only the connected region that holds the face is kept, so
stray blobs (a second person, a poster) are dropped.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .face import segment_person

BAND_FRAC = 1 / 64  # half-width of the refined band around the segmentation contour, fraction of the image side
SIGMA_FRAC = 1 / 85  # Gaussian radius of the local colour averages, fraction of the image side
MIN_CONTRAST = 0.25  # RGB distance (0..1 units) between local fore- and background for full trust in the colour model


def refine_alpha(rgb: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """Colour-model refinement of a soft mask near its boundary (see module doc); (H, W) float32."""
    import cv2

    side = max(rgb.shape[:2])
    band = max(2, round(BAND_FRAC * side))
    sigma = max(1.0, SIGMA_FRAC * side)
    img = rgb.astype(np.float32) / 255.0
    fg = ndimage.binary_erosion(soft > 0.5, iterations=band)
    bg = ndimage.binary_erosion(soft <= 0.5, iterations=band)

    def local_mean(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigma)
        c = cv2.GaussianBlur(img * m[..., None], (0, 0), sigma)
        return c / np.maximum(w, 1e-6)[..., None], w

    F, wf = local_mean(fg)
    B, wb = local_mean(bg)
    d = F - B
    dd = (d * d).sum(-1)
    a = np.clip(((img - B) * d).sum(-1) / np.maximum(dd, 1e-6), 0.0, 1.0)
    # trust the colour model where the colours differ and both sides were actually seen nearby
    conf = np.clip(np.sqrt(dd) / MIN_CONTRAST, 0, 1) * np.clip(np.minimum(wf, wb) / 0.05, 0, 1)
    alpha = np.where(fg | bg, soft, conf * a + (1 - conf) * soft)
    alpha[fg], alpha[bg] = 1.0, 0.0
    return alpha.astype(np.float32)


def alpha_matte(rgb: np.ndarray, face_uv: np.ndarray | None = None) -> np.ndarray:
    """(H, W) float32 alpha in [0, 1] of the person in a head-and-shoulders crop ``rgb``.

    ``face_uv`` (landmark pixels) picks the region to keep; without it the largest region is kept."""
    import cv2

    H, W = rgb.shape[:2]
    soft = segment_person(rgb)
    if soft.shape != (H, W):
        soft = cv2.resize(soft, (W, H), interpolation=cv2.INTER_LINEAR)
    alpha = refine_alpha(rgb, soft)
    # keep the region that holds the face (or the largest one): a person is one connected blob
    labels, n = ndimage.label(alpha > 0.5)
    if n > 1:
        keep = 0
        if face_uv is not None and len(face_uv):
            ij = np.clip(np.round(face_uv).astype(int), 0, [W - 1, H - 1])
            ids = labels[ij[:, 1], ij[:, 0]]
            ids = ids[ids > 0]
            keep = int(np.bincount(ids).argmax()) if len(ids) else 0
        if keep == 0:
            keep = int(np.bincount(labels.ravel())[1:].argmax()) + 1
        region = ndimage.binary_dilation(labels == keep, iterations=max(2, round(BAND_FRAC * max(H, W))))
        alpha = np.where(region, alpha, 0.0)
    return alpha.astype(np.float32)


def composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 RGB of ``rgb`` over a white background."""
    a = alpha[..., None].astype(np.float32)
    return np.clip(rgb.astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)
