"""Several input portraits per head (issue 14): the input rig, samples that decode, and the trainer's choice of input."""
import json

import numpy as np
import pytest
import torch

from anyhead.render.rigs import LOOK_AT, sample_input_camera
from tests.conftest import profile_config

GPU_RIG = {"n_inputs": 4, "input_yaw": 60, "input_pitch": 25, "input_pitch_down": 25, "input_roll": 8,
           "focal_mm": [24, 135]}


def roll_of(w2c: np.ndarray) -> float:
    """Roll (degrees) of an OpenCV camera about its optical axis, relative to the world's +y up."""
    R = w2c[:3, :3]
    up = R @ np.array([0.0, -1.0, 0.0])  # world up in camera coordinates (image y points down)
    return float(np.degrees(np.arctan2(-up[0], up[1])))


def test_gpu_profile_rig_is_the_issue_s():
    r = profile_config("gpu").render
    assert r.n_inputs >= 4 and r.input_yaw == 60 and (r.input_pitch, r.input_pitch_down) == (25, 25)
    assert tuple(r.focal_mm) == (24, 135) and 0 < r.input_roll <= 10
    assert profile_config("default").render.input_roll == 0  # the CPU demo's rig is unchanged


def test_input_rig_ranges_and_roll():
    rng = np.random.default_rng(0)
    info = []
    for _ in range(400):
        cam, i = sample_input_camera(rng, 64, 60, (-25, 25), 8, (24, 135), 0.1)
        info.append(i)
        assert abs(roll_of(cam.w2c) - i["roll"]) < 1e-6  # the camera really is rolled by the recorded angle
        uv, z = cam.project(np.asarray(LOOK_AT)[None])
        assert z[0] > 0.25 and np.all(np.abs(uv[0] - 32) < 1e-6)  # the head centre stays in the middle of the frame
    for k, (lo, hi) in {"yaw": (-60, 60), "pitch": (-25, 25), "roll": (-8, 8), "focal_mm": (24, 135)}.items():
        v = np.array([i[k] for i in info])
        assert v.min() >= lo and v.max() <= hi and v.min() < lo + 0.2 * (hi - lo) and v.max() > hi - 0.2 * (hi - lo), k
    # no roll drawn: the random stream (and so the cameras) are those of a roll-free rig
    a = sample_input_camera(np.random.default_rng(1), 64, 40, (-10, 20), 0, (35, 85), 0.1)
    b = sample_input_camera(np.random.default_rng(1), 64, 40, (-10, 20), 0, (35, 85), 0.1)
    assert a[1]["roll"] == 0 and np.array_equal(a[0].w2c, b[0].w2c)


@pytest.fixture(scope="module")
def multi_shards(ict_model, tmp_path_factory):
    """Two real rendered heads with four input portraits each (the gpu profile's input rig, 32 px)."""
    from anyhead.config import replace
    from tests.conftest import render_train_shards

    tiny = profile_config("tiny")
    cfg = replace(tiny.render, {"input_res": 32, "target_res": 32, "n_targets": 5, "shadows": False, "gt_points": 300,
                                "supersample": 1, **GPU_RIG})
    return render_train_shards(ict_model, tiny.assets, cfg, tmp_path_factory.mktemp("multi_shards"), [200, 201], 2)


def test_multi_input_samples_decode(multi_shards):
    from anyhead.loader import ShardDataset
    from anyhead.samples import decode_sample
    from anyhead.shards import read_tar_samples

    files = list(read_tar_samples(next(multi_shards.glob("*.tar"))))
    assert len(files) == 2
    for f in files:
        s = decode_sample(f)
        inputs = [v for v in s.views if v.role == "input"]
        assert [v.name for v in inputs] == [f"input_{i:03d}" for i in range(4)]
        w2cs = np.stack([v.camera.w2c for v in inputs])
        assert len({w.tobytes() for w in w2cs}) == 4  # four different cameras
        records = {c["name"]: c for c in json.loads(f["cameras.json"])["views"]}  # the rig's draws, as recorded
        for v in inputs:
            c = records[v.name]
            assert v.rgb.shape == (32, 32, 3) and 0.05 < float(np.mean(v.mask)) < 0.95  # a head in frame
            assert abs(roll_of(v.camera.w2c) - c["roll"]) < 1e-4 and abs(c["roll"]) <= 8
            assert 24 <= c["focal_mm"] <= 135 and abs(c["yaw"]) <= 60 and -25 <= c["pitch"] <= 25
    sample = next(iter(ShardDataset(str(multi_shards))))
    assert sample["input_rgb"].shape[0] == 4  # the streaming loader hands over every input portrait


@pytest.mark.parametrize("source", ["device", "stream1"])
def test_cached_multi_input_batches_equal_the_decode_path(multi_shards, tmp_path, source):
    from recon.cache import DecodeBatches, DeviceBatches, StreamBatches, load_or_build

    cpu = torch.device("cpu")
    common = dict(seed=3, rank=0, world=1, batch=4, n_targets=3, input_size=24, target_size=16)
    ref = DecodeBatches(multi_shards, cpu, **common)
    cache = load_or_build(multi_shards, tmp_path / "cache")
    assert cache.inputs.shape[:2] == (2, 4) and cache.in_w2c.shape == (2, 4, 4, 4)
    new = DeviceBatches(cache, cpu, **common) if source == "device" else StreamBatches(cache, cpu, **common, start=0,
                                                                                         end=6, workers=1)
    for step in range(6):
        a, b = ref(step), new(step)
        for k in a:
            assert torch.equal(a[k], b[k]), (step, k)


def test_trainer_sees_every_input_of_a_head_across_steps(multi_shards, tmp_path):
    from recon.cache import DeviceBatches, load_or_build, pick

    cache = load_or_build(multi_shards, tmp_path / "cache")
    src = DeviceBatches(cache, torch.device("cpu"), seed=0, rank=0, world=1, batch=2, n_targets=2, input_size=16,
                        target_size=16)
    in_w2c = torch.from_numpy(np.array(cache.in_w2c)).float()
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for step in range(40):
        b = src(step)
        for w in b["w2c"]:  # which head and which of its portraits this batch row is
            head, j = map(int, torch.nonzero((in_w2c == w).flatten(2).all(-1))[0])
            seen[head].add(j)
    assert seen == {0: {0, 1, 2, 3}, 1: {0, 1, 2, 3}}
    # the choice is a pure function of (seed, step, rank): resumed runs see the same inputs
    assert all(np.array_equal(pick(2, 5, 0, s, 0, 1, 2, 2, 4)[2], pick(2, 5, 0, s, 0, 1, 2, 2, 4)[2]) for s in range(5))
    # with one input per head the draws are those of the single-input selection (samples and target views unchanged)
    one, four = pick(9, 5, 7, 3, 0, 1, 4, 2, 1), pick(9, 5, 7, 3, 0, 1, 4, 2, 4)
    assert np.array_equal(one[0], four[0]) and np.array_equal(one[1], four[1]) and not one[2].any()
