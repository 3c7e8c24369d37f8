"""Benchmark protocol v2 building blocks: protocol, statistics, geometry v2, timing, shard integrity.
(Identity similarity has its own file, tests/test_identity.py: it loads dlib's models.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anyhead.cameras import look_at, orbit_camera
from benchmarks.protocol import (
    ANGLE_BUCKETS,
    DEFAULT_PROTOCOL,
    YAW_BUCKETS,
    EvaluationProtocol,
    angle_bucket,
    relative_angle_deg,
    yaw_bucket,
)

# ---------------------------------------------------------------- protocol


@pytest.mark.parametrize("yaw_in, pitch_in, yaw_t, pitch_t, expected", [
    (0, 0, 0, 0, 0.0), (0, 0, 30, 0, 30.0), (0, 0, -90, 0, 90.0), (0, 0, 180, 0, 180.0),
    (40, 0, 180, 0, 140.0),  # a "back" view (|yaw| >= 120) only 140 degrees from a 40-degree input
    (-40, 0, 40, 0, 80.0), (0, 0, 0, 50, 50.0), (0, 30, 0, -20, 50.0), (0, 0, 90, 45, 90.0),
    (0, 45, 180, 45, 90.0),  # over the top of the head
])
def test_relative_angle_known_orbit_cameras(yaw_in, pitch_in, yaw_t, pitch_t, expected):
    a = relative_angle_deg(orbit_camera(yaw_in, pitch_in, 1.2), orbit_camera(yaw_t, pitch_t, 0.8))
    assert a == pytest.approx(expected, abs=1e-6)


def test_relative_angle_batched_off_centre_and_look_at():
    inp = look_at((0, 0, 1.0))
    targets = np.stack([look_at((1.0, 0, 0)), look_at((0, 0, -2.0)), look_at((0, 0.5, 0.5), target=(0, 0.1, 0))])
    np.testing.assert_allclose(relative_angle_deg(inp, targets), [90, 180, 45], atol=1e-6)
    # the angle is about the head centre, whatever the camera looks at: a camera at the same place
    # looking elsewhere is at 0 degrees
    assert relative_angle_deg(inp, look_at((0, 0, 1.0), target=(0.3, 0.2, 0))) == pytest.approx(0, abs=1e-6)
    # a different centre changes the answer
    assert relative_angle_deg(look_at((0, 0, 1.0)), look_at((1.0, 0, 0)), center=(0, 0, -1)) == pytest.approx(
        np.degrees(np.arctan2(1, 1)), abs=1e-6)


def test_buckets_edges_and_yaw_view():
    assert [angle_bucket(a) for a in (0, 30, 30.01, 90, 90.5, 150, 150.5, 180)] == [
        "0-30", "0-30", "30-90", "30-90", "90-150", "90-150", "150-180", "150-180"]
    with pytest.raises(ValueError):
        angle_bucket(-1)
    assert [yaw_bucket(y) for y in (0, -30, 31, 119, 120, -150, 200, 330)] == [
        YAW_BUCKETS[0], YAW_BUCKETS[0], YAW_BUCKETS[1], YAW_BUCKETS[1], YAW_BUCKETS[2], YAW_BUCKETS[2],
        YAW_BUCKETS[2], YAW_BUCKETS[0]]
    # the dataset card keeps a plain copy of the v1 buckets: they must agree
    from anyhead import card

    assert tuple(card.YAW_BUCKETS) == YAW_BUCKETS
    assert all(card.yaw_bucket(y) == yaw_bucket(y) for y in np.linspace(-400, 400, 161))


def test_label_views_and_csim_rule():
    p = EvaluationProtocol()
    inp = orbit_camera(40, 0, 1.0)
    yaws = [40, 0, -40, 130, 180, -140]
    labels = p.label_views(inp, np.stack([orbit_camera(y, 0, 1.0) for y in yaws]), yaws)
    assert [round(lb.angle_deg) for lb in labels] == [0, 40, 80, 90, 140, 180]
    assert [lb.angle_bucket for lb in labels] == ["0-30", "30-90", "30-90", "30-90", "90-150", "150-180"]
    assert [lb.yaw_bucket for lb in labels] == [YAW_BUCKETS[1], YAW_BUCKETS[0], YAW_BUCKETS[1], YAW_BUCKETS[2],
                                                YAW_BUCKETS[2], YAW_BUCKETS[2]]
    assert [lb.counts_for_csim for lb in labels] == [True, True, True, True, False, False]
    # yaw from the camera centre when the records have none
    assert [round(lb.yaw_deg) for lb in p.label_views(inp, np.stack([orbit_camera(y, 0, 1.0) for y in yaws]))] == [
        40, 0, 40, 130, 180, 140]


def test_compositing_masks_and_card():
    p = DEFAULT_PROTOCOL
    rgb = torch.full((2, 3, 4, 4), 0.2)
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., :2, :] = 1.0
    mask[..., 2, :] = 0.5
    out = p.composite_gt(rgb, mask)
    assert torch.allclose(out[..., :2, :], torch.tensor(0.2)) and torch.allclose(out[..., 3, :], torch.tensor(1.0))
    assert torch.allclose(out[..., 2, :], torch.tensor(0.6))
    out_np = p.composite_gt(np.full((4, 4, 3), 0.2), mask[0, 0, ..., None].numpy())
    np.testing.assert_allclose(out_np[..., 0], out[0, 0].numpy(), atol=1e-6)
    alpha = torch.zeros(2, 1, 4, 4)
    alpha[..., 3, 0] = 0.9  # a false positive outside the GT mask
    region = p.eval_region(mask, alpha)
    assert region.dtype == torch.bool and int(region[0].sum()) == 9  # 8 GT (> 0.5, so not the 0.5 row) + 1
    assert int(EvaluationProtocol(masked_region="gt").eval_region(mask, alpha)[0].sum()) == 8
    card = p.card()
    assert set(card["angle_buckets"]) == set(ANGLE_BUCKETS) and card["mask_threshold"] == 0.5
    assert "90" in card["csim_views"]
    import json

    json.dumps(card)
    with pytest.raises(ValueError):
        EvaluationProtocol(angle_edges_deg=(0, 90, 180))


# ---------------------------------------------------------------- statistics

def test_bootstrap_ci_covers_mean_and_shrinks_with_n():
    from benchmarks.metrics.stats import bootstrap_ci

    rng = np.random.default_rng(0)
    widths = {}
    for n in (10, 40, 160):
        v = rng.normal(25.0, 2.0, n)
        ci = bootstrap_ci(v, seed=1)
        assert ci.low < v.mean() < ci.high and ci.n == n
        widths[n] = ci.high - ci.low
    # width ~ 2 * 1.96 * sd / sqrt(n): halves when n quadruples
    assert widths[10] > widths[40] > widths[160]
    assert widths[160] == pytest.approx(2 * 1.96 * 2.0 / np.sqrt(160), rel=0.25)
    assert bootstrap_ci(v, seed=1) == bootstrap_ci(v, seed=1)  # seeded
    c = bootstrap_ci([3.0] * 7)
    assert (c.mean, c.low, c.high) == (3.0, 3.0, 3.0)
    assert np.isnan(bootstrap_ci([1.0]).low) and bootstrap_ci([np.nan, np.nan]).n == 0


def test_bootstrap_coverage_near_nominal():
    from benchmarks.metrics.stats import bootstrap_ci

    rng = np.random.default_rng(5)
    hits = 0
    for i in range(200):
        ci = bootstrap_ci(rng.normal(0.0, 1.0, 40), n_boot=500, seed=i)
        hits += ci.low < 0.0 < ci.high
    assert 0.88 <= hits / 200 <= 0.99  # percentile bootstrap at n = 40: slightly under 95 %


def test_buckets_resample_heads_not_views():
    import pandas as pd

    from benchmarks.metrics.stats import bucket_intervals

    # head a: 100 views of 0 in bucket "x"; head b: 1 view of 1. Heads weigh equally.
    df = pd.DataFrame({"key": ["a"] * 100 + ["b"], "bucket": ["x"] * 101, "psnr": [0.0] * 100 + [1.0]})
    r = bucket_intervals(df, "psnr", buckets=["x", "y"])
    assert r["x"].mean == 0.5 and r["x"].n == 2 and r["x"].low == 0.0 and r["x"].high == 1.0
    assert r["y"].n == 0 and np.isnan(r["y"].mean)
    assert r["overall"].mean == 0.5


def test_paired_differences():
    import pandas as pd

    from benchmarks.metrics.stats import paired_bucket_differences, paired_difference

    rng = np.random.default_rng(2)
    heads = [f"h{i}" for i in range(30)]
    rows = [{"key": h, "bucket": b, "psnr": 20 + 5 * rng.normal() + i % 3}
            for h in heads for b in ("0-30", "150-180") for i in range(4)]
    df = pd.DataFrame(rows)
    same = paired_bucket_differences(df, df.copy(), "psnr")
    assert all((v.mean, v.low, v.high) == (0.0, 0.0, 0.0) and v.n == 30 for v in same.values())
    better = df.assign(psnr=df["psnr"] + 0.5)
    d = paired_bucket_differences(better, df, "psnr", buckets=["0-30", "150-180"])
    assert all(v.mean == pytest.approx(0.5) and v.low == pytest.approx(0.5) and v.high == pytest.approx(0.5)
               for v in d.values())
    # a noisy improvement of 0.3 per head: the paired interval covers it and excludes 0, although the
    # unpaired intervals of the two methods overlap (head-to-head variation is 5 dB)
    base = {h: 20 + 5 * rng.normal() for h in heads}
    new = {h: v + 0.3 + 0.2 * rng.normal() for h, v in base.items()}
    p = paired_difference(new, base, seed=3)
    assert p.low < 0.3 < p.high and p.low > 0
    # only common, non-NaN heads
    assert paired_difference({"a": 1.0, "b": 2.0, "c": np.nan}, {"a": 0.0, "c": 1.0, "d": 5.0}).n == 1


# ---------------------------------------------------------------- geometry v2

@pytest.fixture(scope="module")
def head_sample(ict_model, tmp_path_factory):
    """One real AnyHead sample (ICT head with hair, 96 px, 6 targets, 20k GT points), rendered by the production
    stage code and decoded from its files exactly as the shards are."""
    from anyhead.config import replace
    from anyhead.heads import HeadSpec, build_head
    from anyhead.render.folder import render_head
    from anyhead.samples import decode_sample
    from anyhead.stages import Task
    from tests.conftest import profile_config

    tiny = profile_config("tiny")
    root = tmp_path_factory.mktemp("geo_v2")
    cfg = replace(tiny.render, {"input_res": 96, "target_res": 96, "n_targets": 6, "shadows": False, "gt_points": 20000,
                                "input_yaw": 30, "input_pitch": 15, "focal_mm": [50, 50], "distance_jitter": 0.0,
                                "target_pitch": [-10, 30]})
    asset = build_head(ict_model, HeadSpec.sample(ict_model, 7, tiny.assets), 128)
    asset.save(root / "asset")
    render_head(Task("h", root / "h", "t", {"asset": str(root / "asset"), "cfg": cfg, "seed": 3}))
    files = {p.name: p.read_bytes() for p in (root / "h").iterdir()}
    files["__key__"] = "h"
    s = decode_sample(files)
    t = [v for v in s.views if v.role == "target"]
    return {"depth": np.stack([v.depth for v in t]), "mask": np.stack([v.mask for v in t]),
            "normal": np.stack([v.normal for v in t]), "w2c": np.stack([v.camera.w2c for v in t]),
            "K": np.stack([v.camera.K for v in t]), "points": s.points}


def test_geometry_v2_ground_truth_renderer_scores_perfectly(head_sample):
    from benchmarks.metrics import geometry

    h = head_sample
    # a "renderer" that returns the ground truth, in render()'s layout: (V, 1, H, W) tensors
    depth, alpha = torch.from_numpy(h["depth"])[:, None], torch.from_numpy(h["mask"])[:, None]
    per_view, head = geometry.geometry_v2(depth, alpha, h["depth"], h["mask"], h["w2c"], h["K"], h["normal"])
    assert np.all(per_view["depth_mae_mm"] == 0) and np.all(per_view["alpha_iou"] == 1)
    assert np.all(per_view["depth_coverage"] == 1)
    assert head["chamfer_mm"] == 0 and head["fscore_5mm"] == 1 and head["fscore_10mm"] == 1
    _, strided = geometry.geometry_v2(depth, alpha, h["depth"], h["mask"], h["w2c"], h["K"], pixel_stride=2)
    assert strided["chamfer_mm"] == 0 and strided["n_pred_points"] < head["n_pred_points"] / 3
    # normals from the (0.1 mm quantised) GT depth agree with the GT normal maps: the operator is sound (card hair's
    # map holds each card's normal while its depth steps across strands: cos 0.885 with it, 0.9+ with shell hair)
    assert head["normal_angle_deg"] < 20 and head["normal_cos"] > 0.85
    print(f"\nGT depth normals vs GT normal maps: {head['normal_angle_deg']:.1f} deg, cos {head['normal_cos']:.3f}, "
          f"coverage {head['normal_coverage']:.2f}")
    json = pytest.importorskip("json")
    json.dumps(geometry.card_v2())


def test_geometry_v2_degraded_predictions(head_sample):
    from benchmarks.metrics import geometry

    h = head_sample
    # depth 3 mm too far everywhere: depth error 3 mm, IoU still 1
    pv, head = geometry.geometry_v2(h["depth"] + 0.003 * (h["depth"] > 0), h["mask"], h["depth"], h["mask"], h["w2c"], h["K"])
    np.testing.assert_allclose(pv["depth_mae_mm"], 3.0, atol=1e-6)
    assert 0.5 < head["chamfer_mm"] < 3.0 and head["fscore_5mm"] > 0.95  # the surface moved 3 mm along the rays
    # half the silhouette missing: IoU 0.5-ish, coverage halves, depth error where covered is still 0
    cut = h["mask"].copy()
    cut[:, :, : cut.shape[2] // 2] = 0
    pv, head = geometry.geometry_v2(h["depth"], cut, h["depth"], h["mask"], h["w2c"], h["K"])
    assert np.all(pv["alpha_iou"] < 0.8) and np.all(pv["depth_mae_mm"] == 0) and np.all(pv["depth_coverage"] < 0.8)
    # (the pooled points barely change: other views of the 360-degree rig see the missing halves)
    # a flat billboard at the GT's median depth: normals far off
    flat = np.where(h["mask"] > 0.5, np.median(h["depth"][h["depth"] > 0]), 0.0)
    pv, head = geometry.geometry_v2(flat, h["mask"], h["depth"], h["mask"], h["w2c"], h["K"], h["normal"])
    assert head["normal_angle_deg"] > 35
    print(f"\nfronto-parallel billboard: normals {head['normal_angle_deg']:.1f} deg, depth {head['depth_mae_mm']:.1f} mm, "
          f"Chamfer {head['chamfer_mm']:.1f} mm, F@5 {head['fscore_5mm']:.3f}")


def test_backprojected_gt_depth_reproduces_gt_points(head_sample):
    from scipy.spatial import cKDTree

    from benchmarks.metrics import geometry

    h = head_sample
    from anyhead.cameras import project

    pts = geometry.visible_points(h["depth"], (h["mask"] > 0.5) & (h["depth"] > 0), h["w2c"], h["K"])
    # points.npy samples the surface the target depth maps record, anywhere in any target's frame
    # (anyhead.render.views): the same domain as the back-projected pixels the v2 Chamfer uses, with no crop
    gt = h["points"][:, :3].astype(np.float64)
    d = cKDTree(gt).query(pts)[0] * 1000
    back = cKDTree(pts).query(gt)[0] * 1000
    # 20k even samples over the visible surface are ~2 mm apart: back-projected pixels land on the sampled surface
    # (median 1.9 mm, 99.6% within 5 mm on this long-haired head, Chamfer 1.8 mm; GT points inside every target's frame
    # gave 85.6% of all pixels, 94.7% of those inside every frame, Chamfer 3.7 mm), and the GT points lie on what the
    # pixels show (99.6% within 5 mm: the rest are on flyaways and card texels only rays of partial coverage meet)
    assert np.median(d) < 2.5 and np.mean(d < 5.0) > 0.99, (np.median(d), np.mean(d < 5.0))
    assert np.mean(back < 5.0) > 0.985, np.mean(back < 5.0)
    # v1 (Gaussian centres vs points.npy) crops predictions to the same domain: every GT point is inside some frame
    inside = geometry.crop_to_frames(np.concatenate([gt, [[0.0, -1.0, 0.0], [0.0, 1.5, 0.0]]]), h["w2c"], h["K"], (96, 96))
    assert inside[:-2].all() and not inside[-2:].any()
    # and a single point round-trips exactly through project / back-project
    uv, z = project(gt[:5], h["w2c"][0], h["K"][0])
    dm = np.zeros((96, 96))
    ij = np.floor(uv).astype(int)
    dm[ij[0, 1], ij[0, 0]] = z[0]
    p = geometry.backproject_depth(dm, h["w2c"][0], h["K"][0])
    assert np.linalg.norm(p[0] - gt[0]) * 1000 < 2.0  # at most half a pixel (~1.5 mm here) off the ray's centre
    r = geometry.chamfer_fscore(pts, gt)
    print(f"\nback-projected GT depth vs points.npy: median {np.median(d):.2f} mm, {np.mean(d < 5):.4f} within 5 mm "
          f"({np.mean(back < 5):.4f} back), Chamfer {r['chamfer_mm']:.2f} mm, F@5 {r['fscore_5mm']:.3f}, F@10 {r['fscore_10mm']:.3f}")


# ---------------------------------------------------------------- timing v2

def test_time_model_cpu_path():
    from benchmarks.metrics import timing

    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    x = torch.randn(32, 64)
    calls = []
    st = timing.time_model(lambda t: calls.append(1) or net(t), x, device="cpu", iters=9, warmup=3)
    assert len(calls) == 12 and st.n == 9 and st.timer == "wall clock"
    assert all(t > 0 for t in st.times_ms) and st.q25_ms <= st.median_ms <= st.q75_ms and st.iqr_ms >= 0
    s = st.summary()
    assert s["median_ms"] == st.median_ms and s["warmup"] == 3 and "times_ms" not in s
    # the model is timed without gradients; no_grad=False keeps them
    grads = []
    timing.time_callable(lambda: grads.append(net(x).requires_grad), iters=1, warmup=0)
    timing.time_callable(lambda: grads.append(net(x).requires_grad), iters=1, warmup=0, no_grad=False)
    assert grads == [False, True]
    rec = timing.benchmark_model(net, (x,), "cpu", prepare=lambda: torch.randn(32, 64) * 2, iters=8, warmup=2)
    assert rec["model"]["n"] == 8 and rec["preprocess"]["n"] >= 3 and rec["device"]["device_type"] == "cpu"
    assert "gpu_before" not in rec and timing.gpu_context("cpu") == {}


def test_gpu_queries_parse_and_degrade_without_driver(monkeypatch):
    from benchmarks.metrics import timing

    rows = timing.parse_gpu_query("0, NVIDIA H100 80GB HBM3, 1980, 2619, 1980, 2619, P0, 41, 118.52, 97, 0x0000000000000000\n")
    assert rows[0]["clocks.sm"] == 1980.0 and rows[0]["name"] == "NVIDIA H100 80GB HBM3" and rows[0]["pstate"] == "P0"
    apps = timing.parse_compute_apps("123, python, 20480, GPU-abc\n456, /usr/bin/other, 512, GPU-abc\n", own_pid=123)
    assert [a["pid"] for a in apps] == [456.0] and apps[0]["used_memory_mib"] == 512.0
    monkeypatch.setattr(timing, "_nvidia_smi", lambda args: None)  # a machine without the NVIDIA driver
    assert timing.gpu_clocks() == [] and timing.gpu_processes() is None


# ---------------------------------------------------------------- shard integrity

def _sample(key: str, rng: np.random.Generator, ident: str | None = None) -> dict[str, bytes]:
    from anyhead.cameras import CONVENTION, Camera, intrinsics_from_fov
    from anyhead.samples import encode_json, encode_view, npy_bytes

    files, views = {}, []
    for i, name in enumerate(("input_000", "view_000")):
        cam = Camera(orbit_camera(i * 90.0, 0, 0.6), intrinsics_from_fov(30, 8, 8), 8, 8)
        files.update(encode_view(name, rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), rng.random((8, 8)),
                                 rng.random((8, 8)).astype(np.float32), np.zeros((8, 8, 3), np.float32)))
        views.append({"name": name, "role": "input" if i == 0 else "target", "yaw": i * 90.0, "pitch": 0.0, **cam.to_dict()})
    files["cameras.json"] = encode_json({"convention": CONVENTION, "views": views})
    files["points.npy"] = npy_bytes(rng.random((10, 6)).astype(np.float32))
    files["meta.json"] = encode_json({"identity_id": ident or f"id-{key}", "spec": {}})
    return files


@pytest.fixture()
def shard_dir(tmp_path, monkeypatch):
    from anyhead.shards import write_shards

    monkeypatch.setenv("ANYHEAD_SHARD_STAMPS", str(tmp_path / "stamps"))
    rng = np.random.default_rng(0)
    data = {f"s{i:03d}": _sample(f"s{i:03d}", rng) for i in range(4)}
    write_shards([(k, lambda k=k: data[k]) for k in sorted(data)], tmp_path / "test", "test", 2)
    return tmp_path / "test"


def _rewrite_member(tar_path, member: str, edit) -> None:
    """Replace one member's bytes in place, the way a careless (or malicious) edit would."""
    import io
    import tarfile

    with tarfile.open(tar_path) as t:
        items = [(m.name, t.extractfile(m).read()) for m in t if m.isfile()]
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in items:
            data = edit(data) if name == member else data
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            t.addfile(info, io.BytesIO(data))


