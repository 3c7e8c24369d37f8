"""Real photos in: loading, landmarks, head pose, rig framing, matting (anyhead.photos and friends)."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from anyhead.cameras import Camera, intrinsics_from_focal_mm, orbit_camera, project
from anyhead.headpose import FULL_FRAME_DIAGONAL_MM, RIG_HEAD_FILL, RIG_HEAD_SPAN_M, template
from anyhead.imageio import load_photo
from anyhead.io import InputError
from anyhead.photos import analyse_portrait, astronaut, load_image, portrait_sample
from anyhead.render.rigs import LOOK_AT, sample_input_camera
from anyhead.samples import decode_sample
from tests.conftest import profile_config

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def equivalent_mm(K: np.ndarray, width: int, height: int) -> float:
    """The 35 mm-equivalent focal length (on the diagonal, as EXIF states it) of a render's K: the project's
    renders define focal_mm on the image width, which differs for square images."""
    return float(K[0, 0] * FULL_FRAME_DIAGONAL_MM / np.hypot(width, height))


@pytest.fixture(scope="module")
def astro():
    return analyse_portrait(astronaut(), 256, None, source="astronaut")


def test_rig_framing_constants_match_the_training_rig():
    rng = np.random.default_rng(0)
    cam, info = sample_input_camera(rng, 256, max_yaw=0.0, pitch_range=(0.0, 0.0), max_roll=0.0, focal_mm=(50.0, 50.0),
                                    distance_jitter=0.0)
    assert np.isclose(cam.K[0, 0] / info["distance"], RIG_HEAD_FILL * 256 / RIG_HEAD_SPAN_M)


def test_astronaut_landmarks_reproject_and_head_lands_where_the_rig_puts_it(astro):
    mp_idx, _, pts = template()
    # the template's landmarks, projected with the solved camera, against the detected ones (photo pixels, 512 px photo)
    uv, _ = project(pts, astro.pose.w2c, astro.pose.K)
    err = np.linalg.norm(uv - astro.landmarks.uv[mp_idx], axis=1)
    print(f"astronaut reprojection: rms {np.sqrt((err**2).mean()):.2f} px, median {np.median(err):.2f} px, max {err.max():.2f} px"
          f" (eye distance {astro.pose.eye_distance_px:.0f} px); pose {astro.pose.to_dict()}")
    assert np.sqrt((err**2).mean()) < 5.0 and np.median(err) < 4.0
    # in the crop: the rig's look-at point at the centre, 0.36 m of head over 80% of the frame, no roll
    cam = astro.camera
    (c,), _ = cam.project(LOOK_AT[None])
    assert np.allclose(c, [128, 128], atol=1e-6)
    d = np.linalg.norm(cam.center - LOOK_AT)
    assert np.isclose(cam.K[0, 0] * RIG_HEAD_SPAN_M / d, RIG_HEAD_FILL * 256)
    up = cam.w2c[:3, :3] @ [0, 1, 0]
    assert abs(up[0]) < 1e-9  # head +y is straight up in the image
    # the crop's camera explains the landmarks warped into the crop too
    uv_c, _ = cam.project(pts)
    assert np.median(np.linalg.norm(uv_c - astro.crop_landmarks[mp_idx], axis=1)) < 4.0 * 256 / 512 * 2
    assert -15 < astro.pose.yaw_pitch_roll[0] < 15


def test_astronaut_matte_keeps_hair_drops_background(astro):
    a = astro.alpha
    Image.fromarray((a * 255).astype(np.uint8)).save(FIXTURES / "astronaut_matte_test_output.png")
    ref = np.asarray(Image.open(FIXTURES / "astronaut_matte.png")).astype(np.float32) / 255  # checked by eye
    lm = astro.crop_landmarks
    top = lm[:, 1].min()  # hairline-ish: the face mesh's top (forehead)
    cx = lm[:, 0].mean()
    hair = a[int(top) - 20:int(top) - 5, int(cx) - 10:int(cx) + 10]
    assert hair.mean() > 0.9, "hair above the forehead must be kept"
    assert a[:30, :30].mean() < 0.05 and a[:30, -30:].mean() < 0.05 and a[:40].mean() < 0.2, "background must go"
    ij = np.round(lm).astype(int)
    assert a[ij[:, 1], ij[:, 0]].mean() > 0.97  # the face itself
    assert np.abs(a - ref).mean() < 0.03


def test_sample_files_and_white_background():
    s = decode_sample(portrait_sample(astronaut(), "astro", res=96, background="white"))
    v = s.views[0]
    assert v.rgb.shape == (96, 96, 3) and s.meta["single_view"] and s.points is None
    assert v.mask[0, 0] < 0.1 and (v.rgb[0, 0] > 240).all()
    assert s.meta["head_pose"]["reprojection_rms_px"] < 5 and s.meta["faces_found"] == 1
    assert np.allclose(v.camera.K[:2, 2], 48)


@pytest.fixture(scope="module")
def astro_jpeg(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(np.asarray(astronaut().rgb)).save(d / "astro.jpg", quality=95)
    return d


def test_exif_rotated_copy_gives_the_same_crop(astro_jpeg):
    base = analyse_portrait(load_image(astro_jpeg / "astro.jpg"), 128, None, matte=False)
    # a "phone" file: pixels stored rotated, EXIF orientation 6 (rotate 90 CW to display)
    im = Image.open(astro_jpeg / "astro.jpg")
    exif = im.getexif()
    exif[0x0112] = 6
    im.transpose(Image.Transpose.ROTATE_90).save(astro_jpeg / "astro_exif6.jpg", quality=95, exif=exif.tobytes())
    rot = analyse_portrait(load_image(astro_jpeg / "astro_exif6.jpg"), 128, None, matte=False)
    diff = np.abs(base.rgb.astype(float) - rot.rgb.astype(float)).mean()
    print(f"EXIF-rotated copy: mean crop difference {diff:.2f}/255, yaw {base.pose.yaw_pitch_roll} vs {rot.pose.yaw_pitch_roll}")
    assert diff < 4.0
    assert np.allclose(base.camera.w2c, rot.camera.w2c, atol=0.02)


@pytest.mark.parametrize("kind", ["gray", "rgba", "rgb16", "gray16", "cmyk", "palette"])
def test_pixel_formats(astro_jpeg, kind):
    a = np.asarray(astronaut().rgb)
    p = astro_jpeg / f"astro_{kind}.{'jpg' if kind == 'cmyk' else 'png'}"
    if kind == "gray":
        Image.fromarray(a).convert("L").save(p)
    elif kind == "rgba":
        rgba = np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])
        rgba[:60, :60, 3] = 0  # a transparent corner becomes white
        Image.fromarray(rgba).save(p)
    elif kind == "rgb16":
        import cv2

        cv2.imwrite(str(p), (a[..., ::-1].astype(np.uint16) * 257))
    elif kind == "gray16":
        Image.fromarray((a.mean(2) * 257).astype(np.uint16)).save(p)
    elif kind == "cmyk":
        Image.fromarray(a).convert("CMYK").save(p)
    else:
        Image.fromarray(a).convert("P").save(p)
    photo = load_image(p)
    assert photo.rgb.dtype == np.uint8 and photo.rgb.shape == (512, 512, 3)
    assert np.abs(photo.rgb.astype(float).mean() - a.mean()) < 12, kind
    if kind == "rgba":
        assert (photo.rgb[:60, :60] == 255).all()
    pr = analyse_portrait(photo, 64, None, matte=False)
    assert pr.pose.reproj_rms_px < 5


def test_errors_name_the_file(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"x\.jpg: unreadable image"):
        load_image(tmp_path / "x.jpg")
    with pytest.raises(InputError, match="missing.png: image not found"):
        load_image(tmp_path / "missing.png")
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(InputError, match=r"grey\.png: no face found"):
        analyse_portrait(load_image(tmp_path / "grey.png"), 64, None)


def test_several_faces_take_the_largest_with_a_warning(caplog):
    a = np.asarray(astronaut().rgb)
    small = np.asarray(Image.fromarray(a).resize((384, 384)))
    canvas = np.full((512, 1024, 3), 255, np.uint8)
    canvas[:, :512] = a
    canvas[:384, 640:] = small
    with caplog.at_level("WARNING"):
        p = analyse_portrait(canvas, 64, None, matte=False, source="two.png")
    assert "2 faces found" in caplog.text and "two.png" in caplog.text
    assert p.landmarks.uv[:, 0].max() < 512  # the big one


def test_6000x4000_photo_runs_in_bounded_memory(tmp_path):
    a = np.asarray(astronaut().rgb)
    big = Image.new("RGB", (6000, 4000), (200, 190, 180))
    big.paste(Image.fromarray(a).resize((2400, 2400)), (1800, 800))
    big.save(tmp_path / "big.jpg", quality=90)
    big.save(tmp_path / "big.png", compress_level=1)
    code = textwrap.dedent(f"""
        import resource, json
        from anyhead.photos import portrait_sample, load_image
        out = {{}}
        for name in ("big.jpg", "big.png"):
            files = portrait_sample(load_image(r"{tmp_path}/" + name), "big", res=256, background="white")
            out[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    peaks = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"6000x4000 photo, peak RSS of the whole process (MiB): {peaks}")
    assert max(peaks.values()) < 2048


