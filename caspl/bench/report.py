"""Benchmark rows, targets, the printed table and the JSON file."""

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

from caspl.utils.checkpoint import atomic_write_text

KINDS = {
    "a": "boosting step",
    "b": "training step",
    "c": "evaluation",
    "d": "inference latency",
    "e": "compute floor",
    "r": "reference computation (the same step with CLIP's 77-token text tower: MODEL.TEXT_TOWER off)",
}


@dataclass
class Row:
    """One measured thing (times: the minimum of interleaved repeats). `ratio_to_floor` divides by the floor
    row(s) named in `floor`; `speedup` is the reference row's time over this one's; `ratio` is any other
    comparison, described by `ratio_of`."""

    kind: str
    name: str
    backbone: str
    batch: int
    device: str
    precision: str
    ms_per_step: float
    images_per_s: float
    peak_mem_mb: float | None
    base_mem_mb: float | None
    repeats: int
    classes: int | None = None
    spread: float | None = None  # slowest / fastest repeat
    speedup: float | None = None  # x faster than the 77-token reference computation
    ratio_to_floor: float | None = None
    floor: str | None = None
    ratio: float | None = None
    ratio_of: str | None = None
    note: str = ""
    times_ms: list[float] = field(default_factory=list)  # every timed repeat, to judge the noise


@dataclass
class Target:
    """A ratio the project promises, as measured in this run (never asserted in tests). A target is defined
    for certain shapes (`scope`); measured on others it is shown but does not apply (`applies` False)."""

    name: str
    value: float
    limit: float
    higher_is_better: bool = False
    applies: bool = True
    scope: str = ""

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    @property
    def missed(self) -> bool:
        """Missed where it applies: what `--check` fails on."""
        return self.applies and not self.met


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row]) -> str:
    """The rows as a tabulate table (github format: pastes into Markdown)."""
    body = [
        [
            r.kind,
            r.name,
            r.backbone,
            "-" if r.classes is None else r.classes,
            r.batch,
            _fmt(r.ms_per_step, 1),
            _fmt(r.spread),
            _fmt(r.images_per_s),
            _fmt(r.peak_mem_mb, 0),
            _fmt(r.ratio_to_floor),
            _fmt(r.speedup),
            "-" if r.ratio is None else f"{r.ratio:.2f} ({r.ratio_of})",
        ]
        for r in rows
    ]
    headers = ["kind", "name", "backbone", "classes", "batch", "ms/step (min)", "spread", "img/s",
               "peak MiB", "x floor", "x faster than ref", "ratio"]  # fmt: skip
    return tabulate(body, headers=headers, tablefmt="github")


def targets_table(targets: list[Target]) -> str:
    """Targets with the measured value and whether it was met (or why it does not apply here)."""
    body = [
        [
            t.name,
            f"{t.value:.2f}",
            (">= " if t.higher_is_better else "<= ") + f"{t.limit:g}",
            ("met" if t.met else "MISSED") if t.applies else f"n/a (defined for {t.scope})",
        ]
        for t in targets
    ]
    return tabulate(body, headers=["target", "measured", "limit", ""], tablefmt="github")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where the numbers were taken: CPU, core count, threads, torch version, GPU when used."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git_commit(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def to_json(rows: list[Row], targets: list[Target], meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: meta (machine, settings), rows, targets."""
    return {
        "meta": meta,
        "rows": [asdict(r) for r in rows],
        "targets": [{**asdict(t), "met": t.met, "missed": t.missed} for t in targets],
    }


def write_json(path: str | os.PathLike, document: dict[str, Any]) -> None:
    """Write the results atomically."""
    atomic_write_text(json.dumps(document, indent=2) + "\n", path)