def _moved_points(b: bytes) -> bytes:
    import io

    from anyhead.samples import npy_bytes

    p = np.load(io.BytesIO(b))
    p[:, :3] += 0.01
    return npy_bytes(p)


def _edited_camera(b: bytes) -> bytes:
    import json

    cams = json.loads(b)
    cams["views"][1]["w2c"][0][3] += 0.005
    return json.dumps(cams, sort_keys=True).encode()


@pytest.mark.parametrize("member, edit", [("s002.points.npy", _moved_points), ("s003.cameras.json", _edited_camera)])
def test_tampered_shard_is_refused_with_its_name(shard_dir, member, edit):
    from anyhead.loader import ShardDataset
    from anyhead.shards import ShardError, ShardIntegrityError, verify_shard
    from recon.data import RawSamples

    bad = shard_dir / "test-000001.tar"
    verify_shard(bad)  # fine before, and stamped
    _rewrite_member(bad, member, edit)
    with pytest.raises(ShardIntegrityError) as e:
        verify_shard(bad)
    assert "test-000001.tar" in str(e.value) and e.value.member == member and member in str(e.value)
    # the trainer refuses; the streaming loader skips the shard, saying which, or raises when strict
    with pytest.raises(ShardError, match="test-000001.tar"):
        RawSamples(shard_dir)
    ds = ShardDataset(shard_dir, transform=None)
    assert [s.key for s in ds] == ["s000", "s001"]
    assert ds.skipped[0]["shard"].endswith("test-000001.tar") and ds.skipped[0]["member"] == member
    with pytest.raises(ShardIntegrityError):
        list(ShardDataset(shard_dir, transform=None, strict=True))
    # the v1 tool finds it too
    from anyhead.shards import verify_shards

    with pytest.raises(ShardIntegrityError):
        verify_shards(sorted(shard_dir.glob("*.tar")))


