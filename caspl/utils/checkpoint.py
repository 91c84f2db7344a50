"""Checkpoint files: written atomically, read with weights_only=True, errors that name the file.

Temp files are named `.<target>.<pid>-<random>.tmp` next to their target, so a later run can tell a
dead writer's leftovers (`clean_stale_temp_files`) from a live writer's file.
"""

import os
import re
import tempfile
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


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """torch.load with weights_only=True; a missing or corrupt file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, wrong format, disallowed globals
        raise RuntimeError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