POSED_YAWS = (0, 20, -20, 30, -30, 40, -40, 50, -50, 60, -60)
POSED_PITCHES = (-25, 0, 25)


@pytest.fixture(scope="module")
def posed_renders(ict_model):
    """The ICT mean head (two skin/hair appearances) rendered at known yaw/pitch, 384 px, 60 mm-equivalent.

    Held out from the pose correction's calibration: that is fitted on random ICT identities (seeds 9000-9079 in
    anyhead.build_face_template), never the mean head, and with other appearance seeds."""
    from anyhead.build_face_template import CALIBRATION_SEEDS
    from anyhead.hair import HairParams
    from anyhead.heads import HeadSpec, build_head
    from anyhead.render import HeadRenderer, Lighting

    out = []
    for seed in (101, 303):
        assert seed not in CALIBRATION_SEEDS
        spec = HeadSpec.sample(ict_model, seed, profile_config("tiny").assets)
        spec.identity[:] = 0.0
        spec.expression[:] = 0.0
        spec.accessories = []
        # short hair, as in the correction's calibration: this test is about pose, not about long card hair hiding
        # the face at 60 degrees (mediapipe then finds no face at all)
        spec.hair = HairParams.sample(np.random.default_rng(seed), color=spec.appearance.hair_color, style="buzz")
        r = HeadRenderer(build_head(ict_model, spec, 256))
        for yaw in POSED_YAWS:
            for pitch in POSED_PITCHES:
                cam = Camera(orbit_camera(yaw, pitch, 0.8, LOOK_AT), intrinsics_from_focal_mm(60.0, 384, 384), 384, 384)
                out.append((seed, yaw, pitch, cam, r.render(cam, Lighting(shadows=False)).rgb))
    return out


