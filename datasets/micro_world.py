"""MicroWorld: the demo dataset of the micro world (caspl/vlm/micro.py), drawn deterministically on first use.

16 colour-shape classes ("red circle", ..., caspl.vlm.micro.DEMO_PAIRS), each drawn in every pattern; the
first 8 are the base classes, the last 8 the new ones. The `micro-teacher` CLIP was pretrained on these
pairs, the `micro-student` never saw them. On disk as every CoOp dataset: images/<class>/<split>_<i>.png and
a split JSON of [relative path, label, class name] rows.
"""

import os
from typing import Any

import numpy as np
from PIL import Image

from caspl.data import DatasetBase
from caspl.data.io import generate_dataset_once
from caspl.registry import DATASET_REGISTRY
from caspl.vlm.micro import DEMO_PAIRS, PATTERNS, classname, render

SPLIT_SIZES = {"train": 24, "val": 6, "test": 12}  # images per class
SPLIT_FILE = "split_micro_world.json"
SEED = 20241001


def generate_micro_world(dataset_dir: str) -> None:
    """Create `dataset_dir` (images + split JSON) atomically, if it is absent."""

    def draw(folder: str) -> dict[str, list[list[Any]]]:
        rng = np.random.default_rng(SEED)
        split: dict[str, list[list[Any]]] = {part: [] for part in SPLIT_SIZES}
        for label, (colour, shape) in enumerate(DEMO_PAIRS):
            name = classname(colour, shape)
            class_folder = name.replace(" ", "_")
            os.makedirs(os.path.join(folder, "images", class_folder))
            for part, n in SPLIT_SIZES.items():
                for i in range(n):
                    rel = f"{class_folder}/{part}_{i:02d}.png"
                    pattern = PATTERNS[i % len(PATTERNS)]  # every pattern equally often
                    Image.fromarray(render(colour, shape, pattern, rng)).save(
                        os.path.join(folder, "images", rel)
                    )
                    split[part].append([rel, label, name])
        return split

    generate_dataset_once(dataset_dir, SPLIT_FILE, draw)


@DATASET_REGISTRY.register()
class MicroWorld(DatasetBase):
    """16 colour-shape classes of the micro world, 32x32 PNGs; 24 train / 6 val / 12 test images per class."""

    dataset_name = "micro_world"

    def __init__(self, cfg: Any) -> None:
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT or "data"))
        self.dataset_dir = os.path.join(root, self.dataset_name)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.split_path = os.path.join(self.dataset_dir, SPLIT_FILE)
        generate_micro_world(self.dataset_dir)
        train, val, test = self.read_split(self.split_path, self.image_dir)
        train, val, test = self.build_splits(cfg, train, val, test)
        super().__init__(train_x=train, val=val, test=test)
