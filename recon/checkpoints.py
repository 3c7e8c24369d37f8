"""Model construction and checkpoint I/O, in one place for training, inference and the benchmarks.

A trained model is two files in its run folder:

* ``model.safetensors``: the weights to use (the EMA when training keeps one; scaffold buffers
  included, so no dataset or ICT file is needed to rebuild it) and, in the safetensors header, a
  JSON record: format, architecture, model config, training config, step, method;
* ``train_state.safetensors``: the raw training weights and the optimizer state (tensors
  flattened, structure in the header), only for resuming.

A release (:mod:`recon.release`) is one ``model.safetensors``-format file holding only the inference
weights (no auxiliary head) in bf16; its record says ``inference_only`` and keeps the training config.

Both are safetensors: reading a checkpoint, even one a stranger sent, never unpickles or executes
anything. A file that is not such a checkpoint, or whose architecture or config differs from what
the caller expects, is refused with an error naming the file and the differing keys.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from anyhead.io import atomic_path

from .config import ArchConfig, ModelConfig, SplatterConfig, TrainConfig, model_config_from_dict, to_dict

FORMAT = "anyhead-checkpoint/1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message names the file and why."""


def build_model(model_cfg: ArchConfig, ict_model: str | os.PathLike[str] | None = None,
                anchors: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised model. Any3DAvatar gets its scaffold: the given anchors, the ICT
    template (``ict_model``: the compact model file), or random anchors for the ablation."""
    from .any3davatar import Any3DAvatar
    from .any3davatar.scaffold import random_scaffold, template_scaffold
    from .splatter_image import SplatterImage

    if isinstance(model_cfg, SplatterConfig):
        return SplatterImage(model_cfg)
    if not isinstance(model_cfg, ModelConfig):
        raise TypeError(f"not a model config: {type(model_cfg).__name__}")
    if model_cfg.scaffold == "random":
        anchors = random_scaffold(model_cfg.n_anchors, seed)
    elif anchors is None:
        if ict_model is None:
            raise ValueError("the structured scaffold needs the ICT model file (ict_model=...) or explicit anchors")
        from anyhead.ict import ICTModel

        extra = {"neck_floor": model_cfg.neck_floor, "face_density": model_cfg.face_density, "shoulders": model_cfg.shoulders,
                 "torso_floor": model_cfg.torso_floor, "torso_density": model_cfg.torso_density} \
            if model_cfg.arch_version == 2 else {}
        anchors = template_scaffold(ICTModel.load(ict_model), model_cfg.n_anchors, seed, **extra)
    model = Any3DAvatar(model_cfg, torch.as_tensor(anchors[0]), torch.as_tensor(anchors[1]))
    if model_cfg.arch_version == 2 and model_cfg.backbone:  # pretrained features: only for a fresh model, from a local file
        model.load_backbone(model_cfg.backbone)
    return model


def _from_state(model_cfg: ArchConfig, sd: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A model of ``model_cfg`` holding ``sd`` (its scaffold comes from the stored buffers)."""
    from .any3davatar import Any3DAvatar
    from .splatter_image import SplatterImage

    if isinstance(model_cfg, SplatterConfig):
        model = SplatterImage(model_cfg)
    else:
        model = Any3DAvatar(model_cfg, sd["anchors"], sd["normals"])
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"weights do not fit the {model_cfg.arch} config: missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
    return model


# -- writing ------------------------------------------------------------------------------------

def save_checkpoint(folder: str | os.PathLike[str], model: torch.nn.Module, step: int,
                    train_cfg: TrainConfig | None = None, optimizer: torch.optim.Optimizer | None = None,
                    extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None,
                    weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``model.safetensors`` (``weights``, default the model's own state) and, with an
    optimizer, ``train_state.safetensors`` (the model's raw state + optimizer) into ``folder``, each
    atomically; the training state first, so a model file never refers to a missing state.
    ``dtype`` (e.g. bf16 for a release) casts floating-point weights. Returns the model path."""
    folder = Path(folder)
    record = {"format": FORMAT, "arch": model.cfg.arch, "model_cfg": to_dict(model.cfg), "step": int(step),
              "train_cfg": to_dict(train_cfg) if train_cfg is not None else None, **(extra or {})}
    if optimizer is not None:
        tensors, structure = _flatten_optimizer(optimizer.state_dict())
        tensors |= {f"weights.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        _write(folder / STATE_FILE, tensors, {"format": FORMAT, "optimizer": structure, "step": int(step)})
    sd = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
          for k, v in (weights if weights is not None else model.state_dict()).items()}
    _write(folder / MODEL_FILE, sd, record)
    return folder / MODEL_FILE


def write_weights(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], record: dict[str, Any]) -> Path:
    """Write ``tensors`` with ``record`` (format added) as one checkpoint file, atomically."""
    path = Path(path)
    _write(path, {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, {**record, "format": FORMAT})
    return path


def _write(path: Path, tensors: dict[str, torch.Tensor], record: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"anyhead": json.dumps(record, sort_keys=True)})


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    per_param: dict[str, dict[str, Any]] = {}
    for idx, st in state["state"].items():
        rec = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v.detach().cpu().contiguous()
                rec[k] = {"tensor": f"optim.{idx}.{k}"}
            else:
                rec[k] = {"value": v}
        per_param[str(idx)] = rec
    return tensors, {"state": per_param, "param_groups": state["param_groups"]}


# -- reading ------------------------------------------------------------------------------------

def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON record in a checkpoint's header (no tensors are read)."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({e}); old pickle checkpoints (.pt) are "
                              "not loaded because unpickling can run code: retrain or convert it") from None
    if "anyhead" not in meta:
        raise CheckpointError(f"{path}: a safetensors file without an AnyHead record (format {FORMAT})")
    record = json.loads(meta["anyhead"])
    if record.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {record.get('format')!r}, this version reads {FORMAT!r}")
    return record


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
               expect: ArchConfig | None = None, ignore: tuple[str, ...] = ()) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Model and record of a checkpoint (a ``model.safetensors`` file or its run folder).

    With ``expect``, a checkpoint of another architecture or config is refused, naming the keys (except ``ignore``)."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    record = read_record(path)
    try:
        cfg = model_config_from_dict(record["model_cfg"])
    except ValueError as e:
        raise CheckpointError(f"{path}: stored model config is not valid here: {e}") from None
    if expect is not None:
        check_config(path, cfg, expect, ignore)
    sd = load_file(str(path), device="cpu")
    if record.get("inference_only"):  # a release: the same network without the training-only auxiliary head
        cfg = dataclasses.replace(cfg, aux_head=False)
    try:
        model = _from_state(cfg, {k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return model.to(map_location), record


# The structured scaffold's shape: a warm start may change these (the network is shared by every anchor, so its
# weights carry over); the buffers derived from the scaffold are then rebuilt, not loaded.
SCAFFOLD_KEYS = ("shoulders", "torso_floor", "torso_density", "neck_floor", "face_density")
SCAFFOLD_BUFFERS = ("anchors", "normals", "x_scaffold")


def scaffold_changes(stored: ArchConfig, configured: ArchConfig) -> list[str]:
    """The scaffold keys that differ *and matter*: only v2's structured scaffold reads them, and the torso keys only
    with shoulders on (on either side)."""
    if not (isinstance(stored, ModelConfig) and isinstance(configured, ModelConfig)):
        return []
    if configured.arch_version != 2 or configured.scaffold != "structured":
        return []
    torso = stored.shoulders or configured.shoulders
    return [k for k in SCAFFOLD_KEYS if getattr(stored, k) != getattr(configured, k)
            and (torso or k not in ("torso_floor", "torso_density"))]


def check_config(path: str | os.PathLike[str], stored: ArchConfig, expected: ArchConfig, ignore: tuple[str, ...] = ()) -> None:
    """Refuse a checkpoint whose model config is not ``expected`` (keys in ``ignore`` may differ); the message lists
    each differing key."""
    a, b = to_dict(stored), to_dict(expected)
    diff = [f"{k}: checkpoint {a.get(k)!r} vs configured {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in ignore]
    if diff:
        raise CheckpointError(f"{path}: the checkpoint's model config differs from the configured one: " + "; ".join(diff))


def load_train_state(folder: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The raw model weights and the optimizer state dict saved for resuming a run."""
    path = Path(folder) / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training state to resume from")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("anyhead", "{}"))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a safetensors training state ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an AnyHead training state ({FORMAT})")
    tensors = load_file(str(path), device="cpu")
    structure = meta["optimizer"]
    state = {int(idx): {k: tensors[v["tensor"]] if "tensor" in v else v["value"] for k, v in rec.items()}
             for idx, rec in structure["state"].items()}
    weights = {k[len("weights."):]: v for k, v in tensors.items() if k.startswith("weights.")}
    return weights, {"state": state, "param_groups": structure["param_groups"]}
