import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from anyhead.cameras import Camera, intrinsics_from_focal_mm
from anyhead.io import InputError
from anyhead.photos import CROP_SCALE, detect_faces, load_image, portrait_sample
from anyhead.samples import decode_sample


def test_astronaut_face_and_crop_intrinsics():
    img = data.astronaut()
    faces = detect_faces(img)
    assert faces and 60 < faces[0]["width"] < 200
    s = decode_sample(portrait_sample(img, "astro", res=128, focal_mm=50.0))
    cam = s["views"][0]["camera"]
    f = s["meta"]["face_box"]
    crop = json.loads(portrait_sample(img, "astro", 128)["cameras.json"])["views"][0]["crop"]
    # the full-frame camera, cropped and scaled, must project points where the sample camera does
    K = intrinsics_from_focal_mm(50.0, 512, 512)
    full = Camera(cam.w2c, K, 512, 512)
    pts = np.random.default_rng(0).normal(size=(20, 3)) * 0.05
    uv_full, _ = full.project(pts)
    uv_crop, _ = cam.project(pts)
    assert np.allclose((uv_full - [crop["x0"], crop["y0"]]) * crop["scale"], uv_crop, atol=1e-6)
    # the detected face box centre lands in the middle of the crop (10% below, for the chin)
    cx = (f["c"] + f["width"] / 2 - crop["x0"]) * crop["scale"]
    assert abs(cx - 64) < 1.0
    assert crop["size"] == round(CROP_SCALE * f["width"])
    assert s["meta"]["single_view"] and s["points"] is None and s["views"][0]["rgb"].shape == (128, 128, 3)


def test_background_white_masks_the_border():
    s = decode_sample(portrait_sample(data.astronaut(), "astro", res=96, background="white"))
    v = s["views"][0]
    assert v["mask"][0, 0] < 0.1 and v["mask"][48, 48] > 0.9  # corner is background, face centre is kept
    assert (v["rgb"][0, 0] > 240).all()
    assert s["meta"]["mask_source"] != "none"


def test_bad_photos(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="unreadable image"):
        load_image(tmp_path / "x.jpg")
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.png")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(InputError, match="no face"):
        portrait_sample(load_image(tmp_path / "grey.png"), "grey", source=str(tmp_path / "grey.png"))
