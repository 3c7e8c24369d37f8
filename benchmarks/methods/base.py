"""The one interface every benchmarked method implements (nerfbaselines-style)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recon.data import input_on_white
from recon.gaussians import Gaussians


@dataclass
class Reconstruction:
    gaussians: Gaussians  # one unbatched Gaussian set in the head frame
    timings_ms: dict[str, float] = field(default_factory=dict)  # per component, if the method has components


class Method(ABC):
    """``reconstruct(sample) -> Reconstruction`` from a decoded AnyHead sample's input view."""

    name: str = ""
    learned: bool = False  # needs ``train`` (and a checkpoint) before ``reconstruct``
    description: str = ""

    def __init__(self, profile_cfg: dict[str, Any], device: str = "cpu", checkpoint: str | Path | None = None,
                 **options: Any) -> None:
        self.profile_cfg = profile_cfg
        self.device = torch.device(device)
        self.checkpoint = checkpoint
        self.options = options

    def input_tensors(self, sample: dict[str, Any], size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The input portrait on white at ``size``, its w2c and K (batch of one, on the device)."""
        inp = next(v for v in sample["views"] if v["role"] == "input")
        return tuple(t.to(self.device) for t in input_on_white(inp, size))

    @abstractmethod
    def reconstruct(self, sample: dict[str, Any]) -> Reconstruction: ...

    def train_config(self) -> dict[str, Any]:
        """The trainer config (the profile's ``train`` budget, with this method's model)."""
        raise NotImplementedError(f"{self.name} is not a learned method")

    def metadata(self) -> dict[str, Any]:
        return {"method": self.name, "learned": self.learned, "description": self.description,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None, "options": self.options}
