"""Robust ingestion and build hygiene (issue 14): photo keys, bad photos skipped, orphan temporaries, the build lock."""
import json
import logging
import os
import subprocess
import sys
import tarfile
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from anyhead.config import PhotosConfig
from anyhead.io import LockHeld, profile_lock, release_lock, source_key
from anyhead.photos import photo_sources, write_photo_split
from anyhead.shards import KEY_MAX, check_key, read_tar_samples, verify, write_shards
from anyhead.stages import Task, plan, temp_folder, write_folder

LONG = "a" * 40 + ".b" * 20 + "-portrait of someone"  # 100 characters of name before the suffix


def test_keys_are_sanitised_unique_bounded_and_stable():
    names = ["my.portrait.png", "john.doe.jpg", "astro.png", "astro.jpg", LONG + ".png", "sub dir/Ünïcode ☃.PNG",
             ".hidden.png", "a/b.png", "a-b.png"]
    keys = [source_key("photo_", n) for n in names]
    assert len(set(keys)) == len(keys)  # astro.png / astro.jpg and a/b / a-b do not collide
    for k in keys:
        assert check_key(k) == k and "." not in k and len(k) <= len("photo_") + 40 + 7 <= KEY_MAX
    assert keys[0].startswith("photo_my-portrait_") and keys[1].startswith("photo_john-doe_")
    assert keys == [source_key("photo_", n) for n in names]  # stable: a pure function of the relative path
    with pytest.raises(ValueError, match="no dots"):
        check_key("photo_my.portrait")


def _astro_jpeg(path):
    from skimage import data

    Image.fromarray(data.astronaut()).save(path, quality=90)


