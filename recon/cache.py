"""Training batches without per-step image decoding.

A split's shards are decoded once into a compact uint8 cache (``SplitCache``): every sample's input
portraits (``render.n_inputs`` of them) and all target views as RGB + mask arrays at their rendered resolution, plus cameras,
written as ``.npy`` files that are memory-mapped on later runs (the cache is keyed by the shards'
sha256, so changed shards rebuild it). Each step's batch is then a pure function of (seed, step,
rank) built by three interchangeable sources, all returning exactly what the per-step PNG path
(:func:`recon.data.make_batch`) returns:

* :class:`DeviceBatches`: the whole cache held on the device; view choice, gathering, resizing
  and noise happen there (no host work but a few random indices per step);
* :class:`StreamBatches`: for splits larger than device memory: DataLoader workers gather uint8
  batches from the memory-mapped cache into pinned memory; the device converts and resizes;
* :class:`DecodeBatches`: the original path (decode PNGs every step), kept as the reference.

Selection (:func:`pick`) is shared, so every source draws the same samples, input portraits and target views;
each step draws one input per sample, so across steps the model sees every portrait of a head.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from anyhead.io import write_json
from anyhead.loader import shard_list
from anyhead.samples import decode_sample
from anyhead.shards import read_tar_samples, verify_shards

from .data import RawSamples, input_choice, make_batch, mask_u8, on_white_views

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: every input portrait, not only the first
ARRAYS = ("inputs", "targets", "in_w2c", "in_K", "t_w2c", "t_K")


@dataclass
class SplitCache:
    """Decoded views of a split. Images are (N, V, H, W, 4) uint8 (RGB + mask), cameras float64."""

    keys: list[str]
    inputs: np.ndarray  # (N, Vi, Hi, Wi, 4): the input portraits of each sample
    targets: np.ndarray  # (N, Vt, Ht, Wt, 4)
    in_w2c: np.ndarray  # (N, Vi, 4, 4)
    in_K: np.ndarray  # (N, Vi, 3, 3) at (Hi, Wi)
    t_w2c: np.ndarray  # (N, Vt, 4, 4)
    t_K: np.ndarray  # (N, Vt, 3, 3) at (Ht, Wt)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, a).nbytes for a in ARRAYS)


def _shards_key(paths: list[str]) -> list[dict[str, Any]]:
    """Each shard checked against its manifest (a stamp skips re-hashing unchanged files), and the
    manifests' digests: what the cache was built from."""
    return [{"name": Path(p).name, "sha256": m["sha256"]} for p, m in zip(paths, verify_shards(paths))]


def decode_split(shards: str | os.PathLike[str] | list[str]) -> SplitCache:
    """Decode every sample of ``shards`` into a :class:`SplitCache` in memory."""
    paths = shard_list(shards)
    if not paths:
        raise FileNotFoundError(f"{shards}: no shards (.tar) found")
    verify_shards(paths)  # training must not run on modified data (raises ShardIntegrityError naming the shard)
    keys, cols = [], {a: [] for a in ARRAYS}
    for p in paths:
        for files in tqdm(list(read_tar_samples(p)), desc=f"cache {Path(p).name}", leave=False):
            s = on_white_views(decode_sample(files, geometry=False))  # photos, captures: on white like renders
            inp = [v for v in s.views if v.role == "input"]
            tgt = [v for v in s.views if v.role == "target"]
            if not tgt and s.meta.get("single_view"):  # a photo: its one supervised view is its input (recon.mix)
                tgt = inp
            keys.append(s.key)
            cols["inputs"].append(_rgba(inp))
            cols["targets"].append(_rgba(tgt))
            cols["in_w2c"].append(np.stack([v.camera.w2c for v in inp]))
            cols["in_K"].append(np.stack([v.camera.K for v in inp]))
            cols["t_w2c"].append(np.stack([v.camera.w2c for v in tgt]))
            cols["t_K"].append(np.stack([v.camera.K for v in tgt]))
    if not keys:
        raise ValueError(f"{shards}: the split is empty")
    for a, what in (("targets", "target"), ("inputs", "input")):
        shapes = {x.shape for x in cols[a]}
        if len(shapes) > 1:
            raise ValueError(f"{shards}: samples have different {what} view counts or sizes {sorted(shapes)}; "
                             "the cache needs one layout per split")
    return SplitCache(keys, *(np.stack(cols[a]) for a in ARRAYS))


def _rgba(views: list[dict[str, Any]]) -> np.ndarray:
    # masks are decoded as coverage / 255; store the original byte again (exact round trip)
    return np.stack([np.concatenate([np.asarray(v.rgb)[..., :3], mask_u8(v.mask)[..., None]], -1) for v in views])


