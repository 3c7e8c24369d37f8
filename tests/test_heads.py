import json

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from anyhead.accessories import anchors, load_user_accessory
from anyhead.assets import HeadAsset
from anyhead.config import AccessorySpec, parse
from anyhead.geometry import RayCaster, vertex_normals
from anyhead.hair import STYLES, HairParams
from anyhead.heads import HeadSpec, build_head
from anyhead.io import InputError
from anyhead.look import BODY_PARTS
from tests.conftest import profile_config

ASSETS = profile_config("tiny").assets


def _head(model, seed, style=None, accessories=None):
    spec = HeadSpec.sample(model, seed, ASSETS)
    if style is not None:
        spec.hair = HairParams.sample(np.random.default_rng(seed), color=spec.appearance.hair_color, style=style)
    if accessories is not None:
        spec.accessories = accessories
    return build_head(model, spec, 128)


def _signed_distance_to_skin(asset, points):
    """Distance along the skin's outward normal at the nearest of ~100k dense skin samples."""
    skin = asset.part("skin")
    mesh = trimesh.Trimesh(skin.vertices, skin.faces, process=False)
    samples, fid = trimesh.sample.sample_surface_even(mesh, 100_000, seed=0)
    normals = mesh.face_normals[fid]
    _, i = cKDTree(samples).query(points)
    return np.einsum("ij,ij->i", points - samples[i], normals[i])


def _surface_points(part, n=3000):
    m = trimesh.Trimesh(part.vertices, part.faces, process=False)
    return trimesh.sample.sample_surface(m, n, seed=1)[0]


@pytest.fixture(scope="module")
def accessorised(ict_model):
    return [_head(ict_model, s, style="short", accessories=["glasses", "hat", "earrings"]) for s in (3, 4)] + [
        _head(ict_model, 5, style="long_straight", accessories=["glasses", "headphones", "earrings"])]


def test_accessories_sit_on_head_without_interpenetration(accessorised):
    checked = 0
    for asset in accessorised:
        for part in asset.parts:
            # hair is no accessory: long hair_cards hang below the ICT neck's cut (y < -0.15), where the
            # nearest skin sample is the neck's open rim and a distance along its normal means nothing;
            # tests/test_hair.py::test_cards_stay_outside_the_skull checks cards against the head instead
            if part.name in ("skin", "eyes", "mouth", "eyelashes", "hair", "hair_cards", "hair_flyaways", "hair_bun", *BODY_PARTS):
                continue
            d = _signed_distance_to_skin(asset, _surface_points(part))
            # at most 2 mm inside the skin anywhere (earring posts may touch the lobe)
            assert np.quantile(d, 0.001) > -0.002, f"{part.name} penetrates the skin by {-d.min() * 1000:.1f} mm"
            # and they are on the head, not floating away: some point within 3 cm
            assert np.abs(d).min() < 0.03, part.name
            checked += 1
    assert checked >= 8


def test_glasses_in_front_of_the_eyes(accessorised, ict_model):
    asset = accessorised[0]
    lens = asset.part("glasses_lens").vertices
    lm = np.array(asset.meta["landmarks"])
    for eye, side in ((lm[36:42].mean(0), lens[:, 0] < 0), (lm[42:48].mean(0), lens[:, 0] > 0)):
        centre = lens[side].mean(0)
        assert np.linalg.norm(centre[:2] - eye[:2]) < 0.01  # centred on the eye in x, y
        assert 0.005 < centre[2] - eye[2] < 0.035  # in front of it, not inside the face


@pytest.mark.parametrize("style", [s for s in STYLES if s not in ("bald", "receding")])
def test_hair_covers_the_scalp(ict_model, style):
    asset = _head(ict_model, 11, style=style, accessories=[])
    verts, faces = asset.merged()
    caster = RayCaster(verts, faces)
    part_of_face = np.concatenate([np.full(len(p.faces), i) for i, p in enumerate(asset.parts)])
    hair_ids = [i for i, p in enumerate(asset.parts) if p.name.startswith("hair")]
    skin = asset.part("skin")
    n = vertex_normals(skin.vertices, skin.faces)
    v = skin.vertices
    # scalp: the crown and the back of the skull above the ears
    scalp = (v[:, 1] > 0.07) | ((v[:, 2] < -0.06) & (v[:, 1] > 0.02))
    origins = v[scalp] + n[scalp] * 0.2
    hit = caster.cast(origins, -n[scalp])
    covered = np.isin(part_of_face[hit["primID"]], hair_ids) & (hit["primID"] >= 0)
    assert covered.mean() > 0.97, f"{style}: only {covered.mean():.1%} of the scalp is under hair"


