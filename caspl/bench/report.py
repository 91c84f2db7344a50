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
}


@dataclass
class Row:
    """One measured thing. `ratio_to_floor` divides by the floor row(s) named in `floor`; `ratio` is any
    other comparison, described by `ratio_of`."""

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
    ratio_to_floor: float | None = None
    floor: str | None = None
    ratio: float | None = None
    ratio_of: str | None = None
    note: str = ""
    times_ms: list[float] = field(default_factory=list)  # every timed repeat, to judge the noise


@dataclass
class Target:
    """A ratio the project promises, as measured in this run (never asserted in tests)."""

    name: str
    value: float
    limit: float
    higher_is_better: bool = False

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row]) -> str:
    """The rows as a tabulate table (github format: pastes into Markdown)."""
    body = [
        [
            r.kind,
            r.name,
            r.backbone,
            r.batch,
            _fmt(r.ms_per_step, 1),
            _fmt(r.images_per_s),
            _fmt(r.peak_mem_mb, 0),
            _fmt(r.ratio_to_floor),
            "-" if r.ratio is None else f"{r.ratio:.2f} ({r.ratio_of})",
        ]
        for r in rows
    ]
    headers = ["kind", "name", "backbone", "batch", "ms/step", "img/s", "peak MiB", "x floor", "ratio"]
    return tabulate(body, headers=headers, tablefmt="github")


def targets_table(targets: list[Target]) -> str:
    """Targets with the measured value and whether it was met."""
    body = [
        [
            t.name,
            f"{t.value:.2f}",
            (">= " if t.higher_is_better else "<= ") + f"{t.limit:g}",
            "met" if t.met else "MISSED",
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
        "targets": [{**asdict(t), "met": t.met} for t in targets],
    }


def write_json(path: str | os.PathLike, document: dict[str, Any]) -> None:
    """Write the results atomically."""
    atomic_write_text(json.dumps(document, indent=2) + "\n", path)
