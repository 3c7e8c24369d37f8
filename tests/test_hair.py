"""Card hair: every style's roots and cards cover the scalp (bald and receding leave skin where they
should), cards stay outside the skull, and the ray caster renders alpha cards (holes pass rays through
to what is behind, partial alpha gives fractional coverage)."""
import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from anyhead.assets import HeadAsset, Part
from anyhead.cameras import Camera, intrinsics_from_fov, look_at, orbit_camera
from anyhead.config import ConfigError, HairConfig, parse
from anyhead.geometry import RayCaster, vertex_normals
from anyhead.hair import CENTRE, STYLES, HairParams, hairline_elevation
from anyhead.heads import HeadSpec, build_head
from anyhead.render import HeadRenderer, Lighting
from tests.conftest import profile_config

ASSETS = profile_config("tiny").assets
FULL = [s for s in STYLES if s not in ("bald", "receding")]


def _head(model, style, seed=7):
    spec = HeadSpec.sample(model, seed, ASSETS)
    spec.accessories = []
    spec.hair = HairParams.sample(np.random.default_rng(seed), spec.appearance.hair_color, style, ASSETS.hair)
    return build_head(model, spec, 64), spec.hair


def _scalp(asset, params, margin=6.0):
    """Skin vertices (and outward normals) well above the style's hairline."""
    skin = asset.part("skin")
    v = skin.vertices.astype(np.float64)
    n = vertex_normals(skin.vertices, skin.faces)
    d = (v - CENTRE) / np.linalg.norm(v - CENTRE, axis=1, keepdims=True)
    az, el = np.degrees(np.arctan2(d[:, 0], d[:, 2])), np.degrees(np.arcsin(d[:, 1]))
    sel = (el > hairline_elevation(az, params.hairline_shift) + margin) & (v[:, 2] < 0.08)
    return v[sel], n[sel]


def _roots(cards: Part) -> np.ndarray:
    """Root points of the cards: the midpoints of the v = 0 edges."""
    corners = cards.vertices[cards.faces].reshape(-1, 3)
    return corners[cards.face_uv.reshape(-1, 2)[:, 1] == 0]


def _under_hair(asset, pts, nrm):
    """Which points a ray from outside along the inward normal meets hair (cover or cards) on."""
    verts, faces = asset.merged()
    part = np.concatenate([np.full(len(p.faces), i) for i, p in enumerate(asset.parts)])
    hair = [i for i, p in enumerate(asset.parts) if p.name.startswith("hair")]
    hit = RayCaster(verts, faces).cast(pts + nrm * 0.3, -nrm)
    return (hit["primID"] >= 0) & np.isin(part[np.maximum(hit["primID"], 0)], hair)


@pytest.mark.parametrize("style", FULL)
def test_cards_grow_from_the_whole_scalp(ict_model, style):
    asset, params = _head(ict_model, style)
    cards = asset.part("hair_cards")
    assert cards.texture.shape[-1] == 4 and 0 < cards.texture[..., 3].mean() < 255  # alpha-textured
    pts, nrm = _scalp(asset, params)
    dist, _ = cKDTree(_roots(cards)).query(pts)
    near = (dist < 0.015).mean()
    assert near > 0.97, f"{style}: only {near:.1%} of the scalp has a card root within 15 mm"
    under = _under_hair(asset, pts, nrm).mean()
    assert under > 0.98, f"{style}: only {under:.1%} of the scalp is under hair"


