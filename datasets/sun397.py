"""SUN397 (397 classes): sun397/SUN397 + split_zhou_SUN397.json (+ ClassName.txt, Training_01.txt, ...)."""

import os

from caspl.data import Datum
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
        with open(os.path.join(self.dataset_dir, "ClassName.txt")) as f:
            classes = [line.strip()[1:] for line in f if line.strip()]
        cname2lab = {c: i for i, c in enumerate(classes)}
        trainval = self._read_list(cname2lab, "Training_01.txt")
        test = self._read_list(cname2lab, "Testing_01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def _read_list(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        items = []
        with open(os.path.join(self.dataset_dir, name)) as f:
            for line in f:
                imname = line.strip()[1:]
                if not imname:
                    continue
                folder = os.path.dirname(imname)
                words = folder.split("/")[1:][::-1]  # drop the initial letter; "indoor"/"outdoor" first
                items.append(
                    Datum(os.path.join(self.image_dir, imname), cname2lab[folder], classname=" ".join(words))
                )
        return items
