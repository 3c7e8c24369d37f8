"""CSIM (benchmarks.metrics.identity) on real faces that ship inside installed packages:

* scikit-image's ``astronaut`` (Eileen Collins, a NASA photograph in the public domain);
* matplotlib's sample ``grace_hopper.jpg`` (Grace Hopper, a U.S. Navy photograph in the public domain).

Two different real people, no download, and licences that let CI use them. A mirrored or warped copy of
one face would be the same identity, so it serves only as the "same person, other image" case.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from anyhead.io import sha256_file
from benchmarks.metrics import identity

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    import skimage.data

    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))

    def small(a: np.ndarray, w: int) -> np.ndarray:  # benchmark-sized images (renders are 256 px)
        return np.asarray(Image.fromarray(a).resize((w, round(w * a.shape[0] / a.shape[1])), Image.LANCZOS))

    ast = skimage.data.astronaut()
    return {"astronaut": small(ast, 256), "astronaut_512": ast, "astronaut_mirror": small(ast[:, ::-1], 256),
            "hopper": small(hopper, 256)}


@pytest.fixture(scope="module")
def dlib_embedder() -> identity.DlibFaceEmbedder:
    return identity.DlibFaceEmbedder()


def test_models_found_without_importing_the_package():
    import sys

    d = identity.face_models_dir()
    assert (d / "dlib_face_recognition_resnet_model_v1.dat").stat().st_size > 20e6
    assert "face_recognition_models" not in sys.modules  # its __init__ needs pkg_resources


def test_csim_self_is_one_other_face_lower(faces, dlib_embedder):
    e = {k: dlib_embedder.embed(v) for k, v in faces.items()}
    assert all(f is not None for f in e.values()), {k: f is None for k, f in e.items()}
    cos = {k: identity.cosine_similarity(e["astronaut"].embedding, f.embedding) for k, f in e.items()}
    assert cos["astronaut"] == pytest.approx(1.0, abs=1e-9)
    # same person in another image (mirrored, other resolution) vs another person
    assert cos["astronaut_mirror"] > 0.97 and cos["astronaut_512"] > 0.97
    assert cos["hopper"] < 0.92 and cos["hopper"] < cos["astronaut_mirror"] - 0.05
    dist = np.linalg.norm(e["astronaut"].embedding - e["hopper"].embedding)
    assert dist > identity.DLIB_MATCH_DISTANCE  # dlib's own rule says: different people
    print(f"\ndlib CSIM: self {cos['astronaut']:.6f}, mirrored {cos['astronaut_mirror']:.4f}, "
          f"512 px {cos['astronaut_512']:.4f}, Grace Hopper {cos['hopper']:.4f} (distance {dist:.3f})")


def test_csim_per_view_detection_rate_and_angles(faces, dlib_embedder):
    blank = np.ones((256, 256, 3), np.float32)  # a back view: no face
    views = [faces["astronaut"], faces["hopper"], blank, torch.from_numpy(faces["astronaut_mirror"] / 255.0).permute(2, 0, 1),
             faces["hopper"]]
    r = identity.csim(faces["astronaut"], views, dlib_embedder, angles_deg=[0, 20, 45, 60, 120])
    assert r.counted == [True, True, True, True, False]
    assert r.detected == [True, True, False, True, False]
    assert r.similarity[0] == pytest.approx(1.0) and math.isnan(r.similarity[2]) and math.isnan(r.similarity[4])
    assert r.detection_rate == pytest.approx(3 / 4) and r.input_detected
    assert r.mean == pytest.approx(np.nanmean(r.similarity))
    assert r.match_rate == pytest.approx(2 / 3)  # the Grace Hopper view is not the same person
    s = r.summary()
    assert s["csim_views"] == 4 and s["csim_faces"] == 3
    no_face = identity.csim(blank, [faces["astronaut"]], dlib_embedder)
    assert not no_face.input_detected and math.isnan(no_face.mean) and no_face.detection_rate == 1.0
    card = identity.metric_card(dlib_embedder)
    json.dumps(card)
    assert "0.3.0" in card["model"] and card["dlib"].startswith("20.") and len(card["weights_sha256"]) == 64
    assert "HOG" in card["detector"]


def test_image_conversion():
    a = np.random.default_rng(0).random((20, 30, 3))
    u8 = identity.to_uint8_rgb(a)
    assert u8.dtype == np.uint8 and u8.shape == (20, 30, 3)
    np.testing.assert_array_equal(identity.to_uint8_rgb(np.moveaxis(a, -1, 0)), u8)
    np.testing.assert_array_equal(identity.to_uint8_rgb(torch.from_numpy(a).permute(2, 0, 1)), u8)
    assert identity.to_uint8_rgb(a[..., 0]).shape == (20, 30, 3)


def test_small_images_are_upsampled():
    assert identity.auto_upsample(np.zeros((256, 256, 3))) == 1
    assert identity.auto_upsample(np.zeros((512, 600, 3))) == 0
    assert identity.auto_upsample(np.zeros((64, 64, 3))) == 3


@pytest.fixture(scope="module")
def tiny_arcface(tmp_path_factory) -> str:
    """A tiny stand-in for an ArcFace ONNX file (same interface: (N, 3, 112, 112) in, (N, 512) out), exported by
    torch's default (dynamo) ONNX exporter, which needs onnxscript (a dev dependency) and works offline."""
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 27 * 27, 512)).eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny_arcface.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 112, 112),), str(path), input_names=["input.1"], output_names=["embedding"],
                      dynamo=True, verbose=False)
    return str(path)


