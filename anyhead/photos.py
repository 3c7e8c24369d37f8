"""In-the-wild portraits as single-view samples.

Pipeline (one portrait): robust loading (:mod:`anyhead.imageio`: EXIF orientation, any pixel format,
bounded size) -> face detection and the 478-point face mesh (:mod:`anyhead.face`, mediapipe) -> head
pose and camera by PnP against the template head, and a virtual camera that frames the head exactly as
the training input rig does (:mod:`anyhead.headpose`) -> the photo warped onto that camera -> an alpha
matte of head, hair and shoulders (:mod:`anyhead.matting`). Background handling: ``keep`` (mask of
ones), ``estimate`` (the matte) or ``white`` (the matte, composited on white). Samples are flagged
``single_view`` and carry no targets or GT points.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .cameras import CONVENTION, Camera
from .config import PhotosConfig
from .face import FaceLandmarks, face_landmarks
from .headpose import (
    FOCAL_PRIOR_MM,
    HeadPose,
    apply_homography,
    average_with_mirror,
    photo_intrinsics,
    rig_camera,
    solve_head_pose,
    turned_weight,
    warp_to_rig,
)
from .imageio import Photo, load_photo, photo_from_array
from .io import InputError, source_key
from .matting import alpha_matte, composite_on_white
from .samples import encode_json, encode_view

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
ANALYSIS_MAX_SIDE = 2048  # photos are shrunk to this before anything else: memory stays ~ this squared
MATTE_RES = 512  # the crop is warped and matted at least this big, then area-downsampled to the sample size
BACKGROUNDS = ("keep", "estimate", "white")


@dataclass
class Portrait:
    """Everything known about one analysed portrait (all pixels are of the crop unless named photo_*)."""

    photo: Photo
    landmarks: FaceLandmarks  # in photo pixels (of photo.rgb)
    pose: HeadPose  # the photo camera (photo pixels)
    camera: Camera  # the rig-framed input camera of the crop
    homography: np.ndarray  # photo pixels -> crop pixels
    rgb: np.ndarray  # (res, res, 3) uint8 crop (background kept)
    alpha: np.ndarray  # (res, res) float32 matte (ones if not estimated)

    @property
    def crop_landmarks(self) -> np.ndarray:
        return apply_homography(self.homography, self.landmarks.uv)

    def on_white(self) -> np.ndarray:
        return composite_on_white(self.rgb, self.alpha)


def as_photo(image: np.ndarray | Photo, source: str) -> Photo:
    return image if isinstance(image, Photo) else photo_from_array(image, source, ANALYSIS_MAX_SIDE)


def analyse_portrait(image: np.ndarray | Photo, res: int, focal_mm: float | None, matte: bool = True,
                     source: str = "portrait") -> Portrait:
    """Landmarks, pose, rig-framed crop and matte of a portrait (see module doc).

    ``focal_mm``: 35 mm-equivalent focal length; None uses EXIF, else :data:`anyhead.headpose.FOCAL_PRIOR_MM`."""
    photo = as_photo(image, source)
    src = photo.source
    H, W = photo.rgb.shape[:2]
    if focal_mm is not None:
        f, fsrc = float(focal_mm), f"given {focal_mm:g} mm-equivalent"
    elif photo.focal_35mm is not None:
        f, fsrc = photo.focal_35mm, f"exif {photo.focal_35mm:g} mm-equivalent"
    else:
        f, fsrc = FOCAL_PRIOR_MM, f"prior {FOCAL_PRIOR_MM:g} mm-equivalent (no EXIF focal length)"
    lm = face_landmarks(photo.rgb, src)
    K = photo_intrinsics(W, H, f)
    pose = solve_head_pose(lm.uv, K, W, H, src, fsrc)
    if turned_weight(pose.yaw_pitch_roll[0]) > 0:  # a turned face: average with the mirrored photo's pose (anyhead.headpose)
        pose = _with_mirror(photo.rgb, pose, K, src, fsrc)
    hi = max(res, MATTE_RES)
    cam_hi, Hm = rig_camera(pose, hi)
    crop = warp_to_rig(photo.rgb, Hm, hi)
    alpha = alpha_matte(crop, apply_homography(Hm, lm.uv)) if matte else np.ones((hi, hi), np.float32)
    if hi != res:
        import cv2

        crop = cv2.resize(crop, (res, res), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (res, res), interpolation=cv2.INTER_AREA)
    S = np.diag([res / hi, res / hi, 1.0])
    return Portrait(photo, lm, pose, cam_hi.resize(res, res), S @ Hm, crop, alpha)


def _with_mirror(rgb: np.ndarray, pose: HeadPose, K: np.ndarray, src: str, fsrc: str) -> HeadPose:
    """``pose`` averaged with the pose solved on the horizontally flipped photo (:func:`anyhead.headpose.average_with_mirror`);
    ``pose`` itself when the flipped photo's face cannot be analysed."""
    H, W = rgb.shape[:2]
    K_m = K.copy()
    K_m[0, 2] = W - K[0, 2]
    try:
        lm_m = face_landmarks(np.ascontiguousarray(rgb[:, ::-1]), f"{src} (mirrored)")
        mirrored = solve_head_pose(lm_m.uv, K_m, W, H, f"{src} (mirrored)", fsrc)
    except InputError as e:
        log.info("%s: pose of the mirrored photo not used: %s", src, e)
        return pose
    return average_with_mirror(pose, mirrored)


