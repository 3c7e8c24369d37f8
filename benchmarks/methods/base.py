"""The one interface every benchmarked method implements (nerfbaselines-style): a typed spec in the
registry, and a :class:`Method` built from it that turns one sample's input view into Gaussians."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from anyhead.config import replace, to_dict
from anyhead.samples import Sample
from recon.config import ArchConfig, ProfileConfig
from recon.data import input_on_white
from recon.gaussians import Gaussians


@dataclass
class Reconstruction:
    gaussians: Gaussians  # one unbatched Gaussian set in the head frame
    timings_ms: dict[str, float] = field(default_factory=dict)  # per component, if the method has components


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, what it is, how it is built, and (if learned) which model
    section of the profile it trains with which overrides."""

    name: str
    description: str
    factory: Callable[..., "Method"]
    arch: str | None = None  # profile section of the model config (learned methods)
    overrides: dict[str, Any] = field(default_factory=dict)  # model config changes (ablations)

    @property
    def learned(self) -> bool:
        return self.arch is not None

    def model_config(self, cfg: ProfileConfig) -> ArchConfig:
        """The model config this method trains and evaluates: the profile's section plus overrides."""
        if self.arch is None:
            raise ValueError(f"{self.name} is not a learned method")
        return replace(getattr(cfg, self.arch), self.overrides, f"{self.name} (overrides of {self.arch})")

    def build(self, cfg: ProfileConfig, device: str = "cpu", checkpoint: str | Path | None = None) -> "Method":
        return self.factory(self, cfg, device, checkpoint)


class Method(ABC):
    """``reconstruct(sample) -> Reconstruction`` from a decoded AnyHead sample's input view."""

    def __init__(self, spec: MethodSpec, cfg: ProfileConfig, device: str = "cpu",
                 checkpoint: str | Path | None = None) -> None:
        self.spec = spec
        self.cfg = cfg
        self.device = torch.device(device)
        self.checkpoint = checkpoint

    @property
    def name(self) -> str:
        return self.spec.name

    def input_tensors(self, sample: Sample, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The input portrait on white at ``size``, its w2c and K (batch of one, on the device)."""
        inp = next(v for v in sample.views if v.role == "input")
        return tuple(t.to(self.device) for t in input_on_white(inp, size))

    @abstractmethod
    def prepare(self, sample: Sample) -> tuple[torch.Tensor, ...]:
        """Host-side preprocessing: the sample's input view as device tensors (timed apart from ``run``)."""

    @abstractmethod
    def run(self, inputs: tuple[torch.Tensor, ...]) -> Gaussians:
        """The reconstruction itself on prepared inputs (what the benchmark's timing measures)."""

    def reconstruct(self, sample: Sample) -> Reconstruction:
        return Reconstruction(self.run(self.prepare(sample)))

    def metadata(self) -> dict[str, Any]:
        md = {"method": self.name, "learned": self.spec.learned, "description": self.spec.description,
              "checkpoint": str(self.checkpoint) if self.checkpoint else None}
        if self.spec.learned:
            md["model"] = to_dict(self.spec.model_config(self.cfg))
        return md