def test_tamper_with_restored_mtime_is_still_caught(shard_dir):
    import os

    from anyhead.shards import ShardIntegrityError, verify_shard

    bad = shard_dir / "test-000000.tar"
    verify_shard(bad)
    st = bad.stat()
    _rewrite_member(bad, "s000.points.npy", _moved_points)  # same size
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert bad.stat().st_size == st.st_size and bad.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ShardIntegrityError, match="test-000000.tar"):
        verify_shard(bad)


def test_verification_stamp_avoids_rehashing(shard_dir, monkeypatch):
    import os

    from anyhead import shards

    calls = []
    real = shards.sha256_file
    monkeypatch.setattr(shards, "sha256_file", lambda p, *a: calls.append(str(p)) or real(p, *a))
    tar = shard_dir / "test-000000.tar"
    man = shards.verify_shard(tar)
    assert man["keys"] == ["s000", "s001"] and len(calls) == 1
    for _ in range(3):
        shards.verify_shard(tar)
    from anyhead.loader import ShardDataset

    assert len(list(ShardDataset(shard_dir, transform=None))) == 4
    assert calls.count(str(tar)) == 1  # stamped: not hashed again, by verify_shard nor by the loader
    assert len(list((shard_dir.parent / "stamps").glob("*.json"))) == 2
    os.utime(tar)  # touched: verified again (and still fine)
    shards.verify_shard(tar)
    assert calls.count(str(tar)) == 2
    shards.verify_shard(tar, use_stamp=False)
    assert calls.count(str(tar)) == 3