def portrait_sample(image: np.ndarray | Photo, key: str, res: int = 256, focal_mm: float | None = None,
                    background: str = "keep", source: str = "") -> dict[str, bytes]:
    """Files of one single-view sample (see :mod:`anyhead.samples`) from a portrait."""
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, not {background!r}")
    p = analyse_portrait(image, res, focal_mm, matte=background != "keep", source=source or key)
    rgb = p.on_white() if background == "white" else p.rgb
    files = encode_view("input_000", rgb, p.alpha)
    pose = p.pose.to_dict()
    yaw, pitch = pose["yaw"], pose["pitch"]
    files["cameras.json"] = encode_json({"convention": CONVENTION, "views": [
        {"name": "input_000", "role": "input", "yaw": yaw, "pitch": pitch, **p.camera.to_dict(),
         "crop": {"homography_photo_to_crop": p.homography.tolist(), "photo_size": [p.photo.rgb.shape[1], p.photo.rgb.shape[0]],
                  "original_size": list(p.photo.original_size)},
         "pose": "pnp_face_mesh", "intrinsics": pose["focal_source"]}]})
    files["meta.json"] = encode_json({"asset_id": key, "identity_id": f"photo-{key}", "source": "photo", "single_view": True,
                                      "face_box": p.landmarks.box.to_dict(), "faces_found": p.landmarks.n_faces,
                                      "head_pose": pose, "background": background,
                                      "mask_source": "none" if background == "keep" else "mediapipe_selfie_segmentation+colour_model",
                                      "landmarks_crop": p.crop_landmarks.round(2).tolist(),
                                      "provenance": {"source": source or p.photo.source}, "convention": CONVENTION})
    return files


def load_image(path: str | os.PathLike[str]) -> Photo:
    """A portrait file, upright and shrunk for analysis (see :func:`anyhead.imageio.load_photo`)."""
    return load_photo(path, ANALYSIS_MAX_SIDE)


KEY_PREFIX = "photo_"
BUILTIN_ASTRONAUT_KEY = "photo_astronaut"


@dataclass(frozen=True)
class PhotoSource:
    """One configured portrait: its sample key, where it comes from (for logs and manifests) and its loader."""

    key: str
    source: str
    load: Callable[[], Photo]


def photo_key(rel_path: str, salt: str = "") -> str:
    """The sample key of a photo at ``rel_path`` in its folder (:func:`anyhead.io.source_key`)."""
    return source_key(KEY_PREFIX, rel_path, salt)


def photo_sources(cfg: PhotosConfig) -> list[PhotoSource]:
    """The configured photos: the built-in astronaut and every image file under ``cfg.dirs`` (recursively,
    hidden files and folders skipped, sorted), each with a unique key from :func:`photo_key`. A missing
    folder is an :class:`InputError`; unreadable files are found later, when loaded, and skipped there."""
    out: list[PhotoSource] = []
    if cfg.builtin_astronaut:
        out.append(PhotoSource(BUILTIN_ASTRONAUT_KEY, "skimage.data.astronaut", astronaut))
    used = {s.key for s in out}
    for d in cfg.dirs:
        folder = Path(d)
        if not folder.is_dir():
            raise InputError(folder, "photo folder not found")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        for p in files:
            rel = p.relative_to(folder).as_posix()
            key = photo_key(rel)
            if key in used:  # the same relative path in two configured folders: the folder joins the hash
                key = photo_key(rel, salt=f"{d}:")
            if key in used:
                raise InputError(p, f"photo key {key} is not unique")  # a hash collision: rename the file
            used.add(key)
            out.append(PhotoSource(key, str(p), lambda p=p: load_image(p)))
    return out


