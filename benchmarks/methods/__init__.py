"""The method registry: one name per method, one interface (``benchmarks.methods.base.Method``)."""
from __future__ import annotations

from typing import Any

from .base import Method, Reconstruction
from .classical import OptimizeMethod, TemplateMethod
from .learned import Any3DAvatarMethod, SplatterImageMethod, ablation

REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if cls.name in REGISTRY:
        raise ValueError(f"method {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


for _cls in (
    Any3DAvatarMethod,
    ablation("any3davatar-noaux", {"aux_head": False}, "no auxiliary appearance head"),
    ablation("any3davatar-random", {"scaffold": "random"}, "unstructured random anchors instead of the template scaffold"),
    ablation("any3davatar-noplucker", {"plucker": False}, "no Plücker ray embedding"),
    ablation("any3davatar-t0", {"t_star": 0.0}, "t* = 0 (plain regression, no denoising)"),
    SplatterImageMethod,
    TemplateMethod,
    OptimizeMethod,
):
    register(_cls)


def get_method(name: str, profile_cfg: dict[str, Any], **kwargs: Any) -> Method:
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](profile_cfg, **kwargs)


def learned_methods() -> list[str]:
    return [n for n, c in REGISTRY.items() if c.learned]


__all__ = ["Method", "Reconstruction", "REGISTRY", "register", "get_method", "learned_methods"]
