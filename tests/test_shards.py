import io
import json
import os

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from anyhead.cameras import CONVENTION, Camera, intrinsics_from_fov, orbit_camera
from anyhead.io import write_json
from anyhead.loader import ShardDataset
from anyhead.samples import encode_json, encode_view, npy_bytes
from anyhead.shards import assign_splits, split_hash, verify, write_shards


def fake_sample(key, rng, n_views=3, res=16):
    files = {}
    views = []
    for i in range(n_views):
        name = "input_000" if i == 0 else f"view_{i - 1:03d}"
        cam = Camera(orbit_camera(i * 120.0, 0, 0.6), intrinsics_from_fov(30, res, res), res, res)
        files.update(encode_view(name, rng.integers(0, 255, (res, res, 3), dtype=np.uint8), rng.random((res, res)),
                                 rng.random((res, res)).astype(np.float32), np.zeros((res, res, 3), np.float32)))
        views.append({"name": name, "role": "input" if i == 0 else "target", "yaw": i * 120.0, "pitch": 0.0, **cam.to_dict()})
    files["cameras.json"] = encode_json({"convention": CONVENTION, "views": views})
    files["points.npy"] = npy_bytes(rng.random((10, 6)).astype(np.float32))
    files["meta.json"] = encode_json({"identity_id": key, "spec": {}})
    return files


def make_split(tmp_path, n=7, per_shard=2, on_shard=None, loader_hook=None):
    rng = np.random.default_rng(0)
    data = {f"s{i:03d}": fake_sample(f"s{i:03d}", rng) for i in range(n)}

    def loader(k):
        def load():
            if loader_hook:
                loader_hook(k)
            return data[k]
        return load

    keys = sorted(data)
    mans = write_shards([(k, loader(k)) for k in keys], tmp_path / "train", "train", per_shard, on_shard)
    write_json(tmp_path / "splits.json", {"convention": CONVENTION, "splits": {
        "train": {"keys": keys, "identities": keys, "hash": split_hash(keys), "shards": [m["shard"] for m in mans]}}})
    return data, mans


