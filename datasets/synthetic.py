"""Synthetic: a tiny image-folder dataset generated deterministically on first use (tests and the demo)."""

import os
from typing import Any

import numpy as np
from PIL import Image

from caspl.data import DatasetBase
from caspl.data.io import generate_dataset_once
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

    def draw(folder: str) -> dict[str, list[list[Any]]]:
        rng = np.random.default_rng(SEED)
        split: dict[str, list[list[Any]]] = {"train": [], "val": [], "test": []}
        for label, name in enumerate(CLASSNAMES):
            os.makedirs(os.path.join(folder, "images", name))
            for part, n in SPLIT_SIZES.items():
                for i in range(n):
                    rel = f"{name}/{part}_{i:02d}.png"
                    Image.fromarray(_render(label, rng)).save(
                        os.path.join(folder, "images", rel), optimize=False
                    )
                    split[part].append([rel, label, name])
        return split

    generate_dataset_once(dataset_dir, SPLIT_FILE, draw)


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
