"""Real data in training: single-view photos and calibrated captures mixed into the batches of the renders.

Three pools of samples, each decoded (or held encoded) like the training split (:mod:`recon.cache`):

* ``train``: the rendered heads (multi-view, with GT geometry);
* ``captures`` (``train.use_captures``): the normalised multi-view captures (``captures`` split); they join the
  renders in one multi-view pool, drawn uniformly over both, with every loss term on their target views;
* ``photos`` (``train.photo_mix`` > 0): single-view portraits (``photos`` split). A fraction ``photo_mix`` of each
  global batch is drawn from them (stochastically rounded per step from (seed, step), so the fraction is exact in
  expectation and exact per batch when ``photo_mix * batch`` is whole). A photo's only supervised view is its
  input: its ``V`` target slots all hold the input view at the input camera, with view weights ``[1, 0, ..., 0]``,
  so every loss term (foreground-weighted L1 with the matte as mask, SSIM, LPIPS, alpha vs matte, the auxiliary
  head) sees the input view alone and the padding views get no gradient (:class:`recon.losses.ReconLoss`).

Real images keep their background in the shards; they are composited on white with their mask when decoded
(:func:`recon.data.on_white_views`), as renders are rendered on white and inputs are at inference.

A mixed batch has the keys of a plain one plus ``t_weight`` (B, V) (each view's weight in the loss), ``geo`` (B,)
(1 where the sample has ground-truth geometry: renders, and captures built with a mesh or depth images,
``meta.json`` ``gt_points``; 0 for photos and for captures without) and ``photo`` (B,) (1 for a photo sample). The
trainer's loss has no geometry term yet (no depth, normal or GT-point loss), so ``geo`` is carried for such terms to
weigh by; the photometric and silhouette terms apply to every sample on its weighted views.

Every step's selection is a pure function of (seed, step, rank) (:func:`select`), shared by the three data paths
(device, stream, decode), which therefore yield identical batches. With ``photo_mix: 0`` and ``use_captures: false``
:func:`training_batches` returns the plain source of :func:`recon.cache.batch_source`: the batches of before.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from anyhead.config import ConfigError
from anyhead.loader import shard_list
from anyhead.shards import read_tar_samples

from .cache import SplitCache, batch_source, decode_split, finish, gather_device, gather_u8, input_rng, load_or_build
from .config import TrainConfig
from .data import RawSamples, input_choice, view_tensors

log = logging.getLogger(__name__)
Shards = str | os.PathLike[str] | list[str]


@dataclass(frozen=True)
class PoolInfo:
    """What the selection needs to know of a pool."""

    name: str
    n: int  # samples
    n_views: int  # target views per sample (a photo: 1, its input)
    n_inputs: int  # input portraits per sample
    single_view: bool


@dataclass
class Selection:
    """One rank's draw at one step: for each batch slot its pool, sample, target views and input portrait."""

    pool: np.ndarray  # (B,) pool index
    idx: np.ndarray  # (B,) sample index in its pool
    views: list[np.ndarray]  # per slot: target-view indices (min(V, n_views) of them)
    inputs: np.ndarray  # (B,) input portrait index


def photo_count(photo_mix: float, global_batch: int, u: float) -> int:
    """Photo samples in a global batch: ``photo_mix * global_batch`` rounded down, plus one with probability its
    fractional part (``u`` uniform in [0, 1))."""
    x = photo_mix * global_batch
    return int(math.floor(x)) + int(u < x - math.floor(x))


def select(pools: list[PoolInfo], photo_mix: float, seed: int, step: int, rank: int, world: int, batch: int,
           n_targets: int) -> Selection:
    """The slots of ``rank``'s batch at ``step``: the global batch (``batch * world``) is drawn once, photos first,
    then multi-view samples uniformly over the union of the multi-view pools, and split by rank (``[rank::world]``,
    which spreads the photos evenly over the ranks). Target views and input portraits are drawn per slot from the
    streams :func:`recon.cache.pick` uses."""
    G = batch * world
    r = np.random.default_rng([seed, step, 3])
    photo = [k for k, p in enumerate(pools) if p.single_view]
    multi = [k for k, p in enumerate(pools) if not p.single_view]
    u = r.random()
    n_ph = photo_count(photo_mix, G, u) if photo else 0
    sizes = np.array([pools[k].n for k in multi])
    offs = np.concatenate([[0], np.cumsum(sizes)])
    N = int(offs[-1])
    draw = r.choice(N, size=G - n_ph, replace=N < G - n_ph)
    which = np.searchsorted(offs, draw, side="right") - 1
    pool = np.concatenate([np.full(n_ph, photo[0] if photo else -1), np.array(multi)[which]]).astype(np.int64)
    idx = np.concatenate([r.choice(pools[photo[0]].n, size=n_ph, replace=pools[photo[0]].n < n_ph) if n_ph else [],
                          draw - offs[which]]).astype(np.int64)
    pool, idx = pool[rank::world], idx[rank::world]
    ui = input_rng(seed, step, rank).random(len(idx))
    inputs = np.array([input_choice(x, pools[p].n_inputs) for x, p in zip(ui, pool)], dtype=np.int64)
    vr = np.random.default_rng([seed, step, rank, 1])
    # a photo's one supervised view is the input it is given
    views = [inputs[k:k + 1] if pools[p].single_view else
             vr.choice(pools[p].n_views, size=min(n_targets, pools[p].n_views), replace=False) for k, p in enumerate(pool)]
    return Selection(pool, idx, views, inputs)


