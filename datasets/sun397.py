"""SUN397 (397 classes): sun397/SUN397 + split_zhou_SUN397.json (+ ClassName.txt, Training_01.txt, ...)."""

import os

from caspl.data import Datum
from caspl.data.checks import class_index, lookup_class, numbered_lines
from caspl.data.coop import CoOpDataset
from caspl.data.splits import split_trainval
from caspl.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class SUN397(CoOpDataset):
    """SUN397; class names from paths ("/a/abbey" -> "abbey", "/b/bakery/shop" -> "shop bakery")."""

    folder = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    split_gdrive_id = "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"
    layout = """sun397/
|-- SUN397/                       (a/abbey/sun_*.jpg, ...)
|-- split_zhou_SUN397.json
|-- ClassName.txt, Training_01.txt, Testing_01.txt, ...  (from Partitions.zip)"""

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        path = os.path.join(self.dataset_dir, "ClassName.txt")
        cname2lab = class_index([(n, text[1:]) for n, text in numbered_lines(path)], path)
        trainval = self._read_list(cname2lab, "Training_01.txt")
        test = self._read_list(cname2lab, "Testing_01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def _read_list(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        items = []
        path = os.path.join(self.dataset_dir, name)
        for n, text in numbered_lines(path):
            imname = text[1:]
            if not imname:
                continue
            folder = os.path.dirname(imname)
            words = folder.split("/")[1:][::-1]  # drop the initial letter; "indoor"/"outdoor" first
            label = lookup_class(cname2lab, folder, path, n, "ClassName.txt")
            items.append(Datum(os.path.join(self.image_dir, imname), label, classname=" ".join(words)))
        return items
