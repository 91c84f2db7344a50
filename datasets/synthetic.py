"""Synthetic: a tiny image-folder dataset generated deterministically on first use (tests and the demo)."""

import os
import shutil
import tempfile
from typing import Any

import numpy as np
from PIL import Image

from caspl.data import DatasetBase
from caspl.data.io import chmod_as_created
from caspl.registry import DATASET_REGISTRY

CLASSNAMES = (
    "apple", "bicycle", "cat", "dog", "elephant", "flower",
    "guitar", "house", "kite", "lemon", "mountain", "rocket",
)  # fmt: skip
SPLIT_SIZES = {"train": 16, "val": 4, "test": 8}
IMAGE_SIZE = 32
SPLIT_FILE = "split_synthetic.json"
SEED = 20240901


def _palette(k: int) -> np.ndarray:
    """A distinct, saturated colour per class (hue spread around the wheel)."""
    import colorsys  # noqa: PLC0415

    r, g, b = colorsys.hsv_to_rgb((k * 5 % len(CLASSNAMES)) / len(CLASSNAMES), 0.85, 0.9)
    return np.array([r, g, b]) * 255.0


def _render(k: int, rng: np.random.Generator) -> np.ndarray:
    """One 32x32 RGB image of class k: a class colour, a class pattern, random phase and noise."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    period = 4 + 2 * (k % 4)
    phase = rng.uniform(0, period)
    kind = k % 3
    if kind == 0:
        wave = np.sin(2 * np.pi * (yy + phase) / period)
    elif kind == 1:
        wave = np.sin(2 * np.pi * (xx + phase) / period)
    else:
        wave = np.sin(2 * np.pi * (xx + phase) / period) * np.sin(2 * np.pi * (yy + phase) / period)
    mask = (wave > 0).astype(np.float64)[..., None]
    fg, bg = _palette(k), 255.0 - _palette(k) * 0.6
    img = mask * fg + (1 - mask) * bg + rng.normal(0, 18.0, (IMAGE_SIZE, IMAGE_SIZE, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_synthetic(dataset_dir: str) -> None:
    """Create `dataset_dir` (images/<class>/<split>_<i>.png + split JSON) atomically, if it is absent."""
    if os.path.isfile(os.path.join(dataset_dir, SPLIT_FILE)):
        return
    parent = os.path.dirname(os.path.abspath(dataset_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".synthetic-tmp-", dir=parent)
    try:
        chmod_as_created(tmp)  # mkdtemp's 0700 would outlive the rename below
        rng = np.random.default_rng(SEED)
        split: dict[str, list[list[Any]]] = {"train": [], "val": [], "test": []}
        for label, name in enumerate(CLASSNAMES):
            os.makedirs(os.path.join(tmp, "images", name))
            for part, n in SPLIT_SIZES.items():
                for i in range(n):
                    rel = f"{name}/{part}_{i:02d}.png"
                    Image.fromarray(_render(label, rng)).save(
                        os.path.join(tmp, "images", rel), optimize=False
                    )
                    split[part].append([rel, label, name])
        import json  # noqa: PLC0415

        with open(os.path.join(tmp, SPLIT_FILE), "w") as f:
            json.dump(split, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.rename(tmp, dataset_dir)  # atomic; fails if another process finished first
        except OSError:
            if not os.path.isfile(os.path.join(dataset_dir, SPLIT_FILE)):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


@DATASET_REGISTRY.register()
class Synthetic(DatasetBase):
    """12 word-named classes of coloured-pattern 32x32 PNGs; 16 train / 4 val / 8 test images per class."""

    dataset_name = "synthetic"

    def __init__(self, cfg: Any) -> None:
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT or "data"))
        self.dataset_dir = os.path.join(root, self.dataset_name)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.split_path = os.path.join(self.dataset_dir, SPLIT_FILE)
        generate_synthetic(self.dataset_dir)
        train, val, test = self.read_split(self.split_path, self.image_dir)
        train, val, test = self.build_splits(cfg, train, val, test)
        super().__init__(train_x=train, val=val, test=test)
