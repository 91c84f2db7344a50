"""Small file helpers shared by the dataset wrappers: atomic JSON, hidden-file-free listings, layout errors."""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def current_umask() -> int:
    """The process umask (read by setting it and putting it back: POSIX offers no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_as_created(path: str) -> None:
    """Give a file or folder made by mkstemp / mkdtemp (always 0600 / 0700) the mode open() / mkdir() would
    give it: 0666 / 0777 less the umask, so shared group folders stay readable by the group."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~current_umask())


def write_json_atomic(obj: Any, path: str) -> None:
    """Write `obj` as JSON to `path` via a temp file + fsync + rename (never a half-written file)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        chmod_as_created(tmp)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def generate_dataset_once(dataset_dir: str, split_file: str, draw: Callable[[str], dict[str, Any]]) -> None:
    """Create a generated dataset at `dataset_dir` atomically, if its split file is absent.

    `draw(folder)` writes the images under `folder` and returns the split ({"train": [[rel, label, name],
    ...], "val": ..., "test": ...}); it runs in a hidden temp folder next to `dataset_dir` that is renamed
    into place, so concurrent runs never see half a dataset (the loser of the rename keeps the winner's).
    """
    if os.path.isfile(os.path.join(dataset_dir, split_file)):
        return
    parent = os.path.dirname(os.path.abspath(dataset_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dataset_dir)}-tmp-", dir=parent)
    try:
        chmod_as_created(tmp)  # mkdtemp's 0700 would outlive the rename below
        split = draw(tmp)
        with open(os.path.join(tmp, split_file), "w") as f:
            json.dump(split, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.rename(tmp, dataset_dir)  # atomic; fails if another process finished first
        except OSError:
            if not os.path.isfile(os.path.join(dataset_dir, split_file)):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def read_json(path: str) -> Any:
    """Load a JSON file; errors name the file."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"JSON file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def listdir_nohidden(path: str, sort: bool = True) -> list[str]:
    """Entries of a folder without hidden files (names starting with '.')."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    return sorted(items) if sort else items


def find_images(folder: str) -> list[str]:
    """Every jpg/jpeg/png/webp file under `folder` (recursive), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [
            os.path.join(dirpath, f)
            for f in filenames
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return sorted(out)


class DatasetLayoutError(FileNotFoundError):
    """A dataset's folder or file is missing; the message names the dataset, the path and the layout."""


def require(path: str, dataset: str, layout: str, hint: str = "") -> str:
    """Return `path` if it exists, else raise DatasetLayoutError naming dataset, path and expected layout."""
    if not os.path.exists(path):
        msg = f"{dataset}: missing {path}\nExpected layout under DATASET.ROOT:\n{layout.rstrip()}"
        if hint:
            msg += f"\n{hint}"
        msg += "\nRun `python tools/prepare_data.py --root <DATA> --dataset " + dataset + "` for a check."
        raise DatasetLayoutError(msg)
    return path


def check_root(root: str, dataset: str) -> str:
    """DATASET.ROOT must be set and exist."""
    if not root:
        raise DatasetLayoutError(
            f"{dataset}: DATASET.ROOT is empty; pass --root <folder holding the datasets>"
        )
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DatasetLayoutError(f"{dataset}: DATASET.ROOT {root} does not exist")
    return root


def as_path(p: str | Path) -> str:
    return os.fspath(p)
