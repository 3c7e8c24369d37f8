"""Robust photo loading: any common file in, an 8-bit RGB array of bounded size out.

* EXIF orientation is applied (a phone portrait stored sideways comes out upright).
* Grayscale, palette, CMYK, 16-bit and float images become 8-bit RGB; transparency is composited
  on white (the background every model input uses).
* Memory stays bounded: JPEGs are decoded at a reduced scale (libjpeg's DCT scaling, via PIL's
  ``draft``) and every image is shrunk to at most ``max_side`` pixels before analysis, so a
  24-megapixel photo never exists as a float array.
* The 35 mm-equivalent focal length is read from EXIF when the camera recorded it.

Every failure is an :class:`anyhead.io.InputError` naming the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .io import InputError

# EXIF tags (TIFF/EXIF numbering)
_EXIF_IFD = 0x8769
_FOCAL_35MM = 0xA405  # FocalLengthIn35mmFilm
_FOCAL = 0x920A  # FocalLength (mm, of the real lens)
_ORIENTATION = 0x0112


@dataclass
class Photo:
    """A loaded portrait: upright 8-bit RGB pixels plus what the file said about its camera."""

    rgb: np.ndarray  # (H, W, 3) uint8, upright, at most max_side on its longer side
    source: str  # file name (or a label) for messages
    original_size: tuple[int, int]  # (width, height) of the upright full-resolution image
    focal_35mm: float | None = None  # 35 mm-equivalent focal length from EXIF, if recorded
    exif_orientation: int = 1

    @property
    def scale(self) -> float:
        """Pixels of ``rgb`` per pixel of the full-resolution image."""
        return self.rgb.shape[1] / self.original_size[0]


def to_rgb8(im: Image.Image) -> np.ndarray:
    """Any PIL mode as (H, W, 3) uint8 RGB; alpha composited on white, high bit depths rescaled."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        # 16-bit files use the full 0..65535 range; 32-bit int/float images are scaled by their own maximum
        top = 65535.0 if im.mode.startswith("I;16") or (im.mode == "I" and a.max() > 255) else max(float(a.max()), 1.0)
        if im.mode == "F" and a.max() <= 1.0:
            top = 1.0
        g = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, im).convert("RGB"))
    # CMYK (Adobe-inverted or not, PIL handles the JPEG flavour), YCbCr, L, 1, P, RGB ...
    return np.asarray(im.convert("RGB"))


def array_to_rgb8(a: np.ndarray, source: str = "array") -> np.ndarray:
    """A numpy image of any common layout ((H, W), (H, W, 1/3/4); uint8/uint16/float) as uint8 RGB."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise InputError(source, f"not an image array: shape {a.shape}")
    if a.dtype == np.uint16:
        a = (a.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise InputError(source, f"unsupported pixel type {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:
        al = a[..., 3:4].astype(np.float32) / 255.0
        return (a[..., :3] * al + 255.0 * (1 - al) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def exif_focal_35mm(im: Image.Image) -> float | None:
    """The 35 mm-equivalent focal length recorded by the camera, or None."""
    try:
        exif = im.getexif()
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # corrupt EXIF must not stop loading
        return None
    f35 = sub.get(_FOCAL_35MM) or exif.get(_FOCAL_35MM)
    try:
        f35 = float(f35) if f35 else None
    except (TypeError, ValueError):
        f35 = None
    return f35 if f35 and 8.0 <= f35 <= 1200.0 else None


def load_photo(path: str | os.PathLike[str], max_side: int) -> Photo:
    """Load a portrait upright as 8-bit RGB, shrunk to at most ``max_side`` pixels (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image not found")
    try:
        with Image.open(path) as im:
            orientation = int(im.getexif().get(_ORIENTATION, 1) or 1)
            focal = exif_focal_35mm(im)
            w, h = im.size
            upright = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
            if im.format == "JPEG":
                # decode at 1/2, 1/4 or 1/8 scale directly: the full-size bitmap is never allocated
                im.draft("RGB", (max_side, max_side) if max(w, h) > max_side else (w, h))
            im.load()
            im = ImageOps.exif_transpose(im)
            if max(im.size) > max_side:
                if im.mode not in ("RGB", "RGBA", "L", "LA"):
                    im = Image.fromarray(to_rgb8(im))
                im.thumbnail((max_side, max_side), Image.LANCZOS, reducing_gap=3.0)
            rgb = to_rgb8(im)
    except InputError:
        raise
    except Image.DecompressionBombError as e:
        raise InputError(path, f"image too large to load safely: {e}") from e
    except Exception as e:  # PIL raises several types for bad or truncated files
        raise InputError(path, f"unreadable image: {e}") from e
    return Photo(rgb, str(path), upright, focal, orientation)


def photo_from_array(a: np.ndarray, source: str, max_side: int) -> Photo:
    """A :class:`Photo` from pixels already in memory (no EXIF: focal length unknown)."""
    rgb = array_to_rgb8(a, source)
    H, W = rgb.shape[:2]
    if max(H, W) > max_side:
        im = Image.fromarray(rgb)
        im.thumbnail((max_side, max_side), Image.LANCZOS, reducing_gap=3.0)
        rgb = np.asarray(im)
    return Photo(rgb, source, (W, H))