def assemble(sel: Selection, pools: list[PoolInfo], geo: list[np.ndarray], parts: dict[int, dict[str, torch.Tensor]],
             n_targets: int) -> dict[str, torch.Tensor]:
    """One batch in slot order from each pool's gathered sub-batch (``parts[k]``: the slots of pool ``k`` in slot
    order), with ``t_weight``, ``geo`` and ``photo``; a photo's one view is repeated into the ``V`` target slots
    with weight 1 on the first only."""
    V = n_targets
    out: list[dict[str, torch.Tensor]] = []
    order: list[np.ndarray] = []
    for k in sorted(parts):
        b = dict(parts[k])
        pos = np.nonzero(sel.pool == k)[0]
        n = len(pos)
        dev = b["image"].device
        w = torch.ones(n, V, device=dev)
        if pools[k].single_view:
            for key in ("t_rgb", "t_mask", "t_w2c", "t_K"):
                b[key] = b[key][:, :1].expand(n, V, *b[key].shape[2:]).contiguous()
            w[:, 1:] = 0
        b["t_weight"] = w
        b["geo"] = torch.from_numpy(geo[k][sel.idx[pos]].astype(np.float32)).to(dev)
        b["photo"] = torch.full((n,), float(pools[k].single_view), device=dev)
        out.append(b)
        order.append(pos)
    inv = torch.from_numpy(np.argsort(np.concatenate(order))).to(out[0]["image"].device)
    return {key: torch.cat([b[key] for b in out])[inv] for key in out[0]}


# -- pools --------------------------------------------------------------------------------------

def _metas(shards: Shards) -> list[dict[str, Any]]:
    """Every sample's meta.json of a split, in the order of the shards and their members (the caches' order)."""
    return [json.loads(files["meta.json"]) for p in shard_list(shards) for files in read_tar_samples(p)]


def _geo_flags(name: str, metas: list[dict[str, Any]]) -> np.ndarray:
    """GT geometry per sample: renders always have it, photos never, captures per their ``gt_points`` flag."""
    if name == "train":
        return np.ones(len(metas), bool)
    return np.array([bool(m.get("gt_points", False)) and not m.get("single_view", False) for m in metas], bool)


def gather_decoded(samples: RawSamples, single_view: bool, idx: np.ndarray, views: np.ndarray, inputs: np.ndarray,
                   input_size: int, target_size: int) -> dict[str, torch.Tensor]:
    """:func:`recon.cache.gather_device`'s batch decoded from PNGs (the reference path; a single-view sample's target
    is its input view)."""
    out: dict[str, list] = {k: [] for k in ("image", "w2c", "K", "t_rgb", "t_mask", "t_w2c", "t_K")}
    for k, i in enumerate(idx):
        cams = samples.views(int(i))
        inputs_ = [v["name"] for v in cams if v["role"] == "input"]
        targets_ = inputs_ if single_view else [v["name"] for v in cams if v["role"] == "target"]
        inp_name = inputs_[int(inputs[k])]
        chosen = [targets_[int(j)] for j in views[k]]
        s = samples.decode(int(i), {inp_name, *chosen})
        by_name = {v.name: v for v in s.views}
        rgb, _, K = view_tensors(by_name[inp_name], input_size)
        out["image"].append(rgb)
        out["w2c"].append(torch.from_numpy(by_name[inp_name].camera.w2c).float())
        out["K"].append(torch.from_numpy(K).float())
        t = [view_tensors(by_name[n], target_size) for n in chosen]
        out["t_rgb"].append(torch.stack([x[0] for x in t]))
        out["t_mask"].append(torch.stack([x[1] for x in t]))
        out["t_w2c"].append(torch.stack([torch.from_numpy(by_name[n].camera.w2c).float() for n in chosen]))
        out["t_K"].append(torch.stack([torch.from_numpy(x[2]).float() for x in t]))
    return {k: torch.stack(v) for k, v in out.items()}