def test_bald_and_receding_show_skin_where_expected(ict_model):
    bald, _ = _head(ict_model, "bald")
    assert not [n for n in bald.names() if n.startswith("hair")]
    asset, params = _head(ict_model, "receding")
    assert params.hairline_shift >= 14
    skin = asset.part("skin")
    v = skin.vertices.astype(np.float64)
    n = vertex_normals(skin.vertices, skin.faces)
    d = (v - CENTRE) / np.linalg.norm(v - CENTRE, axis=1, keepdims=True)
    az, el = np.degrees(np.arctan2(d[:, 0], d[:, 2])), np.degrees(np.arcsin(d[:, 1]))
    # the temples' corners: above an ordinary hairline, below the receded one
    temples = (np.abs(az) > 15) & (np.abs(az) < 40) & (el > hairline_elevation(az) + 4) & (
        el < hairline_elevation(az, params.hairline_shift) - 4)
    assert temples.sum() > 20
    assert _under_hair(asset, v[temples], n[temples]).mean() < 0.3  # bare skin
    pts, nrm = _scalp(asset, params)
    back = pts[:, 2] < -0.03
    assert _under_hair(asset, pts[back], nrm[back]).mean() > 0.97  # the back keeps its hair
    # and the scalp shows through a thinning crown: the cover's alpha is below 1 there
    assert asset.part("hair").texture[..., 3].min() < 200


@pytest.mark.parametrize("style", ["short", "long_wavy", "curly", "afro", "ponytail", "bun"])
def test_cards_stay_outside_the_skull(ict_model, style):
    asset, _ = _head(ict_model, style)
    skin = asset.part("skin")
    mesh = trimesh.Trimesh(skin.vertices, skin.faces, process=False)
    samples, fid = trimesh.sample.sample_surface_even(mesh, 60_000, seed=0)
    normals = mesh.face_normals[fid]
    normals *= np.sign(np.einsum("ij,ij->i", normals, samples - CENTRE))[:, None]  # outwards
    cards = asset.part("hair_cards").vertices.astype(np.float64)
    cards = cards[cards[:, 1] > -0.08]  # the skull and the face (long hair hangs below the neck's open end)
    _, i = cKDTree(samples).query(cards)
    d = np.einsum("ij,ij->i", cards - samples[i], normals[i])
    # near the ears the nearest skin normal misleads: there a vertex is inside only if skin lies further out
    # along its direction from the head centre
    out = (cards - CENTRE) / np.linalg.norm(cards - CENTRE, axis=1, keepdims=True)
    covered = RayCaster(skin.vertices, skin.faces).cast(cards + out * 1e-4, out)["primID"] >= 0
    d = np.where(covered, d, np.abs(d))
    assert (d > 0.0005).mean() > 0.995, f"{style}: {(d <= 0.0005).mean():.2%} of card vertices within 0.5 mm or inside"
    assert d.min() > -0.002, f"{style}: a card vertex {-d.min() * 1000:.1f} mm inside the head"


@pytest.mark.parametrize("style", ["short", "long_wavy"])
def test_cards_end_under_a_hat(ict_model, style):
    spec = HeadSpec.sample(ict_model, 4, ASSETS)
    spec.accessories = ["hat"]
    spec.hair = HairParams.sample(np.random.default_rng(4), spec.appearance.hair_color, style, ASSETS.hair)
    asset = build_head(ict_model, spec, 64)
    hat = [p for p in asset.parts if p.name.startswith("hat_")]
    v = np.concatenate([asset.part(n).vertices for n in asset.names() if n in ("hair_cards", "hair_flyaways")])
    v = v.astype(np.float64)
    assert len(v) > 100  # hair hangs out below the hat
    verts = np.concatenate([p.vertices for p in hat])
    faces = np.concatenate([p.faces + k for p, k in zip(hat, np.cumsum([0] + [len(p.vertices) for p in hat]))])
    rel = v - CENTRE
    r = np.linalg.norm(rel, axis=1)
    hit = RayCaster(verts, faces).cast(np.broadcast_to(CENTRE, rel.shape), rel / r[:, None])
    assert not ((hit["primID"] >= 0) & (hit["tfar"] < r)).any()  # no card vertex beyond the hat's surface