def test_pose_of_rendered_heads(posed_renders):
    rows = []
    for seed, yaw, pitch, cam, rgb in posed_renders:
        try:
            p = analyse_portrait(rgb, 64, equivalent_mm(cam.K, 384, 384), matte=False, source=f"render {seed} {yaw} {pitch}")
        except InputError as e:
            rows.append((seed, yaw, pitch, None, str(e)))
            continue
        R = p.pose.w2c[:3, :3] @ cam.w2c[:3, :3].T
        err = float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))
        rows.append((seed, yaw, pitch, round(err, 2), tuple(round(a, 1) for a in p.pose.yaw_pitch_roll),
                     round(p.pose.correction_deg, 1)))
    for r in rows:
        print("pose (seed, yaw, pitch, error, estimated yaw/pitch/roll, correction)", r)
    assert all(r[3] is not None for r in rows), "the face must be found in every render"
    # the rotation error per |yaw| bucket, pitch -25, 0 and +25 in each. Mediapipe's mesh flattens turned faces
    # (60 degrees reads as ~53 uncorrected; before the calibrated correction the 60-degree bucket was off by 13.8 on
    # average, max 21.4). With the first correction alone (calibrated on the previous look) these v2-look renders were
    # off by 2.8/5.9, 4.7/10.1 and 6.5/9.4 degrees (mean/max). With the turned-face correction (recalibrated on the v2
    # look, faded in from 15 to 25 degrees of yaw so near-frontal photos keep the first one) and the average with the
    # mirrored photo's pose: 2.41/4.80, 3.00/7.01 (40: 2.09/3.70, 50: 3.91/7.01) and 4.84/8.87. The bounds keep a
    # small margin. Beyond 40 degrees still more than "a few degrees" at worst (issue 12).
    for (lo, hi), (mean_max, max_max) in zip(((0, 30), (40, 50), (60, 60)), ((3.0, 5.5), (3.5, 8.0), (5.5, 9.5))):
        e = [r[3] for r in rows if lo <= abs(r[1]) <= hi]
        print(f"rotation error |yaw| {lo}-{hi}: mean {np.mean(e):.2f} max {np.max(e):.2f} degrees ({len(e)} renders)")
        assert np.mean(e) < mean_max and np.max(e) < max_max, (lo, hi)