def _decoded_info(name: str, samples: RawSamples, single_view: bool, shards: Shards) -> PoolInfo:
    """A decode-path pool's counts (one layout per pool, as the cache requires)."""
    layouts = set()
    for i in range(len(samples)):
        cams = samples.views(i)
        ni = sum(v["role"] == "input" for v in cams)
        layouts.add((ni, ni if single_view else sum(v["role"] == "target" for v in cams)))
    if len(layouts) > 1:
        raise ValueError(f"{shards}: samples have different input/target view counts {sorted(layouts)}; one layout per split")
    ni, nv = layouts.pop()
    return PoolInfo(name, len(samples), nv, ni, single_view)


class MixedBatches:
    """Batches mixing the pools (see the module doc); ``kind`` is the data path (device, stream or decode)."""

    def __init__(self, kind: str, pools: list[PoolInfo], geo: list[np.ndarray], photo_mix: float,
                 gather: Callable[[int, np.ndarray, np.ndarray, np.ndarray], dict[str, torch.Tensor]] | None,
                 device: torch.device, seed: int, rank: int, world: int, batch: int, n_targets: int,
                 loader: Any = None, sizes: tuple[int, int] = (0, 0), start: int = 0) -> None:
        self.kind, self.pools, self.geo, self.photo_mix, self.gather = kind, pools, geo, photo_mix, gather
        self.device, self.args, self.sizes = device, (seed, rank, world, batch, n_targets), sizes
        self.it = iter(loader) if loader is not None else None
        self.next_step = start

    def selection(self, step: int) -> Selection:
        seed, rank, world, batch, n_targets = self.args
        return select(self.pools, self.photo_mix, seed, step, rank, world, batch, n_targets)

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        V = self.args[4]
        if self.it is not None:  # stream: the workers selected and gathered the uint8 views
            if step != self.next_step:
                raise RuntimeError(f"stream batches go in order: asked for step {step}, next is {self.next_step}")
            self.next_step += 1
            sel_t, raw = next(self.it)
            sel = Selection(sel_t[0].numpy(), sel_t[1].numpy(), [], sel_t[2].numpy())
            parts = {int(k): finish(*[x.to(self.device, non_blocking=True) for x in v], *self.sizes) for k, v in raw.items()}
            return assemble(sel, self.pools, self.geo, parts, V)
        sel = self.selection(step)
        parts = {}
        for k in sorted(set(sel.pool.tolist())):
            pos = np.nonzero(sel.pool == k)[0]
            parts[k] = self.gather(k, sel.idx[pos], np.stack([sel.views[p] for p in pos]), sel.inputs[pos])
        return assemble(sel, self.pools, self.geo, parts, V)


class _MixStepDataset(torch.utils.data.Dataset):
    """The stream path's workers: a step's selection and each pool's uint8 views from the memory-mapped caches."""

    def __init__(self, caches: list[SplitCache], pools: list[PoolInfo], photo_mix: float, args: tuple) -> None:
        self.caches, self.pools, self.photo_mix, self.args = caches, pools, photo_mix, args

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, step: int) -> tuple[tuple[torch.Tensor, ...], dict[int, tuple[torch.Tensor, ...]]]:
        seed, rank, world, batch, n_targets = self.args
        sel = select(self.pools, self.photo_mix, seed, step, rank, world, batch, n_targets)
        raw = {}
        for k in sorted(set(sel.pool.tolist())):
            pos = np.nonzero(sel.pool == k)[0]
            raw[k] = gather_u8(self.caches[k], sel.idx[pos], np.stack([sel.views[p] for p in pos]), sel.inputs[pos])
        return (torch.from_numpy(sel.pool), torch.from_numpy(sel.idx), torch.from_numpy(sel.inputs)), raw


def _cache_info(name: str, c: SplitCache, single_view: bool) -> PoolInfo:
    return PoolInfo(name, len(c), c.targets.shape[1], c.inputs.shape[1], single_view)


