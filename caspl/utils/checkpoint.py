"""Checkpoint files: written atomically, read with weights_only=True, errors that name the file.

Temp files are named `.<target>.<pid>-<random>.tmp` next to their target, so a later run can tell a
dead writer's leftovers (`clean_stale_temp_files`) from a live writer's file.
"""

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

_TEMP_NAME = re.compile(r"^\..+\.(\d+)-[^.]+\.tmp$")


def current_umask() -> int:
    """The process umask (Linux reads it without changing it; elsewhere set-and-restore)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_file(path: Path) -> tuple[int, str]:
    """A temp file next to `path` with the permissions a plain open() would give (mkstemp forces 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except OSError:  # a file system without modes: keep what it gave
        pass
    return fd, tmp


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write a small text file (JSON results, pointers) atomically."""
    path = Path(path)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def clean_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files under `folder` whose writer process is gone (a kill during an atomic write).

    Only names this module makes are touched; a temp file of a live process (this one included) is kept.
    Returns the deleted paths.
    """
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for p in root.rglob(".*.tmp"):
        m = _TEMP_NAME.match(p.name)
        if m is None or not p.is_file() or _pid_alive(int(m.group(1))):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _tensors(obj: Any, where: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts/lists/tuples, with its path (e.g. state_dict.text.tokens.0, text[2])."""
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{where}[{i}]")


def check_finite(obj: Any, source: str | os.PathLike) -> None:
    """Raise naming `source` and the tensor when any floating-point tensor in `obj` holds NaN or inf."""
    for where, t in _tensors(obj, ""):
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            n_bad = int((~torch.isfinite(t)).sum())
            raise ValueError(
                f"{source}: tensor {where!r} holds {n_bad} non-finite value(s) (NaN/inf) of {t.numel()}; "
                "the file comes from a diverged or corrupted run and is not used"
            )


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu", finite: bool = True) -> Any:
    """torch.load with weights_only=True; a missing or corrupt file, or (with `finite`) a floating-point
    tensor holding NaN/inf, raises an error naming the file (and the tensor)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, wrong format, disallowed globals
        raise RuntimeError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    if finite:
        check_finite(obj, path)
    return obj