def load_or_build(shards: str | os.PathLike[str] | list[str], folder: str | os.PathLike[str]) -> SplitCache:
    """The split's cache in ``folder``, memory-mapped; built (under a temporary name, then renamed)
    when missing or when the shards changed."""
    folder = Path(folder)
    paths = shard_list(shards)
    key = {"version": CACHE_VERSION, "shards": _shards_key(paths)}
    meta = folder / "cache.json"
    if meta.exists() and json.loads(meta.read_text()).get("key") == key:
        log.info("using the training cache %s", folder)
        m = json.loads(meta.read_text())
        return SplitCache(m["keys"], *(np.load(folder / f"{a}.npy", mmap_mode="r") for a in ARRAYS))
    if folder.exists():
        log.info("rebuilding the training cache %s: the shards changed", folder)
    cache = decode_split(paths)  # verified again: cheap with the stamps
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for a in ARRAYS:
        np.save(tmp / f"{a}.npy", getattr(cache, a))
    write_json(tmp / "cache.json", {"key": key, "keys": cache.keys, "bytes": cache.nbytes})
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    log.info("wrote the training cache %s (%.1f MB)", folder, cache.nbytes / 1e6)
    return SplitCache(cache.keys, *(np.load(folder / f"{a}.npy", mmap_mode="r") for a in ARRAYS))


# -- selection ----------------------------------------------------------------------------------

def input_rng(seed: int, step: int, rank: int) -> np.random.Generator:
    """The stream that picks each sample's input portrait at ``step`` (apart from the target-view stream, so a
    split with one input per head draws exactly the samples and views it drew before inputs were chosen)."""
    return np.random.default_rng([seed, step, rank, 2])


def pick(n_samples: int, n_views: int, seed: int, step: int, rank: int, world: int, batch: int,
         n_targets: int, n_inputs: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample indices (B,) of this rank, target-view indices (B, V) and input-portrait indices (B,) of step
    ``step`` (``n_inputs``: portraits per sample): the same draws as :func:`recon.data.make_batch` (global batch
    drawn once, split by rank; inputs by :func:`input_rng` and :func:`recon.data.input_choice`)."""
    rng = np.random.default_rng([seed, step])
    idx = rng.choice(n_samples, size=batch * world, replace=n_samples < batch * world)[rank::world]
    vr = np.random.default_rng([seed, step, rank, 1])
    views = np.stack([vr.choice(n_views, size=min(n_targets, n_views), replace=False) for _ in idx])
    u = input_rng(seed, step, rank).random(len(idx))
    inputs = np.array([input_choice(x, n_inputs) for x in u], dtype=np.int64)
    return idx, views, inputs


def finish(inp: torch.Tensor, tgt: torch.Tensor, in_w2c: torch.Tensor, in_K: torch.Tensor, t_w2c: torch.Tensor,
           t_K: torch.Tensor, input_size: int, target_size: int) -> dict[str, torch.Tensor]:
    """uint8 RGBA views (B, H, W, 4) and (B, V, H, W, 4) -> the trainer's float batch, resized with
    area averaging (K scaled to match), exactly as :func:`recon.data.view_tensors` does per view."""
    B, V = tgt.shape[:2]

    def convert(x: torch.Tensor, K: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        H, W = x.shape[-3:-1]
        x = x.permute(0, 3, 1, 2)
        rgb, mask = x[:, :3].float() / 255, x[:, 3:].float() / 255
        K = K.clone()
        if (H, W) != (size, size):
            rgb = F.interpolate(rgb, size=(size, size), mode="area")
            mask = F.interpolate(mask, size=(size, size), mode="area")
            K[..., 0, :] *= size / W
            K[..., 1, :] *= size / H
        return rgb, mask, K

    rgb, _, K = convert(inp, in_K, input_size)
    t_rgb, t_mask, tK = convert(tgt.flatten(0, 1), t_K.flatten(0, 1), target_size)
    T = target_size
    return {"image": rgb, "w2c": in_w2c.float(), "K": K.float(), "t_rgb": t_rgb.reshape(B, V, 3, T, T),
            "t_mask": t_mask.reshape(B, V, 1, T, T), "t_w2c": t_w2c.float(), "t_K": tK.reshape(B, V, 3, 3).float()}


# -- batch sources ------------------------------------------------------------------------------

class DeviceBatches:
    """The whole cache on ``device``; ``batch(step)`` gathers, converts and resizes there."""

    kind = "device"

    def __init__(self, cache: SplitCache, device: torch.device, seed: int, rank: int, world: int, batch: int,
                 n_targets: int, input_size: int, target_size: int) -> None:
        self.n, self.nv, self.ni = len(cache), cache.targets.shape[1], cache.inputs.shape[1]
        self.args = (seed, rank, world, batch, n_targets)
        self.sizes = (input_size, target_size)
        self.device = device
        self.t = {a: torch.from_numpy(np.array(getattr(cache, a))).to(device) for a in ARRAYS}  # a copy: memmaps are read-only

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        seed, rank, world, batch, n_targets = self.args
        idx, views, inputs = pick(self.n, self.nv, seed, step, rank, world, batch, n_targets, self.ni)
        return gather_device(self.t, idx, views, inputs, *self.sizes)


def gather_device(t: dict[str, torch.Tensor], idx: np.ndarray, views: np.ndarray, inputs: np.ndarray, input_size: int,
                  target_size: int) -> dict[str, torch.Tensor]:
    """The float batch of samples ``idx`` (B,), target views ``views`` (B, V) and input portraits ``inputs`` (B,)
    from a cache held on the device as tensors ``t`` (:data:`ARRAYS`)."""
    dev = t["inputs"].device
    i = torch.from_numpy(idx).to(dev, non_blocking=True)
    v = torch.from_numpy(views).to(dev, non_blocking=True)
    j = torch.from_numpy(inputs).to(dev, non_blocking=True)
    return finish(t["inputs"][i, j], t["targets"][i[:, None], v], t["in_w2c"][i, j], t["in_K"][i, j],
                  t["t_w2c"][i[:, None], v], t["t_K"][i[:, None], v], input_size, target_size)


class _StepDataset(torch.utils.data.Dataset):
    """uint8 batches of given steps gathered from the memory-mapped cache (runs in loader workers)."""

    def __init__(self, cache: SplitCache, args: tuple) -> None:
        self.cache, self.args = cache, args

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, step: int) -> tuple[torch.Tensor, ...]:
        seed, rank, world, batch, n_targets = self.args
        c = self.cache
        idx, views, inputs = pick(len(c), c.targets.shape[1], seed, step, rank, world, batch, n_targets,
                                  c.inputs.shape[1])
        return gather_u8(c, idx, views, inputs)


def gather_u8(c: SplitCache, idx: np.ndarray, views: np.ndarray, inputs: np.ndarray) -> tuple[torch.Tensor, ...]:
    """The uint8 views and cameras of samples ``idx``, target views ``views`` (B, V) and input portraits ``inputs``
    read from a (memory-mapped) cache: :func:`finish`'s arguments but the sizes."""
    order = np.argsort(idx)  # read the memory map in file order, then restore the draw order
    inv = np.argsort(order)
    inp = np.asarray(c.inputs[idx[order], inputs[order]])[inv]
    tgt = np.stack([np.asarray(c.targets[j])[views[k]] for k, j in enumerate(idx)])
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (
        inp, tgt, c.in_w2c[idx, inputs], c.in_K[idx, inputs], np.stack([c.t_w2c[j][views[k]] for k, j in enumerate(idx)]),
        np.stack([c.t_K[j][views[k]] for k, j in enumerate(idx)])))