def training_batches(cfg: TrainConfig, shards: Shards, cache_dir: str | os.PathLike[str] | None, device: torch.device,
                     rank: int, world: int, input_size: int, start: int, photos: Shards | None = None,
                     captures: Shards | None = None, photos_cache: str | os.PathLike[str] | None = None,
                     captures_cache: str | os.PathLike[str] | None = None):
    """The trainer's batch source. Without ``photo_mix`` and ``use_captures`` it is :func:`recon.cache.batch_source`
    (unchanged batches); else a :class:`MixedBatches` over the pools, on the configured data path. Missing or unusable
    real data is a :class:`anyhead.config.ConfigError` naming the key and the folder, before any training."""
    B, V, T, seed = cfg.batch_size, cfg.n_targets, cfg.target_size, cfg.seed
    if cfg.photo_mix == 0 and not cfg.use_captures:
        return batch_source(cfg.data_path, shards, cache_dir, device, seed, rank, world, B, V, input_size, T, start,
                            cfg.steps, cfg.loader_workers)
    wanted: list[tuple[str, Shards, Any, bool]] = [("train", shards, cache_dir, False)]
    if cfg.use_captures:
        if captures is None or not shard_list(captures):
            raise ConfigError("train.use_captures", f"true, but {captures} holds no capture samples: list capture folders "
                                                    "in captures.dirs and rerun the captures and shards stages, or set it to false")
        wanted.append(("captures", captures, captures_cache, False))
    if cfg.photo_mix > 0:
        if photos is None or not shard_list(photos):
            raise ConfigError("train.photo_mix", f"{cfg.photo_mix} > 0, but {photos} holds no photo samples: add portraits "
                                                 "(photos.dirs, photos.builtin_astronaut) and rerun the shards stage, or set it to 0")
        wanted.append(("photos", photos, photos_cache, True))
    metas = {name: (_metas(s) if name != "train" else None) for name, s, _, _ in wanted}
    for name, s, _, single in wanted:
        bad = [m.get("asset_id") for m in metas[name] or [] if bool(m.get("single_view")) != single]
        if bad:
            raise ConfigError(f"train.{'photo_mix' if single else 'use_captures'}",
                              f"{s}: sample {bad[0]} is {'not ' if single else ''}single-view; the {name} split must hold "
                              f"{'single-view photos' if single else 'multi-view samples'} only")
    sizes = (input_size, T)
    args = (device, seed, rank, world, B, V)
    if cfg.data_path == "decode":
        raws = [RawSamples(s) for _, s, _, _ in wanted]
        infos = [_one_layout(name, lambda r=r, name=name, s=s, single=single: _decoded_info(name, r, single, s))
                 for (name, s, _, single), r in zip(wanted, raws)]
        geo = [_geo_flags(name, metas[name] or [{}] * len(r)) for (name, *_), r in zip(wanted, raws)]
        _check_views(infos, V, wanted)
        return MixedBatches("decode", infos, geo, cfg.photo_mix,
                            lambda k, i, v, j: {x: t.to(device) for x, t in gather_decoded(
                                raws[k], infos[k].single_view, i, v, j, *sizes).items()}, *args)
    caches = [_one_layout(name, lambda s=s, c=c: load_or_build(s, c) if c is not None else decode_split(s))
              for name, s, c, _ in wanted]
    infos = [_cache_info(name, c, single) for (name, _, _, single), c in zip(wanted, caches)]
    geo = [_geo_flags(name, metas[name] or [{}] * len(c)) for (name, *_), c in zip(wanted, caches)]
    _check_views(infos, V, wanted)
    kind = cfg.data_path
    total = sum(c.nbytes for c in caches)
    if kind == "auto":
        fits = device.type != "cuda" or total < torch.cuda.mem_get_info(device)[0] / 3
        kind = "device" if fits else "stream"
    log.info("training data: %s path, pools %s (caches %.2f GB), photo_mix %g", kind,
             ", ".join(f"{p.name} {p.n}" for p in infos), total / 1e9, cfg.photo_mix)
    if kind == "device":
        held = [{a: torch.from_numpy(np.array(getattr(c, a))).to(device) for a in ("inputs", "targets", "in_w2c", "in_K",
                                                                                    "t_w2c", "t_K")} for c in caches]
        return MixedBatches("device", infos, geo, cfg.photo_mix, lambda k, i, v, j: gather_device(held[k], i, v, j, *sizes),
                            *args)
    ds = _MixStepDataset(caches, infos, cfg.photo_mix, (seed, rank, world, B, V))
    w = cfg.loader_workers
    loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=range(start, cfg.steps), num_workers=w,
                                         pin_memory=device.type == "cuda", prefetch_factor=4 if w else None)
    return MixedBatches("stream", infos, geo, cfg.photo_mix, None, *args, loader=loader, sizes=sizes, start=start)


def _one_layout(name: str, build: Callable[[], Any]) -> Any:
    """``build()``; a pool whose samples differ in view counts or sizes (captures with fewer views than
    ``captures.max_targets``) is a ConfigError naming the key that brought it in."""
    try:
        return build()
    except ValueError as e:
        if name == "train" or "layout" not in str(e):
            raise
        key, hint = {"captures": ("train.use_captures", "give every capture subject the same number of views, or set "
                                                        "captures.max_targets to the smallest subject's views minus one"),
                     "photos": ("train.photo_mix", "photos.res is the same for all photos: rebuild the shards stage")}[name]
        raise ConfigError(key, f"{e}; {hint}") from None


def _check_views(infos: list[PoolInfo], n_targets: int, wanted: list) -> None:
    for p, (_, s, _, _) in zip(infos, wanted):
        if not p.single_view and p.n_views < n_targets:
            raise ConfigError("train.n_targets", f"{n_targets} is more than the {p.n_views} target views of the {p.name} "
                                                 f"samples in {s}" + (" (captures.max_targets)" if p.name == "captures" else ""))
