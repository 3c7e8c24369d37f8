"""Named profiles from ``params.yaml`` (``tiny`` for tests/CI, ``default`` CPU demo, ``gpu``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("tiny", "default", "gpu")


def load_params(path: str | os.PathLike[str] = "params.yaml", profile: str | None = None) -> tuple[str, dict[str, Any]]:
    """Return ``(profile_name, profile_dict)``.

    The profile is, in order: the argument, ``$ANYHEAD_PROFILE``, then ``profile:`` in the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: params file not found (run from the repository root)")
    with open(path) as f:
        params = yaml.safe_load(f)
    name = profile or os.environ.get("ANYHEAD_PROFILE") or params.get("profile", "default")
    profiles = params.get("profiles", {})
    if name not in profiles:
        raise KeyError(f"{path}: no profile {name!r}; known: {sorted(profiles)}")
    return name, profiles[name]
