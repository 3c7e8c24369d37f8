"""Timing harness: CUDA events (after synchronisation) on GPU, wall clock on CPU; median of N."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


class Timer:
    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"

    @property
    def kind(self) -> str:
        return "cuda events" if self.cuda else "wall clock"

    def once(self, fn: Callable[[], object]) -> tuple[object, float]:
        """Run ``fn`` once; return (result, milliseconds)."""
        if self.cuda:
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            r = fn()
            b.record()
            torch.cuda.synchronize()
            return r, a.elapsed_time(b)
        t = time.perf_counter()
        r = fn()
        return r, (time.perf_counter() - t) * 1000

    def time(self, fn: Callable[[], object], iters: int, warmup: int) -> list[float]:
        for _ in range(warmup):
            fn()
        return [self.once(fn)[1] for _ in range(iters)]

    def median(self, fn: Callable[[], object], iters: int, warmup: int) -> float:
        return statistics.median(self.time(fn, iters, warmup))


def device_record(device: torch.device | str) -> dict[str, object]:
    import platform
    import subprocess

    dev = torch.device(device)
    rec: dict[str, object] = {"device_type": dev.type, "torch": torch.__version__}
    if dev.type == "cuda":
        rec["gpu"] = torch.cuda.get_device_name(dev)
        rec["cuda_runtime"] = torch.version.cuda
        try:
            rec["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except Exception:  # nvidia-smi missing: record what we know
            rec["driver"] = "unknown"
    else:
        rec["cpu"] = platform.processor() or platform.machine()
    return rec