def _card_scene():
    """An opaque grey plane at z = -0.1 behind a card at z = 0 whose texture is transparent on the
    left third, half transparent in the middle and opaque red on the right."""
    back = Part("back", [[-0.2, -0.05, -0.1], [0.2, -0.05, -0.1], [0.2, 0.05, -0.1], [-0.2, 0.05, -0.1]],
                [[0, 1, 2], [0, 2, 3]], "cloth", vertex_colors=np.full((4, 3), 0.5))  # cloth: skin's scatter tints red
    tex = np.zeros((4, 6, 4), np.uint8)
    tex[..., 0] = 255
    tex[:, 2:4, 3] = 128
    tex[:, 4:, 3] = 255
    v = [[-0.15, -0.1, 0.0], [0.15, -0.1, 0.0], [0.15, 0.1, 0.0], [-0.15, 0.1, 0.0]]
    uv = np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], np.float32)
    card = Part("hair_cards", v, [[0, 1, 2], [0, 2, 3]], "hair", face_uv=uv, texture=tex)
    return HeadAsset([back, card])


def test_rays_pass_through_transparent_texels():
    res = 60
    cam = Camera(look_at([0, 0, 1.0], [0, 0, 0]), intrinsics_from_fov(20, res, res), res, res)
    out = HeadRenderer(_card_scene()).render(cam, Lighting(shadows=False), supersample=1)
    col = np.round((np.linspace(-0.15, 0.15, 7)[[1, 3, 5]] / (np.tan(np.radians(10)) * 1.0) + 1) * res / 2).astype(int)
    above, below = res // 2 - 8, res // 2 + 8  # rows over the back plane (|y| < 0.05 m) and only over the card
    left, mid, right = col
    # transparent texels: the ray goes on to the plane behind (its depth and part), nothing of the card
    assert out.part[above, left] == 0 and abs(out.depth[above, left] - 1.1) < 1e-3 and out.alpha[above, left] == 1
    assert abs(int(out.rgb[above, left, 0]) - int(out.rgb[above, left, 1])) < 4  # grey, no red
    # opaque texels: the card (red), at its depth
    assert out.part[above, right] == 1 and abs(out.depth[above, right] - 1.0) < 1e-3
    assert out.rgb[above, right, 0] > 2 * out.rgb[above, right, 1]
    # half-transparent texels: blended over the plane; over the background, fractional coverage
    assert out.rgb[above, mid, 0] > out.rgb[above, mid, 1] + 10 and out.alpha[above, mid] == 1
    assert 0.35 < out.alpha[below, mid] < 0.65 and out.alpha[below, left] == 0 and out.alpha[below, right] == 1
    assert out.depth[below, left] == 0 and out.part[below, left] == -1  # nothing there: empty, like a miss


def test_rendered_hair_has_fractional_alpha(ict_model):
    asset, _ = _head(ict_model, "long_wavy")
    res = 96
    cam = Camera(orbit_camera(90.0, 5.0, 0.62, target=(0, -0.04, 0)), intrinsics_from_fov(30.0, res, res), res, res)
    out = HeadRenderer(asset).render(cam, Lighting(), 2)
    hair = np.isin(out.part, [i for i, name in enumerate(asset.names()) if name.startswith("hair")])  # cards, flyaways, cover
    assert hair.mean() > 0.1, hair.mean()
    soft = (out.alpha > 0.02) & (out.alpha < 0.98)
    assert soft.sum() > 30 and (soft & hair).sum() > 0.5 * soft.sum(), (soft.sum(), (soft & hair).sum())  # soft edges are mostly hair
    # what covers a pixel has a depth (edge pixels take theirs from the centre sample, which may miss)
    assert (out.depth[out.alpha > 0.5] > 0).mean() > 0.99


def test_hair_config_is_validated():
    good = dict(style_prob={"short": 1.0}, dye_prob=0.1, dye_colors=["pink"], grey_prob=0.1, density=1.0)
    assert parse(HairConfig, good).style_prob["short"] == 1.0
    for bad, msg in [({"style_prob": {"mohawk": 1.0}}, "style_prob.mohawk: unknown hair style"),
                     ({"style_prob": {"short": 0.0}}, "no style has a weight"),
                     ({"dye_colors": ["tartan"]}, "dye_colors[0]: 'tartan' is not one of"),
                     ({"density": 0}, "density: 0.0 must be greater than 0")]:
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            parse(HairConfig, {**good, **bad})
    # sampling follows the configured weights
    only = parse(HairConfig, {**good, "style_prob": {"afro": 1.0, "bun": 0.0}})
    rng = np.random.default_rng(0)
    assert {HairParams.sample(rng, "black", cfg=only).style for _ in range(20)} == {"afro"}


