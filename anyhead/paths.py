"""Every path the project reads or writes, derived in one place from the repository root and a profile.

``dvc.yaml`` spells the same paths with ``${profile}``; ``tests/test_config.py`` checks that each data
path declared there is one of these, so the two cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """``Paths(root, profile)``: the layout under ``root/data``."""

    root: Path
    profile: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # shared by all profiles
    @property
    def ict_dir(self) -> Path:
        return self.root / "data" / "ict"

    @property
    def ict_model(self) -> Path:
        """The compact ICT FaceKit model written by ``fetch_assets``."""
        return self.ict_dir / "ict_model.npz"

    @property
    def ict_source(self) -> Path:
        return self.ict_dir / "source.json"

    @property
    def weights(self) -> Path:
        """Released model weights (tracked in git)."""
        return self.root / "weights"

    # per profile
    @property
    def data(self) -> Path:
        return self.root / "data" / self.profile

    @property
    def lock(self) -> Path:
        """The build lock every pipelines/ stage of this profile holds while it runs."""
        return self.data / ".lock"

    @property
    def assets(self) -> Path:
        return self.data / "assets"

    @property
    def renders(self) -> Path:
        return self.data / "renders"

    @property
    def captures(self) -> Path:
        """Calibrated multi-view captures normalised into samples (one folder per subject, as renders/)."""
        return self.data / "captures"

    @property
    def shards(self) -> Path:
        return self.data / "shards"

    @property
    def splits_manifest(self) -> Path:
        return self.shards / "splits.json"

    def split(self, name: str) -> Path:
        return self.shards / name

    def cache(self, split: str) -> Path:
        """The decoded training cache of a split (recon.cache; rebuilt when the shards change)."""
        return self.data / "cache" / split

    @property
    def card(self) -> Path:
        return self.data / "card"

    def train_dir(self, method: str) -> Path:
        return self.data / "train" / method

    def checkpoint(self, method: str) -> Path:
        """The weights file of a trained method (see :mod:`recon.checkpoints`)."""
        return self.train_dir(method) / "model.safetensors"

    @property
    def eval(self) -> Path:
        return self.data / "eval"

    def eval_dir(self, method: str) -> Path:
        return self.eval / method

    @property
    def leaderboard(self) -> Path:
        return self.data / "leaderboard"
