"""ImageNet (1000 classes, CLIP names): imagenet/images/{train,val}/<wnid>/; the val set is the test set."""

import os
from typing import Any

from caspl.data import DatasetBase, Datum
from caspl.data.checks import check_split
from caspl.data.coop import imagenet_classnames, published_duplicate_names, read_wnid_folders
from caspl.data.io import check_root, require
from caspl.registry import DATASET_REGISTRY

LAYOUT = """imagenet/
|-- images/
|   |-- train/                    (n01440764/, ... 1,000 wnid folders)
|   |-- val/                      (the same 1,000 wnid folders)
|-- classnames.txt                (optional: '<wnid> <name>' lines; the CLIP names are built in)"""


@DATASET_REGISTRY.register()
class ImageNet(DatasetBase):
    """ImageNet-1k; few-shot on train only; val = test = the official val set (as CoOp)."""

    folder = "imagenet"
    image_subdir = "images"
    layout = LAYOUT

    def __init__(self, cfg: Any) -> None:
        root = check_root(cfg.DATASET.ROOT, "ImageNet")
        self.dataset_dir = os.path.join(root, self.folder)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        classnames = imagenet_classnames(self.dataset_dir)
        for part in ("train", "val"):
            require(os.path.join(self.image_dir, part), "ImageNet", LAYOUT)
        train = read_wnid_folders(os.path.join(self.image_dir, "train"), classnames, "ImageNet")
        test = read_wnid_folders(os.path.join(self.image_dir, "val"), classnames, "ImageNet")
        # labels come from each folder's sorted listing: a wnid folder missing from one part would shift them
        check_split(
            {"train": train, "val": test},
            f"ImageNet: the wnid folders under {self.image_dir}",
            allowed_duplicate_names=published_duplicate_names(),
        )
        train, _, test = self.build_splits(cfg, train, None, test, fewshot_val=False)
        super().__init__(train_x=train, val=test, test=test)


class _TestOnlyImageNetVariant(DatasetBase):
    """An ImageNet test set (domain generalization): train_x = test = all its images."""

    folder = ""
    image_subdir = ""
    layout = ""

    def __init__(self, cfg: Any) -> None:
        name = type(self).__name__
        root = check_root(cfg.DATASET.ROOT, name)
        self.dataset_dir = os.path.join(root, self.folder)
        require(self.dataset_dir, name, self.layout)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        require(self.image_dir, name, self.layout)
        data = self.read_data(imagenet_classnames(self.dataset_dir))
        if not data:
            raise FileNotFoundError(
                f"{name}: no images under {self.image_dir}\nExpected layout:\n{self.layout}"
            )
        check_split(
            {"test": data},
            f"{name}: the class folders under {self.image_dir}",
            allowed_duplicate_names=published_duplicate_names(),
        )
        self._full_train = data
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames: Any) -> list[Datum]:
        return read_wnid_folders(self.image_dir, classnames, type(self).__name__)
