"""OxfordFlowers (102 classes): oxford_flowers/jpg + imagelabels.mat + cat_to_name.json + split file."""

import os
from collections import defaultdict

from caspl.data import Datum, read_json
from caspl.data.checks import SplitError
from caspl.data.coop import CoOpDataset
from caspl.data.splits import split_by_ratio
from caspl.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class OxfordFlowers(CoOpDataset):
    """Flowers102; without the split file: imagelabels.mat + cat_to_name.json, 50/20/30 per class."""

    folder = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    split_gdrive_id = "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"
    cat_to_name_gdrive_id = "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"
    layout = """oxford_flowers/
|-- cat_to_name.json
|-- imagelabels.mat
|-- jpg/                          (image_00001.jpg, ...)
|-- split_zhou_OxfordFlowers.json"""

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        from scipy.io import loadmat  # noqa: PLC0415

        label_file = os.path.join(self.dataset_dir, "imagelabels.mat")
        if not os.path.isfile(label_file):
            raise FileNotFoundError(label_file)
        names_file = os.path.join(self.dataset_dir, "cat_to_name.json")
        lab2cname = read_json(names_file)
        tracker: dict[int, list[str]] = defaultdict(list)
        for i, label in enumerate(loadmat(label_file)["labels"][0]):
            tracker[int(label)].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        print("Splitting data into 50% train, 20% val, and 30% test")
        unnamed = sorted(label for label in tracker if str(label) not in lab2cname)
        if unnamed:
            raise SplitError(
                f"{names_file}: no name for label(s) {unnamed[:5]} used in {label_file}; expected a name for "
                f"each of its {len(tracker)} labels"
            )
        groups = [(label - 1, lab2cname[str(label)], paths) for label, paths in tracker.items()]
        return split_by_ratio(groups, 0.5, 0.2)