def test_tilted_face_is_found_and_set_upright(astro):
    assert astro.pose.focal_source.startswith("prior 50")
    a = Image.fromarray(np.asarray(astronaut().rgb))
    tilted = np.asarray(a.rotate(30, resample=Image.BICUBIC, expand=True, fillcolor=(255, 255, 255)))
    # the rotated canvas is larger: keep the focal length in pixels the same as the original's 50 mm prior
    f = 50.0 * np.hypot(512, 512) / np.hypot(*tilted.shape[:2])
    p = analyse_portrait(tilted, 256, f, matte=False, source="tilted")
    roll = p.pose.yaw_pitch_roll[2]
    print(f"tilted 30 degrees: roll {roll:.1f} (untilted {astro.pose.yaw_pitch_roll[2]:.1f})")
    assert abs(roll - astro.pose.yaw_pitch_roll[2] + 30) < 3  # rotated counter-clockwise: head up tips left, roll -30
    # the crop is upright again: the face lands where it does in the untilted photo's crop
    shift = np.median(np.linalg.norm(p.crop_landmarks - astro.crop_landmarks, axis=1))
    print(f"tilted crop vs untilted crop: landmarks {shift:.1f} px apart (256 px crop)")
    assert shift < 5.0


def test_exif_focal_length_is_used(astro_jpeg):
    im = Image.open(astro_jpeg / "astro.jpg")
    exif = im.getexif()
    exif.get_ifd(0x8769)[0xA405] = 85  # FocalLengthIn35mmFilm
    im.save(astro_jpeg / "astro_85mm.jpg", quality=95, exif=exif.tobytes())
    photo = load_photo(astro_jpeg / "astro_85mm.jpg", 2048)
    assert photo.focal_35mm == 85
    p = analyse_portrait(photo, 64, None, matte=False)
    assert p.pose.focal_source.startswith("exif 85")
    assert np.isclose(p.pose.K[0, 0], 85 * np.hypot(512, 512) / np.hypot(36, 24))
    base = analyse_portrait(load_image(astro_jpeg / "astro.jpg"), 64, None, matte=False)
    assert 1.5 < p.pose.distance / base.pose.distance < 1.9  # a longer lens: the same face is farther away


def test_implausible_fits_are_refused(astro):
    from anyhead.headpose import solve_head_pose

    lm = astro.landmarks.uv
    K, (H, W) = astro.pose.K, astro.photo.rgb.shape[:2]
    scrambled = lm[np.random.default_rng(0).permutation(len(lm))]
    with pytest.raises(InputError, match="bad.png: the face landmarks do not fit a head"):
        solve_head_pose(scrambled, K, W, H, "bad.png")
    tiny = (lm - lm.mean(0)) * 0.1 + lm.mean(0)
    with pytest.raises(InputError, match="tiny.png: the face is too small"):
        solve_head_pose(tiny, K, W, H, "tiny.png")
    K_tele = K * [[40], [40], [1]]  # a 2000 mm lens: the head would be 50 m away
    K_tele[:2, 2] = K[:2, 2]
    with pytest.raises(InputError, match="far.png: implausible head pose: the head would be"):
        solve_head_pose(lm, K_tele, W, H, "far.png")


