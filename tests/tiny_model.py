"""A tiny randomly initialised Any3DAvatar checkpoint for the inference and demo tests."""
from pathlib import Path

import torch

from anyhead.config import replace

MODEL = {"image_size": 32, "patch": 8, "dim": 32, "heads": 2, "enc_depth": 1, "den_depth": 1, "n_anchors": 128,
         "gaussians_per_anchor": 2, "t_star": 0.5, "aux_res": 16, "aux_patch": 8}


def write_tiny_checkpoint(path: Path) -> Path:
    """A ``model.safetensors``-format file at ``path`` (any name ending in .safetensors)."""
    from recon.any3davatar.scaffold import sphere_scaffold
    from recon.checkpoints import build_model, save_checkpoint
    from tests.conftest import profile_config

    torch.manual_seed(0)
    cfg = replace(profile_config("tiny").any3davatar, MODEL)
    model = build_model(cfg, anchors=sphere_scaffold(MODEL["n_anchors"], radius=0.09))
    path.parent.mkdir(parents=True, exist_ok=True)
    written = save_checkpoint(path.parent, model, step=0, extra={"method": "any3davatar"})
    if written != path:
        written.replace(path)
    return path