@pytest.mark.parametrize("style", ["buzz", "short", "side_part", "receding", "afro"])
def test_short_styles_lie_on_the_scalp(ict_model, style):
    """No spikes: every card vertex of a short style stays within a few centimetres of the skin."""
    asset, _ = _head(ict_model, style)
    skin = asset.part("skin")
    mesh = trimesh.Trimesh(skin.vertices, skin.faces, process=False)
    samples, _ = trimesh.sample.sample_surface_even(mesh, 60_000, seed=0)
    d, _ = cKDTree(samples).query(asset.part("hair_cards").vertices.astype(np.float64))
    limit = 0.07 if style == "afro" else 0.03  # an afro's cards grow through its 3-4 cm cover
    assert d.max() < limit, f"{style}: a card vertex {d.max() * 100:.1f} cm from the skin"


@pytest.mark.parametrize("style", ["long_straight", "long_wavy", "bob", "short"])
def test_flyaways_are_short(ict_model, style):
    asset, _ = _head(ict_model, style, seed=3)
    fly = asset.part("hair_flyaways")
    d, _ = cKDTree(_roots(fly)).query(fly.vertices.astype(np.float64))
    assert d.max() < 0.065, f"{style}: a flyaway reaches {d.max() * 100:.1f} cm from the nearest flyaway root"


@pytest.mark.parametrize("style,seed", [("long_straight", 5), ("long_straight", 7), ("long_wavy", 4), ("long_wavy", 7)])
def test_long_hair_covers_the_nape(ict_model, style, seed):
    """Seen from behind, the back of the neck (below the nape hairline) is under hair, not bare skin."""
    asset, _ = _head(ict_model, style, seed)
    res = 96
    cam = Camera(look_at([0, -0.09, -1.0], [0, -0.09, 0]), intrinsics_from_fov(10, res, res), res, res)
    part = HeadRenderer(asset).render(cam, Lighting(shadows=False), supersample=1).part
    xs, ys = np.meshgrid(np.linspace(-0.025, 0.025, 6), np.linspace(-0.12, -0.06, 6))
    uv, _ = cam.project(np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, -0.05)], 1))
    hits = part[uv[:, 1].astype(int), uv[:, 0].astype(int)]
    names = np.array([asset.parts[i].name if i >= 0 else "-" for i in hits])
    skin = (names == "skin").mean()
    assert skin < 0.05, f"{style} seed {seed}: {skin:.0%} of the nape shows skin ({sorted(set(names))})"


@pytest.mark.parametrize("style,seed", [("long_wavy", 4), ("long_straight", 5), ("long_straight", 4)])
def test_hair_reaches_up_under_a_hat(ict_model, style, seed):
    """No gap between a hat and long hair: from the temples round the back, card hair comes out from under the
    hat's rim (within about 1 cm of it) instead of starting centimetres below it."""
    spec = HeadSpec.sample(ict_model, seed, ASSETS)
    spec.accessories = ["hat"]
    spec.hair = HairParams.sample(np.random.default_rng(seed), spec.appearance.hair_color, style, ASSETS.hair)
    asset = build_head(ict_model, spec, 64)
    hat = next(p for p in asset.parts if p.name in ("hat_cap", "hat_beanie"))
    rim = hat.vertices[-72:].astype(np.float64)  # the hat's lowest row
    az = np.degrees(np.arctan2(rim[:, 0], rim[:, 2]))
    rim = rim[np.abs(az) > 48]  # from the temples round the back (the forehead has no hair to reach it)
    d, _ = cKDTree(asset.part("hair_cards").vertices.astype(np.float64)).query(rim)
    assert d.max() < 0.012, f"{style}: a {d.max() * 100:.1f} cm gap between the hat's rim and the hair"