def write_photo_split(cfg: PhotosConfig, folder: str | os.PathLike[str], per_shard: int) -> dict | None:
    """Pack the configured photos (:func:`photo_sources`) as single-view samples into shards in ``folder``;
    return the split manifest's entry (keys, identities, hash, shards, ``skipped`` and each key's ``source``),
    or None when no photos are configured. A photo that cannot be used (unreadable, no face, implausible pose:
    an :class:`InputError`) is skipped with a log line naming the file and the reason, and listed under
    ``skipped``; the rest of the stage goes on."""
    from .shards import split_hash, write_shards

    sources = photo_sources(cfg)
    if not sources:
        return None
    samples = [(src.key, (lambda src=src: portrait_sample(src.load(), src.key, cfg.res, background=cfg.background,
                                                          source=src.source)))
               for src in sources]
    mans = write_shards(samples, folder, "photos", per_shard, skip_errors=(InputError,))
    keys = [k for m in mans for k in m["keys"]]
    source_of = {src.key: src.source for src in sources}
    skipped = [{"key": s["key"], "source": source_of[s["key"]], "reason": s["reason"]}
               for m in mans for s in m.get("skipped", [])]
    for s in skipped:
        log.warning("photos: skipped %s (key %s): %s", s["source"], s["key"], s["reason"])
    log.info("photos: %d samples, %d skipped", len(keys), len(skipped))
    return {"keys": keys, "identities": [f"photo-{k}" for k in keys], "hash": split_hash(keys),
            "shards": [m["shard"] for m in mans], "single_view": True, "skipped": skipped,
            "sources": {k: source_of[k] for k in keys}}


def astronaut() -> Photo:
    """scikit-image's astronaut portrait (Eileen Collins, NASA, public domain)."""
    from skimage import data

    return photo_from_array(data.astronaut(), "skimage.data.astronaut", ANALYSIS_MAX_SIDE)


def astronaut_png(folder: str | os.PathLike[str]) -> Path:
    """The astronaut as a PNG in ``folder`` (for tools that take files); written once."""
    from skimage import data

    path = Path(folder) / "astronaut.png"
    if not path.exists():
        Image.fromarray(data.astronaut()).save(path)
    return path


def draw_overlays(p: Portrait) -> dict[str, np.ndarray]:
    """Pictures for docs and the demo: landmarks on the crop, and the template's reprojected points and
    head axes on it (the pose)."""
    from PIL import ImageDraw

    from .cameras import project
    from .headpose import template, template_points
    from .render.rigs import LOOK_AT

    res = p.rgb.shape[0]
    r = max(1, res // 256)
    lm_img = Image.fromarray(p.rgb.copy())
    d = ImageDraw.Draw(lm_img)
    for u, v in p.crop_landmarks:
        d.ellipse([u - r, v - r, u + r, v + r], fill=(40, 220, 40))
    pose_img = Image.fromarray(p.rgb.copy())
    d = ImageDraw.Draw(pose_img)
    mp_idx, _, _ = template()
    uv_t, _ = project(template_points(p.pose.yaw_pitch_roll[0]), p.camera.w2c, p.camera.K)
    for (u, v), (a, b) in zip(p.crop_landmarks[mp_idx], uv_t):
        d.line([u, v, a, b], fill=(255, 255, 0), width=r)
        d.ellipse([a - r, b - r, a + r, b + r], fill=(255, 40, 40))
    origin = np.asarray(LOOK_AT)
    axes = origin + 0.08 * np.eye(3)
    uv, _ = project(np.vstack([origin, axes]), p.camera.w2c, p.camera.K)
    for k, col in enumerate([(255, 0, 0), (0, 200, 0), (0, 80, 255)]):
        d.line([*uv[0], *uv[k + 1]], fill=col, width=3 * r)
    return {"landmarks": np.asarray(lm_img), "pose": np.asarray(pose_img)}


def main(argv: list[str] | None = None) -> None:
    """``python -m anyhead.photos PHOTO --out DIR``: the crop, matte, landmarks and pose pictures of one portrait
    (``astronaut`` for the built-in example; the README's docs/images/astronaut_*.png come from this)."""
    import argparse
    import json

    from .io import save_png, write_bytes

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("photo", help="an image file, or 'astronaut'")
    ap.add_argument("--out", required=True)
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--focal-mm", type=float, default=None, help="35 mm-equivalent focal length (default: EXIF, else 50)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    name = "astronaut" if args.photo == "astronaut" else Path(args.photo).stem
    p = analyse_portrait(astronaut() if args.photo == "astronaut" else load_image(args.photo), args.res, args.focal_mm,
                         source=args.photo)
    ov = draw_overlays(p)
    out = Path(args.out)
    matte = (np.repeat(p.alpha[..., None], 3, 2) * 255 + 0.5).astype(np.uint8)
    for kind, img in (("crop", p.rgb), ("matte", np.concatenate([matte, p.on_white()], 1)), ("landmarks", ov["landmarks"]),
                      ("pose", ov["pose"])):
        save_png(out / f"{name}_{kind}.png", img)
    write_bytes(out / f"{name}_pose.json", (json.dumps(p.pose.to_dict(), indent=2) + "\n").encode())
    print(json.dumps(p.pose.to_dict()))


if __name__ == "__main__":
    main()
