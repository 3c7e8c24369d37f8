"""A torch IterableDataset over AnyHead shards.

Shards are split across nodes (``torch.distributed`` rank/world size, or ``RANK``/``WORLD_SIZE``)
and then across DataLoader workers, so each sample is read once per epoch. Each shard is checked
against its manifest's sha256 before its first use (``anyhead.shards.verify_shard``, with a cached
stamp, so an unchanged shard is hashed once). A shard that fails verification or cannot be read is
skipped with a log line naming it, the member where known, the error, and how many of its samples
had been read; a sample that fails to decode is skipped and logged with its key and member.
``skipped`` keeps the record for the caller; ``strict=True`` raises the ``ShardError`` instead.
"""
from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .samples import SampleError, decode_sample
from .shards import ShardError, read_tar_samples

log = logging.getLogger(__name__)


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_list(spec: str | os.PathLike[str] | list[str]) -> list[str]:
    """Shard paths from a folder, a glob, or a list."""
    if isinstance(spec, (list, tuple)):
        return [str(s) for s in spec]
    p = Path(spec)
    if p.is_dir():
        return sorted(str(s) for s in p.glob("*.tar"))
    return sorted(glob.glob(str(spec)))


def to_tensors(sample: dict[str, Any]) -> dict[str, Any]:
    """Stack a decoded sample's views into tensors: images (V,3,H,W) in [0,1], masks (V,1,H,W),
    w2c (V,4,4), K (V,3,3); inputs and targets separately."""
    out: dict[str, Any] = {"key": sample.key, "meta": sample.meta}
    for role in ("input", "target"):
        vs = [v for v in sample.views if v.role == role]
        if not vs:
            continue
        out[f"{role}_rgb"] = torch.from_numpy(np.stack([v.rgb[..., :3] for v in vs])).permute(0, 3, 1, 2).float() / 255
        out[f"{role}_mask"] = torch.from_numpy(np.stack([v.mask for v in vs]))[:, None]
        out[f"{role}_w2c"] = torch.from_numpy(np.stack([v.camera.w2c for v in vs])).float()
        out[f"{role}_K"] = torch.from_numpy(np.stack([v.camera.K for v in vs])).float()
        out[f"{role}_yaw"] = torch.tensor([float(v.yaw or 0.0) for v in vs])
    if sample.points is not None:
        out["points"] = torch.from_numpy(sample.points)
    return out


class ShardDataset(torch.utils.data.IterableDataset):
    """Iterate decoded samples of AnyHead shards (see module docstring)."""

    def __init__(self, shards: str | os.PathLike[str] | list[str], transform: Callable[[dict], Any] | None = to_tensors,
                 shuffle_shards: bool = False, seed: int = 0, verify: bool = True, strict: bool = False,
                 stamp_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.verify, self.strict, self.stamp_dir = verify, strict, stamp_dir
        self.shards = shard_list(shards)
        if not self.shards:
            raise FileNotFoundError(f"{shards}: no shards (.tar) found")
        self.transform = transform
        self.shuffle_shards = shuffle_shards
        self.seed = seed
        self.epoch = 0
        self.skipped: list[dict[str, Any]] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def my_shards(self) -> list[str]:
        shards = list(self.shards)
        if self.shuffle_shards:
            np.random.default_rng(self.seed + self.epoch).shuffle(shards)
        rank, world = _rank_world()
        shards = shards[rank::world]
        info = torch.utils.data.get_worker_info()
        if info is not None:
            shards = shards[info.id::info.num_workers]
        return shards

    def __iter__(self) -> Iterator[Any]:
        for shard in self.my_shards():
            n = 0
            try:
                for files in read_tar_samples(shard, verify=self.verify, stamp_dir=self.stamp_dir):
                    try:
                        sample = decode_sample(files)
                    except Exception as e:  # one bad sample must not end the epoch
                        if self.strict:
                            member = e.member if isinstance(e, SampleError) else None
                            raise ShardError(shard, f"sample {files.get('__key__')}: {e}", member) from e
                        self._skip(shard, files.get("__key__"), e)
                        continue
                    n += 1
                    yield self.transform(sample) if self.transform else sample
            except Exception as e:  # failed verification, corrupt/truncated tar: skip the rest of this shard
                if self.strict:
                    raise
                self._skip(shard, None, e, n)

    def _skip(self, shard: str, key: str | None, err: Exception, n_read: int | None = None) -> None:
        member = getattr(err, "member", None)
        rec = {"shard": shard, "key": key, "member": member, "error": f"{type(err).__name__}: {err}",
               "samples_read": n_read}
        self.skipped.append(rec)
        if key is None:
            log.warning("skipped the rest of shard %s after %s samples: %s", shard, n_read, rec["error"])
        else:
            log.warning("skipped sample %s in shard %s: %s", key, shard, rec["error"])
