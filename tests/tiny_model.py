"""A tiny randomly initialised Any3DAvatar checkpoint for the inference and demo tests (no weights exist yet)."""
from pathlib import Path

import torch

MODEL = {"image_size": 32, "patch": 8, "dim": 32, "heads": 2, "enc_depth": 1, "den_depth": 1, "n_anchors": 128,
         "gaussians_per_anchor": 2, "t_star": 0.5, "aux_res": 16, "aux_patch": 8}


def write_tiny_checkpoint(path: Path) -> Path:
    from recon.any3davatar.model import Any3DAvatar, ModelConfig
    from recon.any3davatar.scaffold import sphere_scaffold

    torch.manual_seed(0)
    anchors, normals = sphere_scaffold(MODEL["n_anchors"], radius=0.09)
    model = Any3DAvatar(ModelConfig.from_dict(MODEL), torch.as_tensor(anchors), torch.as_tensor(normals))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "step": 0, "model_cfg": model.cfg.to_dict(), "train_cfg": {}}, path)
    return path
