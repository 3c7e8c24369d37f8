"""Training batches from AnyHead shards, indexable so that every step's batch is a pure function of
(seed, step): resumed training sees exactly the batches an uninterrupted run would have seen.

The split's samples are held as their encoded files (PNG bytes, a few MB a head) and decoded per
step; for far larger sets a streaming loader (``anyhead.loader.ShardDataset``) is the tool.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anyhead.loader import shard_list
from anyhead.samples import Sample, View, decode_sample
from anyhead.shards import read_tar_samples


class RawSamples:
    """All samples of some shards, kept encoded, decoded on access. Each shard is checked against its
    manifest's sha256 first (a cached stamp skips re-hashing); a bad shard raises ``anyhead.shards.ShardError``
    naming it: training must not run on modified data."""

    def __init__(self, shards: str | Path | list[str]) -> None:
        paths = shard_list(shards)
        if not paths:
            raise FileNotFoundError(f"{shards}: no shards (.tar) found")
        self.files: list[dict[str, bytes]] = [s for p in paths for s in read_tar_samples(p, verify=True)]
        if not self.files:
            raise ValueError(f"{shards}: the split is empty")

    def __len__(self) -> int:
        return len(self.files)

    def views(self, i: int) -> list[dict[str, Any]]:
        """The camera records of sample i (no image decoding)."""
        return json.loads(self.files[i]["cameras.json"])["views"]

    def decode(self, i: int, names: set[str]) -> Sample:
        """Sample i with only the named views' colour and masks decoded; real images (photos, captures) composited
        on white (:func:`on_white_views`)."""
        return on_white_views(decode_sample(self.files[i], views=names, geometry=False))


def real_background(meta: dict[str, Any]) -> bool:
    """Whether a sample's images keep a real background behind their mask: photos (unless made with
    ``photos.background: white``) and captures. Renders are rendered on white."""
    return meta.get("source") in ("photo", "capture") and meta.get("background") != "white"


def composite_white_u8(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) over white with a uint8 coverage mask (H, W), rounded to uint8: what a render of the
    same pixels would hold (every training image is then on white, like the models' inputs at inference)."""
    m = mask.astype(np.uint32)[..., None]
    return ((rgb[..., :3].astype(np.uint32) * m + 255 * (255 - m) + 127) // 255).astype(np.uint8)


def mask_u8(mask: np.ndarray) -> np.ndarray:
    """A decoded mask (coverage / 255, float) as its original byte again (exact round trip)."""
    return np.round(np.asarray(mask) * 255).astype(np.uint8)


def on_white_views(s: Sample) -> Sample:
    """``s`` with every decoded view composited on white where the sample has a real background
    (:func:`real_background`); renders are returned as they are."""
    if real_background(s.meta):
        for v in s.views:
            v.rgb = composite_white_u8(np.asarray(v.rgb), mask_u8(v.mask))
    return s


def view_tensors(v: View, size: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(rgb (3, s, s), mask (1, s, s), K scaled to s) of one decoded view, area-resampled."""
    rgb = torch.from_numpy(np.array(v.rgb[..., :3])).permute(2, 0, 1).float() / 255
    mask = torch.from_numpy(np.array(v.mask))[None].float()
    K = v.camera.K.copy()
    H, W = rgb.shape[1:]
    if (H, W) != (size, size):
        rgb = F.interpolate(rgb[None], size=(size, size), mode="area")[0]
        mask = F.interpolate(mask[None], size=(size, size), mode="area")[0]
        K[0] *= size / W
        K[1] *= size / H
    return rgb, mask, K


def input_on_white(view: View, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A decoded input view as the models take it: (rgb (1, 3, s, s) composited on white with its mask,
    w2c (1, 4, 4), K (1, 3, 3) for the s x s image)."""
    rgb, mask, K = view_tensors(view, size)
    rgb = rgb * mask + (1 - mask)
    return rgb[None], torch.from_numpy(view.camera.w2c).float()[None], torch.from_numpy(K).float()[None]


def input_choice(u: float, n_inputs: int) -> int:
    """Which of a sample's ``n_inputs`` input portraits a uniform draw ``u`` in [0, 1) selects (shared with
    :func:`recon.cache.pick`, so the cached and the decode paths choose the same input)."""
    return min(int(u * n_inputs), n_inputs - 1)


def make_batch(samples: RawSamples, indices: list[int], rng: np.random.Generator, input_size: int, target_size: int,
               n_targets: int, input_rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """An input portrait + ``n_targets`` random target views per sample, as float tensors.

    With ``input_rng`` each sample's input is drawn among its input portraits (one uniform per sample,
    :func:`input_choice`); without it the first input is taken."""
    out: dict[str, list] = {k: [] for k in ("image", "w2c", "K", "t_rgb", "t_mask", "t_w2c", "t_K")}
    u = input_rng.random(len(indices)) if input_rng is not None else np.zeros(len(indices))
    for k, i in enumerate(indices):
        cams = samples.views(i)
        inputs = [v["name"] for v in cams if v["role"] == "input"]
        inp_name = inputs[input_choice(u[k], len(inputs))]
        target_names = [v["name"] for v in cams if v["role"] == "target"]
        pick = rng.choice(len(target_names), size=min(n_targets, len(target_names)), replace=False)
        chosen = [target_names[j] for j in pick]
        s = samples.decode(i, {inp_name, *chosen})
        by_name = {v.name: v for v in s.views}
        inp = by_name[inp_name]
        rgb, _, K = view_tensors(inp, input_size)
        out["image"].append(rgb)
        out["w2c"].append(torch.from_numpy(inp.camera.w2c).float())
        out["K"].append(torch.from_numpy(K).float())
        targets = [by_name[n] for n in chosen]
        t = [view_tensors(v, target_size) for v in targets]
        out["t_rgb"].append(torch.stack([x[0] for x in t]))
        out["t_mask"].append(torch.stack([x[1] for x in t]))
        out["t_w2c"].append(torch.stack([torch.from_numpy(v.camera.w2c).float() for v in targets]))
        out["t_K"].append(torch.stack([torch.from_numpy(x[2]).float() for x in t]))
    return {k: torch.stack(v) for k, v in out.items()}