class StreamBatches:
    """Batches streamed from the memory-mapped cache by DataLoader workers into pinned memory."""

    kind = "stream"

    def __init__(self, cache: SplitCache, device: torch.device, seed: int, rank: int, world: int, batch: int,
                 n_targets: int, input_size: int, target_size: int, start: int, end: int, workers: int) -> None:
        self.device, self.sizes = device, (input_size, target_size)
        ds = _StepDataset(cache, (seed, rank, world, batch, n_targets))
        self.loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=range(start, end), num_workers=workers,
                                                  pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
                                                  persistent_workers=False)
        self.it = iter(self.loader)
        self.next_step = start

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        if step != self.next_step:
            raise RuntimeError(f"stream batches go in order: asked for step {step}, next is {self.next_step}")
        self.next_step += 1
        parts = [x.to(self.device, non_blocking=True) for x in next(self.it)]
        return finish(*parts, *self.sizes)


class DecodeBatches:
    """The reference path: decode the chosen PNGs on the host every step (:func:`recon.data.make_batch`)."""

    kind = "decode"

    def __init__(self, shards: str | os.PathLike[str] | list[str], device: torch.device, seed: int, rank: int,
                 world: int, batch: int, n_targets: int, input_size: int, target_size: int) -> None:
        self.data = RawSamples(shards)
        self.device, self.args, self.sizes = device, (seed, rank, world, batch, n_targets), (input_size, target_size)

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        seed, rank, world, batch, n_targets = self.args
        rng = np.random.default_rng([seed, step])
        idx = rng.choice(len(self.data), size=batch * world, replace=len(self.data) < batch * world)[rank::world].tolist()
        b = make_batch(self.data, idx, np.random.default_rng([seed, step, rank, 1]), *self.sizes, n_targets,
                       input_rng(seed, step, rank))
        return {k: v.to(self.device) for k, v in b.items()}


def batch_source(kind: str, shards: str | os.PathLike[str] | list[str], cache_dir: str | os.PathLike[str] | None,
                 device: torch.device, seed: int, rank: int, world: int, batch: int, n_targets: int, input_size: int,
                 target_size: int, start: int, end: int, workers: int):
    """The configured batch source; ``auto`` holds the cache on the device when it takes under a third
    of the free device memory (always on CPU, where "device" memory is the host's), else streams it."""
    if kind == "decode":
        return DecodeBatches(shards, device, seed, rank, world, batch, n_targets, input_size, target_size)
    cache = load_or_build(shards, cache_dir) if cache_dir is not None else decode_split(shards)
    if kind == "auto":
        fits = device.type != "cuda" or cache.nbytes < torch.cuda.mem_get_info(device)[0] / 3
        kind = "device" if fits else "stream"
        log.info("training data: %s path (cache %.2f GB)", kind, cache.nbytes / 1e9)
    if kind == "device":
        return DeviceBatches(cache, device, seed, rank, world, batch, n_targets, input_size, target_size)
    return StreamBatches(cache, device, seed, rank, world, batch, n_targets, input_size, target_size, start, end, workers)
