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
