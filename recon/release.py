"""Release trained Any3DAvatar weights: the inference network in bf16, its sha256 and a model card.

    python -m recon.release RUN_OR_MODEL_FILE --version v2.0 [--out weights] [--card-json facts.json]

Reads a training run's ``model.safetensors`` (the EMA weights), drops the training-only auxiliary
appearance head, casts floating-point tensors to bf16 and writes ``<out>/any3davatar-<version>.safetensors``
(safetensors: loading it never runs code), ``any3davatar-<version>.sha256`` (``sha256sum -c`` format)
and ``any3davatar-<version>.md``, the model card: the checkpoint's own record (architecture and training
config, step) plus the facts in ``--card-json`` (data and seeds, samples seen, device time, metrics,
licence, limitations), which only the person releasing knows. ``recon.infer``, the web demo and
``benchmarks.run --method any3davatar`` pick the newest release up from ``weights/``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from anyhead.io import atomic_path, sha256_file

from .checkpoints import MODEL_FILE, load_model, write_weights

MAX_MB = 24.0  # weights ship inside the repository
RELEASE_PATTERNS = ("any3davatar-*.safetensors",)  # released weights: the newest of these wins
FALLBACK_NAME = "model.safetensors"  # a training run's weights copied into weights/

def weight_dirs() -> list[Path]:
    """Where released weights are looked for: ./weights, then the repository's weights/."""
    dirs = [Path.cwd() / "weights", Path(__file__).resolve().parents[1] / "weights"]
    return list(dict.fromkeys(d.resolve() for d in dirs))

def find_weights(dirs: list[Path] | None = None) -> Path:
    """The newest released weights (see module doc); SystemExit saying what was looked for if none."""
    dirs = weight_dirs() if dirs is None else dirs
    for d in dirs:
        hits = [p for pattern in RELEASE_PATTERNS for p in d.glob(pattern) if p.is_file()]
        if hits:
            return max(hits, key=lambda p: (p.stat().st_mtime, p.name))
        if (d / FALLBACK_NAME).is_file():
            return d / FALLBACK_NAME
    looked = ", ".join(f"{d}/{{{','.join((*RELEASE_PATTERNS, FALLBACK_NAME))}}}" for d in dirs)
    raise SystemExit(f"no Any3DAvatar weights found (looked for {looked}). No weights have been released yet: "
                     "train a model (python -m recon.train, or `make demo`) and pass --checkpoint PATH, "
                     "or put a model.safetensors into weights/ as any3davatar-<name>.safetensors")


def inference_state(model: torch.nn.Module, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """The deployable module's state dict (no auxiliary head), floating-point tensors cast to ``dtype``."""
    inf = model.inference_module() if hasattr(model, "inference_module") else model
    return {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in inf.state_dict().items()}


def release(source: str | os.PathLike[str], version: str, out_dir: str | os.PathLike[str] = "weights",
            facts: dict[str, Any] | None = None, max_mb: float = MAX_MB) -> dict[str, Path]:
    """Write the release files for the checkpoint ``source`` (a run folder or a model file); returns their paths.

    Refuses a version that is not a plain name, a model that is not Any3DAvatar, or weights over ``max_mb``."""
    if not version or any(c in version for c in "/\\ ") or version.startswith("."):
        raise ValueError(f"version {version!r}: use a plain name such as v2.0")
    src = Path(source)
    src = src / MODEL_FILE if src.is_dir() else src
    model, record = load_model(src)
    if record.get("arch") != "any3davatar":
        raise ValueError(f"{src}: holds {record.get('arch')!r}; only Any3DAvatar weights are released")
    sd = inference_state(model)
    nbytes = sum(v.numel() * v.element_size() for v in sd.values())
    if nbytes / 1e6 > max_mb:
        raise ValueError(f"{src}: {nbytes / 1e6:.1f} MB of inference weights in bf16, over the {max_mb} MB release limit")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"any3davatar-{version}"
    rec = {k: v for k, v in record.items() if k != "format"}
    rec.update(release=version, inference_only=True, dtype="bfloat16", source_sha256=sha256_file(src),
               n_values=int(sum(v.numel() for v in sd.values() if v.is_floating_point())))
    weights = write_weights(out / f"{name}.safetensors", sd, rec)
    digest = sha256_file(weights)
    with atomic_path(out / f"{name}.sha256") as tmp:
        Path(tmp).write_text(f"{digest}  {weights.name}\n")
    card = model_card(name, rec, digest, weights.stat().st_size, facts or {})
    with atomic_path(out / f"{name}.md") as tmp:
        Path(tmp).write_text(card)
    paths = {"weights": weights, "sha256": out / f"{name}.sha256", "card": out / f"{name}.md"}
    for p in paths.values():
        p.chmod(0o644)  # shipped files: readable by everyone (the atomic temp file was private)
    return paths


def _table(d: dict[str, Any]) -> str:
    return "\n".join(f"| {k} | {v} |" for k, v in d.items())


def model_card(name: str, record: dict[str, Any], digest: str, size: int, facts: dict[str, Any]) -> str:
    """The model card in Markdown: what was trained, on what, for how long, how well, and what it cannot do."""
    mc, tc = record.get("model_cfg", {}), record.get("train_cfg") or {}
    lines = [f"# {name}", "", facts.get("summary", "Any3DAvatar: one portrait in, a 3D Gaussian head out, in one forward pass."), "",
             "## Files", "", f"| file | `{name}.safetensors` |", "|---|---|",
             _table({"sha256": f"`{digest}`", "size": f"{size / 1e6:.1f} MB (bf16, inference network only: no auxiliary head)",
                     "stored values": f"{record.get('n_values', 0):,} (parameters and the scaffold's buffers)",
                     "format": "safetensors (loading never unpickles)",
                     "conventions": "OpenCV cameras (x right, y down, z forward), world-to-camera 4x4, pixel K; head frame in "
                                    "metres, +y up, +z out of the face, origin at the head centre"}), ""]
    for title, key in (("Training data", "data"), ("Training run", "training"), ("Evaluation", "evaluation")):
        if facts.get(key):
            body = facts[key]
            lines += [f"## {title}", "", body if isinstance(body, str) else "| | |\n|---|---|\n" + _table(body), ""]
    lines += ["## Architecture and training configuration (from the checkpoint's record)", "",
              f"Step {record.get('step')}, method `{record.get('method')}`.", "", "```json",
              json.dumps({"model": mc, "train": tc}, indent=1, sort_keys=True), "```", ""]
    for title, key in (("Licence", "licence"), ("Known limitations", "limitations"), ("Reproduce", "reproduce")):
        if facts.get(key):
            body = facts[key]
            lines += [f"## {title}", "", body if isinstance(body, str) else "\n".join(f"- {x}" for x in body), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a training run folder or its model.safetensors")
    ap.add_argument("--version", required=True)
    ap.add_argument("--out", default="weights")
    ap.add_argument("--card-json", default=None, help="facts for the model card (data, training, evaluation, licence, limitations)")
    args = ap.parse_args(argv)
    facts = json.loads(Path(args.card_json).read_text()) if args.card_json else {}
    try:
        paths = release(args.source, args.version, args.out, facts)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    for k, p in paths.items():
        print(f"{k}: {p}")


if __name__ == "__main__":
    main()