def test_read_errors_name_shard_and_member(shard_dir):
    from anyhead.loader import ShardDataset
    from anyhead.samples import SampleError, decode_sample
    from anyhead.shards import ShardError, read_tar_samples

    tar = shard_dir / "test-000000.tar"
    _rewrite_member(tar, "s001.view_000.png", lambda b: b[:20])  # a broken PNG (verification off below)
    files = list(read_tar_samples(tar))
    with pytest.raises(SampleError, match="s001.view_000.png") as e:
        decode_sample(files[1])
    assert e.value.member == "s001.view_000.png" and isinstance(e.value, ValueError)
    ds = ShardDataset(shard_dir, transform=None, verify=False)
    assert [s.key for s in ds] == ["s000", "s002", "s003"]
    assert ds.skipped[0]["member"] == "s001.view_000.png" and ds.skipped[0]["key"] == "s001"
    with pytest.raises(ShardError, match=r"test-000000.tar \(member s001.view_000.png\)"):
        list(ShardDataset(shard_dir, transform=None, verify=False, strict=True))
    # a truncated tar: the error names the shard and the member being read
    raw = tar.read_bytes()
    tar.write_bytes(raw[:2000])
    with pytest.raises(ShardError) as e:
        list(read_tar_samples(tar))
    assert "test-000000.tar" in str(e.value) and e.value.member is not None and e.value.member.startswith("s000.")


