"""Learned feed-forward methods: Any3DAvatar (and its ablations) and Splatter Image."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from recon.train import load_checkpoint

from .base import Method, Reconstruction


class LearnedMethod(Method):
    learned = True
    model_overrides: dict[str, Any] = {}

    def train_config(self) -> dict[str, Any]:
        cfg = copy.deepcopy(self.profile_cfg["train"])
        cfg["model"].update(self.model_overrides)
        return cfg

    def _model(self):
        if not hasattr(self, "_m"):
            if self.checkpoint is None or not Path(self.checkpoint).exists():
                raise FileNotFoundError(f"{self.name}: checkpoint {self.checkpoint} not found; train it first "
                                        f"(`dvc repro train@{self.name}` or `python -m benchmarks.train --method {self.name}`)"
                                        " or pass --checkpoint")
            m, ck = load_checkpoint(self.checkpoint, map_location="cpu")  # built on CPU, then moved
            self._m, self._step = m.to(self.device).eval(), ck["step"]
        return self._m

    def reconstruct(self, sample: dict[str, Any]) -> Reconstruction:
        m = self._model()
        image, w2c, K = self.input_tensors(sample, m.cfg.image_size)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            g = m.reconstruct(image, w2c, K)
        return Reconstruction(g[0].to(self.device))

    def metadata(self) -> dict[str, Any]:
        md = super().metadata()
        md["model"] = self.train_config()["model"]
        if hasattr(self, "_step"):
            md["trained_steps"] = self._step
        return md


class Any3DAvatarMethod(LearnedMethod):
    name = "any3davatar"
    description = "Any3DAvatar: Plücker-aware scaffold, one-step denoising, auxiliary appearance head"


def ablation(name: str, overrides: dict[str, Any], text: str) -> type[LearnedMethod]:
    return type(f"Ablation_{name}", (Any3DAvatarMethod,), {"name": name, "model_overrides": overrides,
                                                            "description": f"Any3DAvatar ablation: {text}"})


class SplatterImageMethod(LearnedMethod):
    name = "splatter-image"
    description = "Splatter Image (Szymanowicz et al. 2024): pixel-aligned Gaussians from a U-Net"

    def train_config(self) -> dict[str, Any]:
        cfg = copy.deepcopy(self.profile_cfg["train"])
        size = cfg["model"]["image_size"]
        cfg["model"] = {"arch": "splatter_image", "image_size": size, **self.profile_cfg.get("splatter_image", {})}
        return cfg
