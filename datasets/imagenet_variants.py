"""ImageNetV2, ImageNet-Sketch, ImageNet-A and ImageNet-R: test-only sets with ImageNet's CLIP class names."""

import os
from typing import Any

from caspl.data import Datum
from caspl.data.coop import imagenet_subset_wnids
from caspl.data.io import DatasetLayoutError, listdir_nohidden
from caspl.registry import DATASET_REGISTRY
from datasets.imagenet import _TestOnlyImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetV2(_TestOnlyImageNetVariant):
    """ImageNetV2 matched-frequency: folders 0..999 are ImageNet class indices."""

    folder = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    layout = """imagenetv2/
|-- imagenetv2-matched-frequency-format-val/   (0/, 1/, ... 999/)
|-- classnames.txt                (optional; the CLIP names are built in)"""

    def read_data(self, classnames: Any) -> list[Datum]:
        wnids = list(classnames)
        items = []
        for label, wnid in enumerate(wnids):
            class_dir = os.path.join(self.image_dir, str(label))
            if not os.path.isdir(class_dir):
                raise DatasetLayoutError(f"ImageNetV2: missing {class_dir}\nExpected layout:\n{self.layout}")
            for im in listdir_nohidden(class_dir, sort=False):
                items.append(Datum(os.path.join(class_dir, im), label, classname=classnames[wnid]))
        return items


@DATASET_REGISTRY.register()
class ImageNetSketch(_TestOnlyImageNetVariant):
    """ImageNet-Sketch: images/<wnid>/, 1000 classes."""

    folder = "imagenet-sketch"
    image_subdir = "images"
    layout = """imagenet-sketch/
|-- images/                       (n01440764/, ... 1,000 wnid folders)
|-- classnames.txt                (optional; the CLIP names are built in)"""


class _Subset200(_TestOnlyImageNetVariant):
    """A 200-class ImageNet subset: sorted wnid folders labelled 0..199."""

    def read_data(self, classnames: Any) -> list[Datum]:
        items = super().read_data(classnames)
        expected = set(imagenet_subset_wnids(type(self).__name__))
        found = {os.path.basename(os.path.dirname(d.impath)) for d in items}
        if not found <= expected:
            extra = sorted(found - expected)[:5]
            raise DatasetLayoutError(
                f"{type(self).__name__}: wnid folders outside its 200-class subset under {self.image_dir}: {extra}"
            )
        return items


@DATASET_REGISTRY.register()
class ImageNetA(_Subset200):
    """ImageNet-A (adversarial), 200 classes."""

    folder = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    layout = """imagenet-adversarial/
|-- imagenet-a/                   (200 wnid folders, n01498041/, ...)
|-- classnames.txt                (optional; the CLIP names are built in)"""


@DATASET_REGISTRY.register()
class ImageNetR(_Subset200):
    """ImageNet-R (renditions), 200 classes."""

    folder = "imagenet-rendition"
    image_subdir = "imagenet-r"
    layout = """imagenet-rendition/
|-- imagenet-r/                   (200 wnid folders, n01443537/, ...)
|-- classnames.txt                (optional; the CLIP names are built in)"""
