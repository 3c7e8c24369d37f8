"""Learned feed-forward methods (Any3DAvatar, its ablations, Splatter Image): a checkpoint in, one
forward pass per sample. A training run's checkpoint must hold exactly the model this method trains
with the profile's config; a release (recon.release) carries its own config and is used as it is."""
from __future__ import annotations

from typing import Any

import torch

from anyhead.samples import Sample
from recon.checkpoints import CheckpointError, load_model, read_record
from recon.gaussians import Gaussians

from .base import Method


class LearnedMethod(Method):
    def _model(self) -> torch.nn.Module:
        if not hasattr(self, "_m"):
            if self.checkpoint is None:
                raise FileNotFoundError(f"{self.name}: no checkpoint given")
            # built on CPU, then moved; a checkpoint of another method or config is refused here
            expect = None if read_record(self.checkpoint).get("release") else self.spec.model_config(self.cfg)
            m, record = load_model(self.checkpoint, "cpu", expect=expect)
            if record.get("method") not in (None, self.name):
                raise CheckpointError(f"{self.checkpoint}: holds method {record['method']!r}, not {self.name!r}")
            self._m, self._record = m.to(self.device).eval(), record
        return self._m

    def prepare(self, sample: Sample) -> tuple[torch.Tensor, ...]:
        return self.input_tensors(sample, self._model().cfg.image_size)

    def run(self, inputs: tuple[torch.Tensor, ...]) -> Gaussians:
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return self._model().reconstruct(*inputs)[0]

    def metadata(self) -> dict[str, Any]:
        md = super().metadata()
        if hasattr(self, "_record"):  # what was evaluated comes from the checkpoint itself
            md["trained_steps"] = self._record["step"]
            md["checkpoint_model"] = self._record["model_cfg"]
            md["checkpoint_method"] = self._record.get("method")
            md["release"] = self._record.get("release")
            md["trained_batch"] = (self._record.get("train_cfg") or {}).get("batch_size")
        return md
