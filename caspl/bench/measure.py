"""Timing (warmup, then interleaved repeats; each variant's minimum) and peak memory per call.

On a shared machine outside load only ever adds time, so the minimum of repeats interleaved A B A B ...
is the best estimate of each variant's own cost, and ratios of minima taken in the same interleaved run
are not moved by load that changes between rows. `spread` (slowest / fastest repeat) says how noisy a
variant was.

Peak memory: on CUDA the allocator's peak (`torch.cuda.max_memory_allocated`, reset before each call);
on CPU the process's resident-set high-water mark (VmHWM in /proc/self/status), reset before each call by
writing "5" to /proc/self/clear_refs (Linux >= 4.0). Python-level tools (tracemalloc, getrusage deltas)
miss torch's native allocations or cannot be reset, and psutil exposes no peak RSS on Linux. Where the
reset is refused the value is the lifetime peak of the process (`Measurement.mem_resettable` is False).
"""

import contextlib
import ctypes
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> float | None:
    """A "<key>: N kB" field of /proc/self/status, or None off Linux."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS reflects live memory."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


class PeakMemory:
    """Peak memory (MiB) of the device over one block; `base_mb` is what was in use when it began."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base_mb: float | None = None
        self.peak_mb: float | None = None
        self.resettable = True

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base_mb = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        try:
            _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            self.resettable = False
        rss = _status_kb("VmRSS")
        self.base_mb = rss / 1024 if rss is not None else None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        hwm = _status_kb("VmHWM")
        if hwm is not None:
            self.peak_mb = hwm / 1024
        else:  # no /proc: the lifetime peak (kB on Linux, bytes on macOS)
            self.resettable = False
            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak_mb = maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024


@dataclass
class Measurement:
    """Wall times (s) of the timed repeats and the largest per-call peak memory (MiB)."""

    seconds: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    base_mb: float | None = None
    mem_resettable: bool = True

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min_s(self) -> float:
        return min(self.seconds)

    @property
    def spread(self) -> float:
        """Slowest over fastest timed repeat (1.0: no noise seen)."""
        return max(self.seconds) / min(self.seconds)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fns: dict[str, Callable[[], object]],
    device: torch.device,
    warmup: int = 1,
    repeats: int = 3,
    reset: Callable[[], None] | None = None,
) -> dict[str, Measurement]:
    """Time each callable `repeats` times after `warmup` calls, interleaved (ABAB...) so load drift on a
    shared machine hits every callable alike; `reset` runs untimed before each call (e.g. clear grads).

    Peak memory is taken on the warmup calls (the first call's one-off allocations count), each after
    handing freed heap back to the OS; the timed calls run without that, on a warm allocator, as a training
    loop does. With no warmup the timed calls carry the memory probe.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    out = {name: Measurement() for name in fns}
    for round_ in range(warmup + repeats):
        probe = round_ < max(warmup, 1)
        for name, fn in fns.items():
            if reset is not None:
                reset()
            if probe:
                release_memory()
            with PeakMemory(device) if probe else contextlib.nullcontext() as mem:
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                elapsed = time.perf_counter() - start
            m = out[name]
            if mem is not None:
                m.mem_resettable = m.mem_resettable and mem.resettable
                if mem.peak_mb is not None:
                    m.peak_mb = max(m.peak_mb or 0.0, mem.peak_mb)
                if mem.base_mb is not None:
                    m.base_mb = mem.base_mb if m.base_mb is None else min(m.base_mb, mem.base_mb)
            if round_ >= warmup:
                m.seconds.append(elapsed)
    if reset is not None:
        reset()
    return out