def test_dotted_duplicate_long_and_bad_photos(tmp_path, caplog):
    folder = tmp_path / "portraits"
    (folder / "sub").mkdir(parents=True)
    _astro_jpeg(folder / "my.portrait.png")
    _astro_jpeg(folder / "astro.png")
    _astro_jpeg(folder / "astro.jpg")
    _astro_jpeg(folder / (LONG + ".jpg"))
    _astro_jpeg(folder / "sub" / "john.doe.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(folder / "no face.png")
    (folder / "notes.txt").write_text("not a photo")
    cfg = PhotosConfig(builtin_astronaut=False, dirs=(str(folder),), res=32, background="keep")

    sources = photo_sources(cfg)
    assert len(sources) == 7 and len({s.key for s in sources}) == 7
    assert [s.key for s in photo_sources(cfg)] == [s.key for s in sources]  # stable across calls

    caplog.set_level(logging.WARNING)
    entry = write_photo_split(cfg, tmp_path / "shards" / "photos", per_shard=3)
    skipped = {s["source"].rsplit("/", 1)[-1]: s["reason"] for s in entry["skipped"]}
    assert set(skipped) == {"broken.jpg", "no face.png"}
    assert "unreadable image" in skipped["broken.jpg"] and "no face found" in skipped["no face.png"]
    for name in skipped:  # the log names the file and the reason
        assert any(name in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    assert len(entry["keys"]) == 5 and set(entry["sources"]) == set(entry["keys"])

    # the tars read back with the right keys (webdataset splits member names at the first dot), in USTAR
    shard_dir = tmp_path / "shards" / "photos"
    got = {}
    for tar in sorted(shard_dir.glob("*.tar")):
        with tarfile.open(tar) as t:
            assert all(len(m.name) <= 100 for m in t)
        for s in read_tar_samples(tar):
            got[s["__key__"]] = s
    assert sorted(got) == sorted(entry["keys"])
    for key, s in got.items():
        assert json.loads(s["meta.json"])["asset_id"] == key and "input_000.png" in s
    splits = {"splits": {"photos": entry}}
    (tmp_path / "shards" / "splits.json").write_text(json.dumps(splits))
    assert verify(tmp_path / "shards") == []

    # a rerun under the same plan redoes nothing, not even the failed photos
    stamps = {p.name: p.stat().st_mtime_ns for p in shard_dir.iterdir()}
    caplog.clear()
    again = write_photo_split(cfg, shard_dir, per_shard=3)
    assert again == entry and {p.name: p.stat().st_mtime_ns for p in shard_dir.iterdir()} == stamps


def test_duplicate_names_across_folders_stay_unique(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.png").write_bytes(b"")
    cfg = PhotosConfig(builtin_astronaut=True, dirs=(str(tmp_path / "a"), str(tmp_path / "b")), res=32, background="keep")
    keys = [s.key for s in photo_sources(cfg)]
    assert keys[0] == "photo_astronaut" and len(set(keys)) == 3


def test_write_shards_refuses_bad_and_duplicate_keys(tmp_path):
    with pytest.raises(ValueError, match="no dots"):
        write_shards([("a.b", dict)], tmp_path, "x", 2)
    with pytest.raises(ValueError, match="1-64 characters"):
        write_shards([("k" * 65, dict)], tmp_path, "x", 2)
    with pytest.raises(ValueError, match="duplicate sample keys"):
        write_shards([("k", dict), ("k", dict)], tmp_path, "x", 2)


# -- orphan temporaries and the build lock -----------------------------------------------------


def test_orphan_temporaries_of_a_killed_run_are_removed(tmp_path, caplog):
    root = tmp_path / "renders"
    tasks = [Task(f"h{i}", root / f"h{i}", "hash") for i in range(2)]
    write_folder(tasks[0].out, {"a.txt": b"x"}, {"plan_hash": "hash"})
    # what a run killed mid-write leaves: a temporary folder (stages.temp_folder) and temporary files (io.atomic_path)
    orphan_dir = temp_folder(tasks[1].out)
    (orphan_dir / "view_000.png").write_bytes(b"partial")
    (root / ".index.tmp-999999.json").write_text("{")
    (root / ".keep").mkdir()  # a hidden folder that is not ours is left alone
    caplog.set_level(logging.INFO)
    todo = plan(root, tasks, "render")
    assert [t.id for t in todo] == ["h1"]
    assert sorted(p.name for p in root.iterdir()) == [".keep", "h0"]
    assert sum("leftover temporary" in r.getMessage() for r in caplog.records) == 2

    shards = tmp_path / "shards" / "train"
    shards.mkdir(parents=True)
    (shards / ".train-000000.tmp-999999.tar").write_bytes(b"partial")
    write_shards([("s0", lambda: {"x.txt": b"1"})], shards, "train", 1)
    assert sorted(p.name for p in shards.iterdir()) == ["train-000000.json", "train-000000.tar"]


HOLDER = textwrap.dedent("""
    import sys, time
    from anyhead.io import profile_lock
    profile_lock(sys.argv[1])
    print("locked", flush=True)
    time.sleep(60)
""")


def _hold(path):
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_stops_a_second_build_and_names_the_holder(tmp_path):
    lock = tmp_path / "data" / "tiny" / ".lock"
    proc = _hold(lock)
    try:
        t0 = time.monotonic()
        with pytest.raises(LockHeld, match=rf"another build of this profile is running \(pid {proc.pid}\)"):
            profile_lock(lock)
        assert time.monotonic() - t0 < 1  # fails fast, does not wait
    finally:
        proc.kill()
        proc.wait()
    # the kernel released the killed holder's lock: a stale lock file does not block the next build
    assert profile_lock(lock) == lock and profile_lock(lock) == lock  # re-entrant within one process
    release_lock(lock)


def test_every_stage_takes_the_profile_lock(tmp_path, monkeypatch):
    """pipelines/common.stage_args (the start of every pipelines/ stage) refuses to run beside another build."""
    import shutil

    from pipelines.common import stage_args

    shutil.copy("params.yaml", tmp_path / "params.yaml")
    lock = tmp_path / "data" / "tiny" / ".lock"
    proc = _hold(lock)
    monkeypatch.setattr(sys, "argv", ["shards", "--profile", "tiny", "--params", str(tmp_path / "params.yaml")])
    try:
        with pytest.raises(SystemExit, match=rf"\.lock: another build .*pid {proc.pid}"):
            stage_args("test")
    finally:
        proc.kill()
        proc.wait()
    _, cfg = stage_args("test")
    assert cfg.paths.lock == lock
    release_lock(lock)
    for stage in ("build_assets", "dataset_card", "fetch_assets", "render", "shards"):
        assert "stage_args(" in open(f"pipelines/{stage}.py").read()


def test_a_bad_scan_is_skipped_not_the_stage(tmp_path, monkeypatch, caplog):
    """build_assets over scans named with dots, one of them broken: the good ones are built, the broken one is
    named in a warning and left out of the index."""
    import shutil

    import yaml

    from pipelines import build_assets
    from tests.test_scans import _textured_sphere

    scans = tmp_path / "scans"
    scans.mkdir()
    _textured_sphere(0.11).export(scans / "john.doe.obj")
    _textured_sphere(0.11).export(scans / "john.doe.ply")  # same stem, other format: a different key
    (scans / "broken.scan.obj").write_text("this is not an obj\n")
    params = yaml.safe_load(open("params.yaml"))
    params["profiles"]["tiny"]["assets"].update(n_identities=0, scans_dir=str(scans), scan_options={"units": "m"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(sys, "argv", ["build_assets", "--profile", "tiny", "--params", str(tmp_path / "params.yaml")])
    caplog.set_level(logging.WARNING)
    try:
        build_assets.main()
    finally:
        release_lock(tmp_path / "data" / "tiny" / ".lock")
    index = json.loads((tmp_path / "data/tiny/assets/index.json").read_text())
    ids = sorted(h["id"] for h in index)
    assert len(ids) == 2 and all(i.startswith("scan_john-doe_") and check_key(i) for i in ids)
    assert any("broken.scan.obj" in r.getMessage() and "skipping scan" in r.getMessage() for r in caplog.records)
    shutil.rmtree(tmp_path / "data")