def test_template_table_matches_the_ict_model(ict_model):
    """The committed face-mesh -> ICT table: its points are the mean head's vertices, and face-mesh points with a
    known Multi-PIE counterpart (nose tip, nostril wings) sit on ICT's own 68-landmark vertices."""
    from anyhead import face_template as t

    V = ict_model.vertices().astype(np.float64)
    assert np.allclose(np.asarray(t.POINTS), V[list(t.ICT_VERTEX)], atol=2e-6)
    idx = list(t.MP_INDEX)
    known = {4: 30, 98: 31, 327: 35}  # mediapipe index -> Multi-PIE landmark
    for mp, pie in known.items():
        d = np.linalg.norm(np.asarray(t.POINTS[idx.index(mp)]) - V[ict_model.landmarks[pie]])
        assert d < 0.006, f"face-mesh point {mp} is {d * 1000:.1f} mm from Multi-PIE landmark {pie}"
    assert np.asarray(t.POINTS_BY_YAW).shape == (len(t.YAWS), len(idx), 3)


def test_crop_of_an_off_centre_photo_reproduces_the_rig_input(ict_model):
    """A head rendered as a wide, off-centre 'photo' comes out of the pipeline looking like the training rig's
    input render of the same head at the same camera centre (what the model was trained on)."""
    from scipy.spatial.transform import Rotation

    from anyhead.heads import HeadSpec, build_head
    from anyhead.render import HeadRenderer, Lighting

    spec = HeadSpec.sample(ict_model, 5, profile_config("tiny").assets)
    spec.identity[:] = 0.0
    spec.expression[:] = 0.0
    spec.accessories = []
    r = HeadRenderer(build_head(ict_model, spec, 256))
    f, res = 50.0, 256
    for yaw, pitch in [(0.0, 0.0), (30.0, 10.0)]:
        d = RIG_HEAD_SPAN_M / RIG_HEAD_FILL / (36.0 / f)  # the rig's distance for this focal length, no jitter
        rig = Camera(orbit_camera(yaw, pitch, d, LOOK_AT), intrinsics_from_focal_mm(f, res, res), res, res)
        turn = Rotation.from_euler("xy", [6, -8], degrees=True).as_matrix()  # the photographer aims off the head
        w2c = rig.w2c.copy()
        w2c[:3] = turn @ w2c[:3]
        K = intrinsics_from_focal_mm(f, 1024, 1024)
        photo = r.render(Camera(w2c, K, 1024, 1024), Lighting(shadows=False)).rgb
        p = analyse_portrait(photo, res, equivalent_mm(K, 1024, 1024), matte=False, source=f"render yaw {yaw}")
        expected = r.render(rig, Lighting(shadows=False)).rgb
        rot = np.degrees(np.arccos(np.clip((np.trace(p.camera.w2c[:3, :3] @ rig.w2c[:3, :3].T) - 1) / 2, -1, 1)))
        diff = np.abs(p.rgb.astype(float) - expected).mean()
        dist = np.linalg.norm(p.camera.center - LOOK_AT) / np.linalg.norm(rig.center - LOOK_AT)
        print(f"rig reproduction yaw {yaw}: camera {rot:.1f} degrees off, distance x{dist:.2f}, "
              f"mean pixel difference {diff:.1f}/255")
        assert rot < 4.0 and diff < 8.0
        assert 0.9 < dist < 1.1  # scale comes from the mean face's size: perspective, not framing, depends on it


def test_mirror_average_keeps_a_consistent_pose_and_leaves_frontal_faces_alone():
    from anyhead.headpose import HeadPose, average_with_mirror, rotate_head

    S = np.diag([-1.0, 1.0, 1.0, 1.0])
    K = intrinsics_from_focal_mm(60.0, 384, 384)
    for yaw, moved in ((40.0, True), (5.0, False)):
        w2c = orbit_camera(yaw, 10.0, 0.8, LOOK_AT)
        pose = HeadPose(w2c, K, 384, 384, 1.0, 2.0, 60.0, "given")
        # the mirrored photo's pose agrees: nothing moves
        assert np.allclose(average_with_mirror(pose, HeadPose(S @ w2c @ S, K, 384, 384, 1.0, 2.0, 60.0, "given")).w2c, w2c, atol=1e-9)
        # it disagrees by 4 degrees of head yaw: a turned face moves half way, a near-frontal one not at all
        other = rotate_head(w2c, np.radians([0.0, 4.0, 0.0]))
        out = average_with_mirror(pose, HeadPose(S @ other @ S, K, 384, 384, 1.0, 2.0, 60.0, "given")).w2c
        R = out[:3, :3] @ w2c[:3, :3].T
        ang = np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
        assert np.isclose(ang, 2.0, atol=0.05) if moved else ang < 1e-6