def test_bald_has_no_hair(ict_model):
    asset = _head(ict_model, 12, style="bald", accessories=[])
    assert not [n for n in asset.names() if n.startswith("hair")]


def test_same_seed_same_head_and_provenance(ict_model):
    a, b = _head(ict_model, 21), _head(ict_model, 21)
    c = _head(ict_model, 22)
    assert a.names() == b.names()
    for pa, pb in zip(a.parts, b.parts):
        assert np.array_equal(pa.vertices, pb.vertices)
        if pa.texture is not None:
            assert np.array_equal(pa.texture, pb.texture)
    assert not np.array_equal(a.part("skin").vertices, c.part("skin").vertices)
    prov = a.meta["provenance"]
    assert prov["seed"] == 21 and "MIT" in prov["license"] and prov["source"] == "ICT-FaceKit"
    assert a.meta["spec"]["appearance"]["skin_tone"] >= 1


def test_skin_tones_span_the_range(ict_model):
    tones = [HeadSpec.sample(ict_model, s, ASSETS).appearance.skin_tone for s in range(200)]
    assert min(tones) < 2 and max(tones) > 9  # Monk scale 1 (lightest) to 10 (darkest)


def test_asset_round_trip_and_glb(ict_model, tmp_path):
    a = _head(ict_model, 31, accessories=["glasses"])
    a.save(tmp_path / "h")
    b = HeadAsset.load(tmp_path / "h")
    assert b.names() == a.names() and b.meta["convention"]["camera"] == "opencv"
    assert np.array_equal(b.part("skin").texture, a.part("skin").texture)
    a.export_glb(tmp_path / "h.glb")
    scene = trimesh.load(tmp_path / "h.glb")
    assert len(scene.geometry) == len(a.parts)
    with pytest.raises(InputError, match="asset.npz"):
        HeadAsset.load(tmp_path / "missing")


def test_user_accessory_adapter(ict_model, tmp_path):
    verts = ict_model.neutral
    pts = anchors(ict_model, verts)
    box = trimesh.creation.box(extents=[4, 1, 4])  # centimetres
    box.export(tmp_path / "crown.obj")
    spec = {"anchor": "top_of_head", "offset": [0, 0.01, 0], "units": "cm", "color": [0.9, 0.8, 0.1]}
    part = load_user_accessory(tmp_path / "crown.obj", parse(AccessorySpec, spec), pts)
    assert np.allclose(part.vertices.mean(0), pts["top_of_head"] + [0, 0.01, 0], atol=1e-6)
    assert np.isclose(np.ptp(part.vertices[:, 0]), 0.04)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert load_user_accessory(tmp_path / "crown.obj", tmp_path / "spec.json", pts).name == "user_crown"
    (tmp_path / "elbow.json").write_text(json.dumps({"anchor": "elbow"}))
    with pytest.raises(InputError, match="elbow.json: anchor spec: anchor: 'elbow' is not one of"):
        load_user_accessory(tmp_path / "crown.obj", tmp_path / "elbow.json", pts)
    with pytest.raises(InputError, match="not found"):
        load_user_accessory(tmp_path / "nope.glb", parse(AccessorySpec, spec), pts)
    (tmp_path / "typo.json").write_text(json.dumps({**spec, "colour": 1}))
    with pytest.raises(InputError, match="colour: unknown key"):
        load_user_accessory(tmp_path / "crown.obj", tmp_path / "typo.json", pts)


def test_anchor_ears_are_on_the_sides(ict_model):
    a = anchors(ict_model, ict_model.neutral)
    assert a["ear_left"][0] > 0.06 and a["ear_right"][0] < -0.06
    assert a["earlobe_left"][1] < a["ear_left"][1] < a["ear_left_top"][1]
    assert a["top_of_head"][1] > 0.1
