"""Shared fixtures. The ICT model comes from ../shared/ict-facekit (as in CI), extracted once into
.cache/ (git-ignored) under a file lock so parallel pytest workers share it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
ICT_ARCHIVE = Path(os.environ.get("ANYHEAD_ICT_ARCHIVE", ROOT.parent / "shared/ict-facekit/ICT-FaceKit-da5f95a.tar.gz"))
CACHE = ROOT / ".cache"
# shard verification stamps of test runs stay in the git-ignored cache, not in ~/.cache
os.environ.setdefault("ANYHEAD_SHARD_STAMPS", str(CACHE / "shard-stamps"))

# pytest-xdist already runs one worker per core: more threads per worker only oversubscribe CI's 2 cores
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)


def profile_config(name: str = "tiny"):
    """A profile of the repository's params.yaml, parsed (tests derive their configs from it)."""
    from recon.config import load_config

    return load_config(ROOT / "params.yaml", name, root=ROOT)


@pytest.fixture(scope="session")
def tiny_cfg():
    return profile_config("tiny")


@pytest.fixture(scope="session")
def ict_root() -> Path:
    from anyhead import ict

    if not ICT_ARCHIVE.exists():
        pytest.fail(f"{ICT_ARCHIVE}: ICT FaceKit archive missing (CI expects ../shared beside the clone)")
    CACHE.mkdir(exist_ok=True)
    with FileLock(str(CACHE / "ict.lock")):
        return ict.extract_archive(ICT_ARCHIVE, CACHE)


@pytest.fixture(scope="session")
def ict_model(ict_root: Path):
    from anyhead import ict

    npz = CACHE / "ict_model_test.npz"
    with FileLock(str(CACHE / "ict_model.lock")):
        if not npz.exists():
            ict.ICTModel.from_folder(ict_root).save(npz)
    return ict.ICTModel.load(npz)


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def render_train_shards(ict_model, assets_cfg, render_cfg, root: Path, head_seeds: list[int], per_shard: int) -> Path:
    """Real rendered heads (one per seed) packed into training shards under ``root/train``, through the
    production stages' code (head build, render worker, shard writer)."""
    from anyhead.heads import HeadSpec, build_head
    from anyhead.render.folder import render_head
    from anyhead.samples import read_folder
    from anyhead.shards import write_shards
    from anyhead.stages import Task

    samples = []
    for i, seed in enumerate(head_seeds):
        asset = build_head(ict_model, HeadSpec.sample(ict_model, seed, assets_cfg), 128)
        asset.save(root / "assets" / f"h{i}")
        folder = root / "renders" / f"h{i}"
        render_head(Task(f"h{i}", folder, "test", {"asset": str(root / "assets" / f"h{i}"), "cfg": render_cfg, "seed": i}))
        samples.append((f"h{i}", lambda folder=folder: read_folder(folder)))
    write_shards(samples, root / "train", "train", per_shard)
    return root / "train"


@pytest.fixture(scope="session")
def tiny_shards(ict_model, tiny_cfg, tmp_path_factory) -> Path:
    """Two real rendered heads (32 px, 6 targets) in one training shard each."""
    from anyhead.config import replace

    cfg = replace(tiny_cfg.render, {"input_res": 32, "target_res": 32, "n_targets": 6, "shadows": False, "gt_points": 500,
                                    "input_yaw": 30, "input_pitch": 15, "focal_mm": [50, 50], "distance_jitter": 0.0,
                                    "target_pitch": [-10, 30]})
    return render_train_shards(ict_model, tiny_cfg.assets, cfg, tmp_path_factory.mktemp("tiny_shards"), [100, 101], 1)
