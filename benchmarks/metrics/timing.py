"""Timing harness: CUDA events (after synchronisation) on GPU, wall clock on CPU; median of N.

``Timer``/``device_record`` are v1 (one call per head); ``time_model``/``benchmark_model`` are v2 (the model
call alone on prepared tensors, repeated, median and IQR, with GPU clocks and other processes).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
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


# ------------------------------------------------------------------ v2: the model call alone, with its context
#
# v1 times ``method.reconstruct(sample)`` once per head, preprocessing included, and ranked identical graphs
# 11.8-16.3 ms apart across sessions. v2 times the model call on already-prepared tensors, repeated after
# warm-up, reports median and IQR, and records what else shapes the number: GPU clocks and other processes.

CARD_V2: dict[str, object] = {
    "what": "the inference module alone, called on already-prepared input tensors (decoding, resizing, compositing "
            "and host-to-device copies are timed separately as preprocessing)",
    "timer": "CUDA events around each call after torch.cuda.synchronize() on GPU; time.perf_counter on CPU",
    "repeats": "warm-up calls first (kernel selection, caches, lazy init), then N timed calls",
    "statistics": "median and interquartile range (q75 - q25) of the N calls, milliseconds",
    "context": "device record, SM/memory clocks and other GPU compute processes before and after the timed calls",
}


@dataclass(frozen=True)
class TimingStats:
    """Repeated timings of one callable (milliseconds)."""

    times_ms: tuple[float, ...]
    warmup: int
    timer: str

    @property
    def n(self) -> int:
        return len(self.times_ms)

    @property
    def median_ms(self) -> float:
        return float(np.median(self.times_ms)) if self.times_ms else float("nan")

    @property
    def q25_ms(self) -> float:
        return float(np.quantile(self.times_ms, 0.25)) if self.times_ms else float("nan")

    @property
    def q75_ms(self) -> float:
        return float(np.quantile(self.times_ms, 0.75)) if self.times_ms else float("nan")

    @property
    def iqr_ms(self) -> float:
        return self.q75_ms - self.q25_ms

    def summary(self) -> dict[str, float | int | str]:
        """JSON-ready numbers (without the raw list)."""
        t = np.asarray(self.times_ms) if self.times_ms else np.array([np.nan])
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "q25_ms": self.q25_ms, "q75_ms": self.q75_ms,
                "mean_ms": float(t.mean()), "min_ms": float(t.min()), "max_ms": float(t.max()), "n": self.n,
                "warmup": self.warmup, "timer": self.timer}


def time_callable(fn: Callable[[], object], device: torch.device | str = "cpu", iters: int = 20,
                  warmup: int = 5, no_grad: bool = True) -> TimingStats:
    """Time ``fn()`` ``iters`` times after ``warmup`` untimed calls (CUDA events on a CUDA device), under
    ``torch.no_grad()`` unless ``no_grad=False`` (a per-subject optimisation needs gradients)."""
    t = Timer(device)
    with torch.no_grad() if no_grad else contextlib.nullcontext():
        ms = t.time(fn, iters, warmup)
    return TimingStats(tuple(float(x) for x in ms), warmup, t.kind)


def time_model(model: Callable[..., object], *inputs: object, device: torch.device | str = "cpu", iters: int = 20,
               warmup: int = 5, no_grad: bool = True) -> TimingStats:
    """Time ``model(*inputs)`` on inputs already prepared (and already on ``device``)."""
    return time_callable(lambda: model(*inputs), device, iters, warmup, no_grad)


def _nvidia_smi(args: list[str]) -> str | None:
    import subprocess

    try:
        r = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):  # no driver / no nvidia-smi on CPU machines
        return None
    return r.stdout if r.returncode == 0 else None


CLOCK_FIELDS = ("index", "name", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem", "pstate",
                "temperature.gpu", "power.draw", "utilization.gpu", "clocks_throttle_reasons.active")


def parse_gpu_query(text: str, fields: tuple[str, ...] = CLOCK_FIELDS) -> list[dict[str, str | float]]:
    """Rows of ``nvidia-smi --query-gpu=... --format=csv,noheader,nounits`` as dicts (numbers as floats)."""
    rows = []
    for line in text.strip().splitlines():
        vals = [v.strip() for v in line.split(",")]
        if len(vals) != len(fields):
            continue
        row: dict[str, str | float] = {}
        for k, v in zip(fields, vals):
            try:
                row[k] = float(v)
            except ValueError:
                row[k] = v
        rows.append(row)
    return rows


def gpu_clocks(index: int | None = None) -> list[dict[str, str | float]]:
    """Current SM/memory clocks (MHz), their maxima, P-state, temperature, power, utilisation and throttle
    reasons of the GPUs (or GPU ``index``); [] where there is no NVIDIA driver."""
    args = [f"--query-gpu={','.join(CLOCK_FIELDS)}", "--format=csv,noheader,nounits"]
    if index is not None:
        args.insert(0, f"--id={index}")
    out = _nvidia_smi(args)
    return parse_gpu_query(out) if out else []


def parse_compute_apps(text: str, own_pid: int | None = None) -> list[dict[str, str | float]]:
    """Rows of ``nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_uuid --format=csv,noheader,nounits``,
    without ``own_pid``."""
    rows = parse_gpu_query(text, ("pid", "process_name", "used_memory_mib", "gpu_uuid"))
    return [r for r in rows if own_pid is None or int(r["pid"]) != own_pid]


def gpu_processes() -> list[dict[str, str | float]] | None:
    """Other processes computing on the GPUs (pid, name, memory); None where nvidia-smi is unavailable."""
    import os

    out = _nvidia_smi(["--query-compute-apps=pid,process_name,used_memory,gpu_uuid", "--format=csv,noheader,nounits"])
    return None if out is None else parse_compute_apps(out, os.getpid())


def gpu_context(device: torch.device | str) -> dict[str, object]:
    """What else shapes a GPU timing now: clocks and other processes (empty on CPU)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return {}
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    return {"clocks": gpu_clocks(idx), "other_processes": gpu_processes()}


def benchmark_model(model: Callable[..., object], inputs: tuple[object, ...], device: torch.device | str,
                    prepare: Callable[[], object] | None = None, iters: int = 20, warmup: int = 5) -> dict[str, object]:
    """The v2 timing record: the model call on prepared ``inputs`` (median, IQR), optionally the preprocessing
    ``prepare()`` timed on its own, device record, and GPU context before and after."""
    before = gpu_context(device)
    model_t = time_model(model, *inputs, device=device, iters=iters, warmup=warmup)
    after = gpu_context(device)
    rec: dict[str, object] = {"model": model_t.summary(), "device": device_record(device)}
    if prepare is not None:
        rec["preprocess"] = time_callable(prepare, device, iters=max(3, iters // 4), warmup=1).summary()
    if before or after:
        rec["gpu_before"], rec["gpu_after"] = before, after
    return rec