def test_split_identities_checked_against_sample_meta(shard_dir):
    from anyhead.shards import ShardIntegrityError, check_split_identities, split_hash

    keys = ["s000", "s001", "s002", "s003"]
    splits = {"splits": {"test": {"keys": keys, "identities": [f"id-{k}" for k in keys], "hash": split_hash(keys)},
                         "train": {"keys": ["t0"], "identities": ["id-t0"], "hash": split_hash(["t0"])}}}
    good = [(k, {"identity_id": f"id-{k}"}) for k in keys]
    check_split_identities(splits, "test", good)
    leaked = good[:3] + [("s003", {"identity_id": "id-t0"})]  # a training identity in the test split
    with pytest.raises(ShardIntegrityError, match="identity id-t0 belongs to split 'train'"):
        check_split_identities(splits, "test", leaked)
    with pytest.raises(ShardIntegrityError, match="not among split 'test'"):
        check_split_identities(splits, "test", good[:3] + [("s003", {"identity_id": "someone-else"})])
    with pytest.raises(ShardIntegrityError, match="1 listed samples missing: s003"):
        check_split_identities(splits, "test", good[:3])
    with pytest.raises(ShardIntegrityError, match="not listed"):
        check_split_identities(splits, "test", good + [("x", {"identity_id": "id-s000"})])


