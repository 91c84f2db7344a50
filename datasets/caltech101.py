"""Caltech101 (100 classes): caltech-101/101_ObjectCategories + split_zhou_Caltech101.json."""

from caspl.data import Datum
from caspl.data.coop import CoOpDataset
from caspl.data.splits import read_and_split_folders
from caspl.registry import DATASET_REGISTRY

IGNORED = ("BACKGROUND_Google", "Faces_easy")
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(CoOpDataset):
    """Caltech101 without BACKGROUND_Google / Faces_easy; without the split file: 50/20/30 per class."""

    folder = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    split_gdrive_id = "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"
    layout = """caltech-101/
|-- 101_ObjectCategories/         (accordion/, airplanes/, ...)
|-- split_zhou_Caltech101.json"""

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        return read_and_split_folders(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
