"""Small steps the device sessions share (run with the machine's python3, no project imports needed).

    python3 scripts/gpu/tools.py params OUT [section.key=YAML ...]   # params.yaml on the gpu profile + overrides
    python3 scripts/gpu/tools.py bf16 SRC DST                        # a checkpoint's tensors cast to bf16

``params`` writes OUT beside params.yaml (data paths derive from its folder) with ``profile: gpu``, the
device's constraints (no mediapipe for the built-in photo, no dlib for CSIM) and each override applied to
``profiles.gpu.<section>.<key>`` (values parsed as YAML: ``train.compile=false``, ``train.lr=8e-4``).
``bf16`` keeps the safetensors header (the checkpoint's record), so the copy loads like the original.
"""
from __future__ import annotations

import sys

import yaml


def params(out: str, overrides: list[str]) -> None:
    doc = yaml.safe_load(open("params.yaml"))
    doc["profile"] = "gpu"
    g = doc["profiles"]["gpu"]
    g["photos"] = {"builtin_astronaut": False}  # no mediapipe on the device
    g["benchmark"]["csim"] = False  # nor dlib: CSIM is computed where the released weights are evaluated
    for item in overrides:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        v = yaml.safe_load(value)
        if isinstance(v, str):  # YAML 1.1 reads 8e-4 (no dot) as a string
            try:
                v = float(v)
            except ValueError:
                pass
        g.setdefault(section, {})[name] = v
    with open(out, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


def bf16(src: str, dst: str) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(src, "pt") as f:
        meta, sd = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in sd.items()}, dst, metadata=meta)


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    if cmd == "params":
        params(rest[0], rest[1:])
    elif cmd == "bf16":
        bf16(*rest)
    else:
        raise SystemExit(__doc__)
