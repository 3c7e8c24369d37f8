"""Shared stage plumbing: argument parsing, logging, and the one parse of the profile."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from anyhead.config import ConfigError
from anyhead.io import LockHeld, profile_lock
from recon.config import ProfileConfig, load_config


def stage_args(description: str) -> tuple[argparse.Namespace, ProfileConfig]:
    """Parse ``--profile``/``--params`` and the whole profile (every section is validated, so a bad
    key anywhere stops the first stage before it does any work), then take the profile's build lock
    (``data/<profile>/.lock``, held until the stage exits): a second build of the same profile stops here,
    naming the first one's pid, instead of deleting its temporary files as a killed run's leftovers."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--profile", default=None, help="params.yaml profile (tiny, default, gpu)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(args.params, args.profile)
    except ConfigError as e:
        raise SystemExit(f"{args.params}: {e}") from None
    try:
        profile_lock(cfg.paths.lock)
    except LockHeld as e:
        raise SystemExit(str(e)) from None
    return args, cfg


def read_index(path: str | Path, producer: str) -> list[dict[str, Any]]:
    """The index.json a previous stage wrote, or a clear exit naming the stage to run first."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"{path}: missing; run the {producer} stage first")
    return json.loads(path.read_text())
