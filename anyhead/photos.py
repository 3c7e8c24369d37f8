"""In-the-wild portraits as single-view samples.

Faces are found with the LBP frontal-face cascade that ships with scikit-image; the portrait is
cropped to a square around the face (with room for hair), resized, and the crop is recorded as a
transform that updates the intrinsics. Unknown photo intrinsics default to a 50 mm-equivalent
lens over the full frame; the pose is assumed frontal at the distance implied by the face width.
Background handling: ``keep`` (mask of ones), ``estimate`` (a border-colour model keeps the
region connected to the face) or ``white`` (estimate, then composite on white). Samples are
flagged ``single_view`` and carry no targets or GT points.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from .cameras import CONVENTION, Camera, intrinsics_from_focal_mm, orbit_camera
from .io import InputError
from .render.rigs import LOOK_AT
from .samples import encode_json, encode_view

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
FACE_WIDTH_M = 0.15  # detector box width in metres at the face (about temple to temple)
CROP_SCALE = 2.6  # crop side / face box side: room for hair and chin


def detect_faces(image: np.ndarray) -> list[dict[str, int]]:
    """Face boxes (r, c, width, height), largest first, from scikit-image's LBP cascade."""
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.feature import Cascade

    detector = Cascade(data.lbp_frontal_face_cascade_filename())
    gray = rgb2gray(image[..., :3]) if image.ndim == 3 else image
    side = min(gray.shape)
    boxes = detector.detect_multi_scale(img=gray, scale_factor=1.15, step_ratio=1, min_size=(max(24, side // 12),) * 2,
                                        max_size=(side, side))
    return sorted(boxes, key=lambda b: -b["width"] * b["height"])


def crop_square(image: np.ndarray, cx: float, cy: float, side: float, res: int, fill: int = 255) -> np.ndarray:
    """The square window centred at (cx, cy), padded with ``fill`` outside the image, resized."""
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    canvas = np.full((s, s, 3), fill, np.uint8)
    H, W = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(W, x0 + s), min(H, y0 + s)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1, :3]
    return np.asarray(Image.fromarray(canvas).resize((res, res), Image.BICUBIC))


def estimate_foreground(image: np.ndarray, face: dict[str, int]) -> np.ndarray:
    """Rough person mask: a head-and-shoulders prior around the face box, refined by distance
    from the colours of the top border (assumed background); the face core is always kept."""
    img = image[..., :3].astype(np.float32)
    H, W = img.shape[:2]
    r, c, h, w = face["r"], face["c"], face["height"], face["width"]
    yy, xx = np.mgrid[0:H, 0:W]
    fx, fy = c + w / 2, r + h / 2
    head = ((xx - fx) / (0.95 * w)) ** 2 + ((yy - (fy - 0.15 * h)) / (1.3 * h)) ** 2 < 1
    shoulders = (yy > fy + 0.6 * h) & (np.abs(xx - fx) < 0.8 * w + (yy - fy - 0.6 * h) * 1.2)
    core = ((xx - fx) / (0.55 * w)) ** 2 + ((yy - fy) / (0.75 * h)) ** 2 < 1
    top = img[0][:: max(1, W // 48)]
    dist = np.min(np.linalg.norm(img[..., None, :] - top[None, None], axis=-1), axis=-1)
    mask = ((head | shoulders) & (dist > 25)) | core
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask, iterations=2))
    return ndimage.gaussian_filter(mask.astype(np.float32), 1.0)


def portrait_sample(image: np.ndarray, key: str, res: int = 256, focal_mm: float = 50.0, background: str = "keep",
                    source: str = "") -> dict[str, bytes]:
    """Files of one single-view sample (see :mod:`anyhead.samples`) from a portrait."""
    if background not in ("keep", "estimate", "white"):
        raise ValueError(f"background must be keep, estimate or white, not {background!r}")
    faces = detect_faces(image)
    if not faces:
        raise InputError(source or key, "no face found by the frontal-face detector")
    f = faces[0]
    H, W = image.shape[:2]
    K_full = intrinsics_from_focal_mm(focal_mm, W, H)
    K_full[1, 2] = H / 2.0
    cx, cy = f["c"] + f["width"] / 2, f["r"] + f["height"] / 2 + 0.1 * f["height"]
    side = CROP_SCALE * max(f["width"], f["height"])
    x0, y0 = cx - side / 2, cy - side / 2
    distance = K_full[0, 0] * FACE_WIDTH_M / f["width"]
    cam = Camera(orbit_camera(0.0, 0.0, distance, LOOK_AT), K_full, W, H).crop(round(x0), round(y0), round(side), round(side))
    cam = cam.resize(res, res)
    rgb = crop_square(image, cx, cy, side, res)
    if background == "keep":
        alpha = np.ones((res, res), np.float32)
    else:
        m = estimate_foreground(image, f)
        alpha = crop_square((np.repeat(m[..., None], 3, 2) * 255).astype(np.uint8), cx, cy, side, res, fill=0)[..., 0] / 255.0
        if background == "white":
            rgb = (rgb * alpha[..., None] + 255 * (1 - alpha[..., None])).astype(np.uint8)
    files = encode_view("input_000", rgb, alpha)
    crop = {"x0": round(x0), "y0": round(y0), "size": round(side), "scale": res / round(side), "source_size": [W, H]}
    files["cameras.json"] = encode_json({"convention": CONVENTION, "views": [
        {"name": "input_000", "role": "input", "yaw": 0.0, "pitch": 0.0, **cam.to_dict(), "crop": crop,
         "pose": "assumed_frontal", "intrinsics": f"assumed_{focal_mm:g}mm_equivalent"}]})
    files["meta.json"] = encode_json({"asset_id": key, "identity_id": f"photo-{key}", "source": "photo", "single_view": True,
                                      "face_box": {k: int(v) for k, v in f.items()}, "background": background,
                                      "mask_source": {"keep": "none", "estimate": "head_shoulder_prior_and_top_border_colour",
                                                      "white": "head_shoulder_prior_and_top_border_colour"}[background],
                                      "provenance": {"source": source or key}, "convention": CONVENTION})
    return files


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as e:
        raise InputError(path, "image not found") from e
    except Exception as e:  # PIL raises several types for bad files
        raise InputError(path, f"unreadable image: {e}") from e


def photo_sources(cfg: dict[str, Any]) -> list[tuple[str, Any]]:
    """(key, loader) pairs for the configured photos: the built-in astronaut and image folders."""
    out: list[tuple[str, Any]] = []
    if cfg.get("builtin_astronaut", True):
        from skimage import data

        out.append(("photo_astronaut", lambda: data.astronaut()))
    for d in cfg.get("dirs", []):
        folder = Path(d)
        if not folder.is_dir():
            raise InputError(folder, "photo folder not found")
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                out.append((f"photo_{p.stem}", lambda p=p: load_image(p)))
    return out
