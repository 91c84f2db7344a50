"""StanfordCars (196 classes): stanford_cars/{cars_train,cars_test,devkit} + split_zhou_StanfordCars.json."""

import os

from caspl.data import Datum
from caspl.data.checks import SplitError
from caspl.data.coop import CoOpDataset
from caspl.data.splits import split_trainval
from caspl.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class StanfordCars(CoOpDataset):
    """Stanford Cars; class names put the year first ("2012 Tesla Model S"); split paths from the dataset folder."""

    folder = "stanford_cars"
    image_subdir = ""
    split_file = "split_zhou_StanfordCars.json"
    split_prefix_is_dataset_dir = True
    split_gdrive_id = "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"
    layout = """stanford_cars/
|-- cars_test/
|-- cars_test_annos_withlabels.mat
|-- cars_train/
|-- devkit/                       (cars_meta.mat, cars_train_annos.mat, ...)
|-- split_zhou_StanfordCars.json"""

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        meta = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        trainval = self._read_mat(
            "cars_train", os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat"), meta
        )
        test = self._read_mat(
            "cars_test", os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat"), meta
        )
        train, val = split_trainval(trainval)
        return train, val, test

    def _read_mat(self, image_dir: str, anno_file: str, meta_file: str) -> list[Datum]:
        from scipy.io import loadmat  # noqa: PLC0415 (only needed when building the split)

        for p in (anno_file, meta_file):
            if not os.path.isfile(p):
                raise FileNotFoundError(p)
        annos = loadmat(anno_file)["annotations"][0]
        names = loadmat(meta_file)["class_names"][0]
        items = []
        for i, a in enumerate(annos):
            label = int(a["class"][0, 0]) - 1
            if not 0 <= label < len(names):
                raise SplitError(
                    f"{anno_file}: annotation {i} ({a['fname'][0]}) has class {label + 1}; expected 1..{len(names)} "
                    f"(the classes of {meta_file})"
                )
            words = str(names[label][0]).split(" ")
            classname = " ".join([words[-1]] + words[:-1])  # "Tesla Model S 2012" -> "2012 Tesla Model S"
            items.append(
                Datum(
                    os.path.join(self.dataset_dir, image_dir, str(a["fname"][0])), label, classname=classname
                )
            )
        return items
