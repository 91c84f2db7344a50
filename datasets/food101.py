"""Food101 (101 classes): food-101/images + split_zhou_Food101.json."""

from caspl.data import Datum
from caspl.data.coop import CoOpDataset
from caspl.data.splits import read_and_split_folders
from caspl.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class Food101(CoOpDataset):
    """Food-101; without the split file: images/<class>/ split 50/20/30 per class."""

    folder = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    split_gdrive_id = "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"
    layout = """food-101/
|-- images/                       (apple_pie/, baby_back_ribs/, ...)
|-- meta/
|-- split_zhou_Food101.json"""

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        return read_and_split_folders(self.image_dir)