def test_arcface_onnx_path(faces, tiny_arcface):
    emb = identity.load_embedder(tiny_arcface)
    assert isinstance(emb, identity.ArcFaceOnnxEmbedder) and emb.size == 112 and not emb.channels_last
    a, h = emb.embed(faces["astronaut"]), emb.embed(faces["hopper"])
    assert a.embedding.shape == (512,)
    assert identity.cosine_similarity(a.embedding, emb.embed(faces["astronaut"]).embedding) == pytest.approx(1.0, abs=1e-6)
    assert identity.cosine_similarity(a.embedding, h.embedding) < 0.999
    # the crop is aligned: the landmarks land on the ArcFace template
    img = identity.to_uint8_rgb(faces["astronaut"])
    rect, _ = emb._det.detect(img)
    lm = emb.landmarks5(img, rect)
    crop, tf = emb.align(img, lm)
    assert crop.shape == (112, 112, 3)
    err = np.linalg.norm(tf(lm) - identity.ARCFACE_TEMPLATE_112, axis=1)  # least squares: faces differ from the template
    assert err[:3].max() < 4.5 and err.max() < 8.0, err
    r = identity.csim(faces["astronaut"], [faces["astronaut"], faces["hopper"]], emb)
    assert r.similarity[0] == pytest.approx(1.0, abs=1e-6) and math.isnan(r.match_rate)
    card = identity.metric_card(emb)
    assert card["weights_sha256"] == sha256_file(tiny_arcface) and "tiny_arcface.onnx" in card["model"]
    with pytest.raises(FileNotFoundError):
        identity.load_embedder("/nonexistent/arcface.onnx")


def test_csim_on_anyhead_renders(ict_model, dlib_embedder):
    """The detector finds the faces of 256 px AnyHead renders (what the benchmark feeds it) from 0 to 45 degrees, and
    the same head seen 15 degrees away is closer than another head seen from the same camera."""
    from anyhead.cameras import Camera, intrinsics_from_fov, orbit_camera
    from anyhead.heads import HeadSpec, build_head
    from anyhead.render.raycast import HeadRenderer, Lighting
    from anyhead.render.rigs import LOOK_AT, TARGET_DISTANCE, TARGET_FOV
    from tests.conftest import profile_config

    K = intrinsics_from_fov(TARGET_FOV, 256, 256)
    views = {}
    for seed in (100, 101):
        r = HeadRenderer(build_head(ict_model, HeadSpec.sample(ict_model, seed, profile_config("tiny").assets), 256))
        views[seed] = []
        for yaw in (0, 15, 45, 180):
            o = r.render(Camera(orbit_camera(yaw, 5, TARGET_DISTANCE, LOOK_AT), K, 256, 256), Lighting(shadows=False), 1)
            rgb, a = o.rgb[..., :3].astype(np.float32), o.alpha[..., None]
            rgb = rgb / 255 if rgb.max() > 1.5 else rgb
            views[seed].append(rgb * a + (1 - a))  # on white, as the benchmark composites
    same = identity.csim(views[100][0], views[100], dlib_embedder, angles_deg=[0, 15, 45, 180])
    assert same.detected == [True, True, True, False] and same.detection_rate == 1.0  # the back view is not counted
    other = identity.csim(views[100][0], views[101][:1], dlib_embedder)
    assert other.detected == [True]
    assert same.similarity[1] > other.similarity[0] + 0.03, (same.similarity, other.similarity)
    print(f"\nAnyHead renders, same head at 15/45 deg: {same.similarity[1]:.3f}/{same.similarity[2]:.3f}; "
          f"another head, same camera: {other.similarity[0]:.3f}")
