"""The method registry: every benchmarked method as a data spec, the one list the rest derives from.

``dvc.yaml``'s ``train`` and ``evaluate`` stages iterate ``benchmarks/methods.yaml``, which
``python -m benchmarks.methods --write-dvc-vars`` generates from :data:`REGISTRY`; a test fails when the
file and the registry differ.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from .base import Method, MethodSpec, Reconstruction
from .classical import SingleViewFitMethod, TemplateMethod
from .learned import LearnedMethod

DVC_VARS = Path(__file__).resolve().parents[1] / "methods.yaml"


def _ablation(name: str, overrides: dict[str, Any], text: str) -> MethodSpec:
    return MethodSpec(name, f"Any3DAvatar ablation: {text}", LearnedMethod, arch="any3davatar", overrides=overrides)


SPECS: tuple[MethodSpec, ...] = (
    MethodSpec("any3davatar", "Any3DAvatar v2: visibility-gated scaffold tokens, one-step conditional denoising of the "
               "scaffold's Gaussians, auxiliary appearance head", LearnedMethod, arch="any3davatar"),
    _ablation("any3davatar-v1", {"arch_version": 1, "t_star": 0.5, "sh_degree": None, "antialiased": False},
              "the first model (v1: ungated 1/patch token features, t* * noise input), same data and steps"),
    _ablation("any3davatar-noaux", {"aux_head": False}, "no auxiliary appearance head"),
    _ablation("any3davatar-random", {"scaffold": "random"}, "unstructured random anchors instead of the template scaffold"),
    _ablation("any3davatar-noplucker", {"plucker": False}, "no Plücker ray embedding"),
    _ablation("any3davatar-t0", {"train_noise": False, "t_star": 0.0},
              "no noise in training (t = 0 every step) and t* = 0 at inference: plain regression from the scaffold"),
    MethodSpec("splatter-image", "Splatter Image (Szymanowicz et al. 2024): pixel-aligned Gaussians from a U-Net",
               LearnedMethod, arch="splatter_image"),
    MethodSpec("template", "scaffold Gaussians coloured by projecting the input image (mirrored where hidden): "
               "a lower bound", TemplateMethod),
    MethodSpec("single-view-fit", "per-subject fit of the template's Gaussians to the single input view with the "
               "training loss, until converged (the optimisation family)", SingleViewFitMethod),
)
REGISTRY: dict[str, MethodSpec] = {}
for _s in SPECS:
    if _s.name in REGISTRY:
        raise ValueError(f"method {_s.name!r} registered twice")
    REGISTRY[_s.name] = _s


def get_spec(name: str) -> MethodSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def learned_methods() -> list[str]:
    return [n for n, s in REGISTRY.items() if s.learned]


def dvc_vars() -> dict[str, Any]:
    """What dvc.yaml's foreach stages iterate: each learned method's model section, and what each
    method's evaluation depends on (its weights, or only the test split, and the params section it
    reads: its own model, or the Any3DAvatar scaffold settings the classical baselines share)."""
    return {
        "train_methods": {n: {"arch": s.arch} for n, s in REGISTRY.items() if s.learned},
        "eval_methods": {n: {"dep": f"train/{n}/model.safetensors" if s.learned else "shards/test",
                             "section": s.arch or "any3davatar"} for n, s in REGISTRY.items()},
    }


def render_dvc_vars() -> str:
    return ("# Generated from benchmarks.methods.REGISTRY by `python -m benchmarks.methods --write-dvc-vars`; "
            "do not edit.\n" + yaml.safe_dump(dvc_vars(), sort_keys=False))


def main() -> None:
    ap = argparse.ArgumentParser(description="The method registry")
    ap.add_argument("--write-dvc-vars", action="store_true", help=f"rewrite {DVC_VARS.name} from the registry")
    args = ap.parse_args()
    if args.write_dvc_vars:
        from anyhead.io import write_bytes

        write_bytes(DVC_VARS, render_dvc_vars().encode())
        print(f"wrote {DVC_VARS}")
    for n, s in REGISTRY.items():
        print(f"{n:24s} {'learned' if s.learned else 'classical':9s} {s.description}")


__all__ = ["Method", "MethodSpec", "Reconstruction", "REGISTRY", "SPECS", "get_spec", "learned_methods", "dvc_vars"]