def test_yaw_offset_cameras_orbit_the_input():
    from benchmarks.protocol import yaw_offset_cameras

    cams = yaw_offset_cameras(orbit_camera(10, 12, 0.7))
    for cam, off in zip(cams, (-30, -15, 0, 15, 30)):
        np.testing.assert_allclose(cam, orbit_camera(10 + off, 12, 0.7), atol=1e-9)
    np.testing.assert_allclose(relative_angle_deg(orbit_camera(0, 0, 1.0), yaw_offset_cameras(orbit_camera(0, 0, 1.0))),
                               [30, 15, 0, 15, 30], atol=1e-9)
    off = yaw_offset_cameras(orbit_camera(0, 0, 0.7, target=(0, 0.1, 0)), [90], center=(0, 0.1, 0))[0]
    np.testing.assert_allclose(off, orbit_camera(90, 0, 0.7, target=(0, 0.1, 0)), atol=1e-9)


def test_differences_to_the_best_method_and_label_sample():
    import pandas as pd

    from benchmarks.metrics.stats import best_method, differences_to_reference

    rng = np.random.default_rng(4)
    base = pd.DataFrame([{"key": f"h{i}", "bucket": b, "lpips": 0.3 + 0.05 * rng.normal()}
                         for i in range(12) for b in ("0-30", "90-150")])
    tables = {"a": base, "b": base.assign(lpips=base["lpips"] - 0.02), "c": base.assign(lpips=base["lpips"] + 0.01)}
    assert best_method(tables, "lpips", higher_is_better=False) == "b"
    ref, diffs = differences_to_reference(tables, "lpips", higher_is_better=False)
    assert ref == "b" and diffs["b"]["overall"].mean == 0.0
    assert diffs["a"]["0-30"].mean == pytest.approx(0.02) and diffs["c"]["90-150"].mean == pytest.approx(0.03)

    from anyhead.cameras import Camera, intrinsics_from_fov
    from anyhead.samples import Sample, View

    K = intrinsics_from_fov(30, 8, 8)
    img, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32)
    views = [View("input_000", "input", Camera(orbit_camera(20, 0, 1.0), K, 8, 8), img, mask, 20.0)] + [
        View(f"view_{i:03d}", "target", Camera(orbit_camera(y, 0, 0.65), K, 8, 8), img, mask, float(y))
        for i, y in enumerate((0, 90, 180))]
    labels = DEFAULT_PROTOCOL.label_sample(Sample("k", {}, views))
    assert [round(lb.angle_deg) for lb in labels] == [20, 70, 160]
    assert [lb.angle_bucket for lb in labels] == ["0-30", "30-90", "150-180"]


def test_library_packages_never_import_benchmarks():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for pkg in ("anyhead", "recon"):
        for f in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                offenders += [f"{f.relative_to(root)}: {n}" for n in names if n.split(".")[0] == "benchmarks"]
    assert not offenders, offenders
