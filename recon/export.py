"""Export Gaussians to the standard 3DGS PLY (what common viewers open) and to antimatter15's .splat.

The PLY stores raw parameters like the reference 3DGS code (log scales, opacity logits, wxyz
quaternions, SH DC + rest in channel-major order) and records, as header comments, the frame
(``anyhead.cameras.CONVENTION``), the SH degree and the antialiasing flag the Gaussians were made for.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyhead.cameras import CONVENTION
from anyhead.io import atomic_path

from .gaussians import SH_C0, Gaussians


def _arrays(g: Gaussians) -> dict[str, np.ndarray]:
    g = g.detach().to("cpu").rgb_to_sh()
    sh = g.colors.float().numpy()  # (N, K, 3)
    return {"means": g.means.float().numpy(), "quats": g.quats.float().numpy(), "log_scales": g.log_scales.float().numpy(),
            "opacity": g.opacity_logits.float().numpy(), "dc": sh[:, 0], "rest": sh[:, 1:].transpose(0, 2, 1).reshape(len(sh), -1),
            "degree": g.sh_degree}


def save_ply(g: Gaussians, path: str | os.PathLike[str], antialiased: bool = False, extra: dict[str, Any] | None = None) -> None:
    """Write an unbatched Gaussian set as a binary little-endian 3DGS PLY."""
    if g.means.dim() != 2:
        raise ValueError("save_ply takes one Gaussian set (no batch dimension)")
    a = _arrays(g)
    n = len(a["means"])
    cols = [("x", a["means"][:, 0]), ("y", a["means"][:, 1]), ("z", a["means"][:, 2]),
            ("nx", np.zeros(n)), ("ny", np.zeros(n)), ("nz", np.zeros(n))]
    cols += [(f"f_dc_{i}", a["dc"][:, i]) for i in range(3)]
    cols += [(f"f_rest_{i}", a["rest"][:, i]) for i in range(a["rest"].shape[1])]
    cols += [("opacity", a["opacity"])] + [(f"scale_{i}", a["log_scales"][:, i]) for i in range(3)]
    cols += [(f"rot_{i}", a["quats"][:, i]) for i in range(4)]
    data = np.stack([c for _, c in cols], 1).astype("<f4")
    comments = [f"anyhead_convention {json.dumps(CONVENTION, separators=(',', ':'))}", f"sh_degree {a['degree']}",
                f"antialiased {int(antialiased)}"] + [f"{k} {json.dumps(v, separators=(',', ':'))}" for k, v in (extra or {}).items()]
    header = ["ply", "format binary_little_endian 1.0", *[f"comment {c}" for c in comments], f"element vertex {n}",
              *[f"property float {name}" for name, _ in cols], "end_header"]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode())
            f.write(data.tobytes())


def load_ply(path: str | os.PathLike[str]) -> tuple[Gaussians, dict[str, str]]:
    """Read a 3DGS PLY (ours or another tool's). Returns the Gaussians (SH form) and the header comments."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    end = raw.find(b"end_header\n")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    header = raw[:end].decode().splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: only binary little-endian PLY is supported")
    names = [ln.split()[-1] for ln in header if ln.startswith("property")]
    if any(ln.startswith("property") and ln.split()[1] != "float" for ln in header):
        raise ValueError(f"{path}: expected float properties")
    n = int(next(ln.split()[-1] for ln in header if ln.startswith("element vertex")))
    data = np.frombuffer(raw[end + len(b"end_header\n"):], dtype="<f4", count=n * len(names)).reshape(n, len(names))
    col = {k: data[:, i] for i, k in enumerate(names)}
    comments = dict(ln[len("comment "):].split(" ", 1) for ln in header if ln.startswith("comment ") and " " in ln[8:])
    n_rest = sum(k.startswith("f_rest_") for k in names)
    K = 1 + n_rest // 3
    degree = int(round(K**0.5)) - 1
    rest = (np.stack([col[f"f_rest_{i}"] for i in range(n_rest)], 1).reshape(n, 3, K - 1).transpose(0, 2, 1) if n_rest
            else np.zeros((n, 0, 3)))
    sh = np.concatenate([np.stack([col[f"f_dc_{i}"] for i in range(3)], 1)[:, None], rest], 1)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # noqa: E731
    g = Gaussians(t(np.stack([col["x"], col["y"], col["z"]], 1)), t(np.stack([col[f"rot_{i}"] for i in range(4)], 1)),
                  t(np.stack([col[f"scale_{i}"] for i in range(3)], 1)), t(col["opacity"]), t(sh), degree)
    return g, comments


def save_splat(g: Gaussians, path: str | os.PathLike[str]) -> None:
    """antimatter15 .splat: 32 bytes a splat (xyz f32, scale f32 x3, RGBA u8, wxyz quaternion u8),
    sorted by size x opacity as web viewers expect. Colours are the degree-0 (view-independent) part."""
    if g.means.dim() != 2:
        raise ValueError("save_splat takes one Gaussian set (no batch dimension)")
    a = _arrays(g)
    scales = np.exp(a["log_scales"])
    rgb = np.clip(0.5 + SH_C0 * a["dc"], 0, 1)
    alpha = 1 / (1 + np.exp(-a["opacity"]))
    q = a["quats"] / np.linalg.norm(a["quats"], axis=1, keepdims=True)
    order = np.argsort(-np.prod(scales, 1) * alpha)
    rec = np.zeros(len(order), dtype=[("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    rec["pos"] = a["means"][order]
    rec["scale"] = scales[order]
    rec["rgba"] = (np.concatenate([rgb, alpha[:, None]], 1)[order] * 255 + 0.5).clip(0, 255)
    rec["rot"] = (q[order] * 128 + 128).clip(0, 255)
    with atomic_path(path) as tmp:
        tmp.write_bytes(rec.tobytes())
