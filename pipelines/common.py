"""Shared stage plumbing: argument parsing, logging and profile loading."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from anyhead.config import load_params


def stage_args(description: str) -> tuple[argparse.Namespace, str, dict[str, Any], dict[str, Any]]:
    """Parse ``--profile``/``--params``; return (args, profile name, profile dict, whole params)."""
    import yaml

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--profile", default=None, help="params.yaml profile (tiny, default, gpu)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    name, prof = load_params(args.params, args.profile)
    with open(args.params) as f:
        everything = yaml.safe_load(f)
    return args, name, prof, everything


def read_index(path: str | Path, producer: str) -> list[dict[str, Any]]:
    """The index.json a previous stage wrote, or a clear exit naming the stage to run first."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"{path}: missing; run the {producer} stage first")
    return json.loads(path.read_text())
