"""The build_assets and render stages on a real Dask cluster (``assets.scheduler`` / ``render.scheduler``):
a distributed scheduler with one worker process on localhost builds and renders the same heads, byte for
byte, as the in-process run, and a task that fails or kills its worker is reported naming its head."""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from anyhead.stages import Task

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler():
    """The address of a LocalCluster: one worker process, one thread. A task is retried once after its worker
    dies (allowed-failures 1; Dask's default is 3), so a task that kills every worker fails after one restart."""
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster:
            yield cluster.scheduler_address


def stage_config(root: Path, scheduler: str | None):
    """The tiny profile for two small heads under ``root`` (its own data/ tree), run in-process
    (``scheduler`` None, one worker) or on the cluster at ``scheduler``."""
    from anyhead.config import replace
    from anyhead.paths import Paths
    from tests.conftest import CACHE, profile_config

    tiny = profile_config("tiny")
    paths = Paths(root, "tiny")
    paths.ict_dir.mkdir(parents=True, exist_ok=True)
    if not paths.ict_model.exists():
        paths.ict_model.symlink_to(CACHE / "ict_model_test.npz")
    where = {"workers": 1, "scheduler": scheduler}
    return dataclasses.replace(tiny, paths=paths, assets=replace(tiny.assets, {"n_identities": 2, "texture_size": 128, **where}),
                               render=replace(tiny.render, {"input_res": 48, "target_res": 48, "n_targets": 4,
                                                            "gt_points": 500, **where}))


def tree(folder: Path) -> dict[str, object]:
    """Every file under ``folder`` by relative path: bytes, or for .npz (zip members carry a timestamp) its arrays."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            rel = p.relative_to(folder).as_posix()
            if p.suffix == ".npz":
                with np.load(p) as z:
                    out[rel] = {k: z[k] for k in z.files}
            else:
                out[rel] = p.read_bytes()
    return out


def assert_same_tree(a: Path, b: Path) -> None:
    ta, tb = tree(a), tree(b)
    assert sorted(ta) == sorted(tb)
    for k, va in ta.items():
        vb = tb[k]
        if isinstance(va, dict):
            assert sorted(va) == sorted(vb), k
            for name in va:
                np.testing.assert_array_equal(va[name], vb[name], err_msg=f"{k}:{name}")
        else:
            assert va == vb, k


@pytest.fixture(scope="module")
def in_process(ict_model, tmp_path_factory) -> Path:
    """Both stages run in-process: the reference output."""
    from pipelines.build_assets import build_assets
    from pipelines.render import render

    cfg = stage_config(tmp_path_factory.mktemp("local"), None)
    build_assets(cfg)
    render(cfg)
    return cfg.paths.data


def test_stages_on_a_dask_scheduler_match_in_process(in_process, scheduler, tmp_path):
    from pipelines.build_assets import build_assets
    from pipelines.render import render

    assert scheduler.startswith("tcp://")
    cfg = stage_config(tmp_path, scheduler)
    index = build_assets(cfg)
    assert [h["id"] for h in index] == ["head_00000", "head_00001"]
    render(cfg)
    assert_same_tree(in_process / "assets", cfg.paths.assets)
    assert_same_tree(in_process / "renders", cfg.paths.renders)  # PNGs, depth, points.npy and meta.json: byte-equal
    assert len(list(cfg.paths.renders.glob("head_*/view_*.depth.png"))) == 2 * 4


def _fail_on(victim: str, how: str, task: Task):
    """build_asset, except on ``victim``: raise (both modes) or kill the worker process (cluster only)."""
    from anyhead.build import build_asset

    if task.id == victim:
        if how == "kill":
            os._exit(3)  # the worker dies mid-task, as under the OOM killer or a lost machine
        raise RuntimeError(f"injected failure in {task.id}")
    return build_asset(task)


@pytest.mark.parametrize("mode", ["in-process", "cluster"])
def test_failed_head_is_reported_by_name(mode, scheduler, tmp_path, monkeypatch, ict_model):
    """A head whose task raises (build_assets) or whose asset is unreadable (render) stops the stage with a message
    naming that head and the error, the same in-process and on the cluster; the other head is finished and is
    skipped by the next run (resume)."""
    import pipelines.build_assets as stage_build
    from pipelines.render import render

    cfg = stage_config(tmp_path, scheduler if mode == "cluster" else None)
    monkeypatch.setattr(stage_build, "build_asset", functools.partial(_fail_on, "head_00001", "raise"))
    with pytest.raises(SystemExit, match=r"build_assets: 1 heads failed: head_00001: RuntimeError: injected failure"):
        stage_build.build_assets(cfg)
    assert (cfg.paths.assets / "head_00000" / "meta.json").exists()
    assert not (cfg.paths.assets / "head_00001").exists()
    built = (cfg.paths.assets / "head_00000" / "asset.npz").stat().st_mtime_ns
    monkeypatch.undo()
    stage_build.build_assets(cfg)  # resumes: head_00000 is kept as it is
    assert (cfg.paths.assets / "head_00000" / "asset.npz").stat().st_mtime_ns == built
    (cfg.paths.assets / "head_00000" / "asset.npz").write_bytes(b"not a zip")
    with pytest.raises(SystemExit, match=r"render: 1 heads failed: head_00000: \w+"):
        render(cfg)
    assert (cfg.paths.renders / "head_00001" / "meta.json").exists() and not (cfg.paths.renders / "head_00000").exists()


def test_killed_worker_is_reported_by_name(scheduler, tmp_path, monkeypatch, ict_model):
    """A task that kills its worker process fails with KilledWorker, reported under its head's name; the cluster
    replaces the worker and a rerun builds what is missing. Dask also blames the tasks queued on a dying worker: when
    head_00000 has not finished before head_00001 kills the worker it fails too, reported the same way."""
    import pipelines.build_assets as stage_build

    cfg = stage_config(tmp_path, scheduler)
    monkeypatch.setattr(stage_build, "build_asset", functools.partial(_fail_on, "head_00001", "kill"))
    with pytest.raises(SystemExit, match=r"build_assets: [12] heads failed: ") as e:
        stage_build.build_assets(cfg)
    msg = str(e.value)
    assert "head_00001: KilledWorker: " in msg and not (cfg.paths.assets / "head_00001").exists()
    if (cfg.paths.assets / "head_00000" / "meta.json").exists():  # the usual order: head_00000 first, then the kill
        assert msg.startswith("build_assets: 1 heads failed: head_00001: ")
    else:
        assert "head_00000: KilledWorker: " in msg
    monkeypatch.undo()
    assert [h["id"] for h in stage_build.build_assets(cfg)] == ["head_00000", "head_00001"]  # the new worker resumes