def test_splits_are_identity_disjoint_and_stable():
    ids = [f"id{i}" for i in range(50)]
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert set(a) == set(ids)
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 40, "val": 5, "test": 5}
    assert a == assign_splits(list(reversed(ids)), {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    tiny = assign_splits(["a", "b", "c"], {"train": 0.9, "val": 0.05, "test": 0.05})
    assert sorted(tiny.values()) == ["test", "train", "val"]  # every split gets someone
    assert split_hash(["b", "a"]) == split_hash(["a", "b"])


def test_train_only_identities_leave_the_other_splits_unchanged():
    """A release run adds fresh train-only heads: val and test (and their hashes) must not move."""
    fr = {"train": 0.8, "val": 0.1, "test": 0.1}
    ids = [f"head_{i:05d}" for i in range(50)]
    extra = {f"train_s7_{i:05d}": "train" for i in range(30)}
    base = assign_splits(ids, fr, seed=0)
    more = assign_splits(ids + list(extra), fr, seed=0, fixed=extra)
    assert {k: more[k] for k in ids} == base
    assert all(more[k] == "train" for k in extra)
    for split in ("val", "test"):
        assert split_hash([k for k, s in more.items() if s == split]) == split_hash([k for k, s in base.items() if s == split])
    with pytest.raises(ValueError, match="holdout"):
        assign_splits(ids, fr, fixed={"x": "holdout"})


def test_round_trip_and_webdataset_compat(tmp_path):
    data, mans = make_split(tmp_path)
    assert [m["count"] for m in mans] == [2, 2, 2, 1]
    got = list(ShardDataset(tmp_path / "train", transform=None))
    assert [g.key for g in got] == sorted(data)
    v = got[0].views[1]
    ref = np.asarray(Image.open(io.BytesIO(data["s000"]["view_000.png"])))
    assert np.array_equal(v.rgb, ref) and v.camera.width == 16
    assert np.allclose(got[0].points, np.load(io.BytesIO(data["s000"]["points.npy"])))
    tens = next(iter(ShardDataset(tmp_path / "train")))
    assert tens["target_rgb"].shape == (2, 3, 16, 16) and tens["input_w2c"].shape == (1, 4, 4)
    # the standard webdataset reader sees the same samples and files
    ds = wds.WebDataset(str(tmp_path / "train" / "train-{000000..000003}.tar"), shardshuffle=False)
    first = next(iter(ds))
    assert first["__key__"] == "s000" and "view_000.mask.png" in first and "cameras.json" in first
    assert verify(tmp_path) == []


def test_resume_after_crash_keeps_finished_shards(tmp_path):
    class Crash(Exception):
        pass

    def crash_after_first(i):
        if i == 0:
            raise Crash

    with pytest.raises(Crash):
        make_split(tmp_path, on_shard=crash_after_first)
    first = tmp_path / "train" / "train-000000.tar"
    stamp = first.stat().st_mtime_ns

    # a crash in the middle of writing shard 1 leaves no partial file behind
    def die_on_s003(k):
        if k == "s003":
            raise Crash

    with pytest.raises(Crash):
        make_split(tmp_path, loader_hook=die_on_s003)
    assert not (tmp_path / "train" / "train-000001.tar").exists()
    assert not [p for p in (tmp_path / "train").iterdir() if ".tmp-" in p.name]

    loaded = []
    make_split(tmp_path, loader_hook=loaded.append)
    assert first.stat().st_mtime_ns == stamp  # finished work is neither redone nor lost
    assert "s000" not in loaded and "s002" in loaded
    assert verify(tmp_path) == []


def test_corrupt_shard_is_skipped_and_logged(tmp_path, caplog):
    make_split(tmp_path)
    bad = tmp_path / "train" / "train-000001.tar"
    raw = bytearray(bad.read_bytes())
    raw[600:4000] = os.urandom(3400)  # smash headers and data of the first member(s)
    bad.write_bytes(bytes(raw[: len(raw) // 2]))
    ds = ShardDataset(tmp_path / "train", transform=None)
    keys = [s.key for s in ds]
    assert {"s000", "s001", "s004", "s005", "s006"} <= set(keys)
    assert ds.skipped and all(r["shard"].endswith("train-000001.tar") for r in ds.skipped)
    assert "train-000001.tar" in caplog.text
    problems = verify(tmp_path)
    assert any("train-000001.tar" in p for p in problems)


def test_split_by_node_and_worker(tmp_path, monkeypatch):
    make_split(tmp_path, n=8, per_shard=1)
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        seen.append({s.key for s in ShardDataset(tmp_path / "train", transform=None)})
    assert seen[0].isdisjoint(seen[1]) and len(seen[0] | seen[1]) == 8
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    import torch

    dl = torch.utils.data.DataLoader(ShardDataset(tmp_path / "train", transform=lambda s: s.key), num_workers=2,
                                     batch_size=None)
    keys = list(dl)
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 8


def test_other_convention_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    s = fake_sample("x", rng)
    cams = json.loads(s["cameras.json"])
    cams["convention"] = {"camera": "opengl"}
    s["cameras.json"] = encode_json(cams)
    write_shards([("x", lambda: s)], tmp_path / "train", "train", 1)
    ds = ShardDataset(tmp_path / "train", transform=None)
    assert list(ds) == [] and "convention" in ds.skipped[0]["error"]


def test_train_only_asset_tasks_are_new_heads_and_leave_the_others_untouched(tmp_path):
    from anyhead.build import asset_tasks
    from anyhead.config import ConfigError, replace
    from recon.config import load_config

    cfg = load_config("params.yaml", "tiny").assets
    base = asset_tasks(cfg, tmp_path, tmp_path / "ict.npz")
    more = asset_tasks(replace(cfg, {"train_only_identities": 3, "train_only_seed": 5}), tmp_path, tmp_path / "ict.npz")
    assert [(t.id, t.hash) for t in more[:len(base)]] == [(t.id, t.hash) for t in base]  # nothing re-renders
    extra = more[len(base):]
    assert [t.id for t in extra] == ["train_s5_00000", "train_s5_00001", "train_s5_00002"]
    assert all(t.payload["fixed_split"] == "train" for t in extra)
    assert not {t.payload["seed"] for t in extra} & {t.payload["seed"] for t in base}
    with pytest.raises(ConfigError, match="train_only_seed"):
        replace(cfg, {"train_only_identities": 3, "train_only_seed": cfg.seed})
