"""OxfordPets (37 breeds): oxford_pets/images + annotations + split_zhou_OxfordPets.json."""

import os

from caspl.data import Datum
from caspl.data.coop import CoOpDataset
from caspl.data.splits import split_trainval
from caspl.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class OxfordPets(CoOpDataset):
    """Oxford-IIIT Pets; without the split file: annotations/trainval.txt (80/20) + test.txt."""

    folder = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    split_gdrive_id = "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"
    layout = """oxford_pets/
|-- images/                       (Abyssinian_1.jpg, ...)
|-- annotations/                  (trainval.txt, test.txt, ...)
|-- split_zhou_OxfordPets.json"""

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        trainval = self._read_list("trainval.txt")
        test = self._read_list("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def _read_list(self, name: str) -> list[Datum]:
        items = []
        with open(os.path.join(self.dataset_dir, "annotations", name)) as f:
            for line in f:
                if not line.strip() or line.startswith("#"):
                    continue
                imname, label = line.split()[:2]
                breed = "_".join(imname.split("_")[:-1]).lower()  # "Abyssinian_1" -> "abyssinian"
                items.append(
                    Datum(os.path.join(self.image_dir, imname + ".jpg"), int(label) - 1, classname=breed)
                )
        return items
