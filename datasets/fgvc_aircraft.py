"""FGVCAircraft (100 variants): fgvc_aircraft/images + variants.txt + images_variant_{train,val,test}.txt."""

import os

from caspl.data import Datum
from caspl.data.checks import check_split, class_index, lookup_class, numbered_lines
from caspl.data.coop import CoOpDataset
from caspl.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class FGVCAircraft(CoOpDataset):
    """FGVC-Aircraft 2013b variants; the dataset's own train/val/test lists are the split (no split JSON)."""

    folder = "fgvc_aircraft"
    image_subdir = "images"
    split_file = ""
    layout = """fgvc_aircraft/                   (the data/ folder of fgvc-aircraft-2013b, renamed)
|-- images/                       (0034309.jpg, ...)
|-- variants.txt
|-- images_variant_train.txt
|-- images_variant_val.txt
|-- images_variant_test.txt"""

    def load_split(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        try:
            variants = os.path.join(self.dataset_dir, "variants.txt")
            cname2lab = class_index(numbered_lines(variants), variants)
            parts = {
                s: self._read_list(cname2lab, f"images_variant_{s}.txt") for s in ("train", "val", "test")
            }
            check_split(parts, f"FGVCAircraft: the lists images_variant_*.txt under {self.dataset_dir}")
            return parts["train"], parts["val"], parts["test"]
        except FileNotFoundError as e:
            from caspl.data import DatasetLayoutError  # noqa: PLC0415

            raise DatasetLayoutError(
                f"FGVCAircraft: missing {e.filename}\nExpected layout:\n{self.layout}"
            ) from None

    def _read_list(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        items = []
        path = os.path.join(self.dataset_dir, name)
        with open(path) as f:
            for n, line in enumerate(f, start=1):
                parts = line.strip().split(" ")
                if not parts[0]:
                    continue
                classname = " ".join(parts[1:])
                label = lookup_class(cname2lab, classname, path, n, "variants.txt")
                items.append(
                    Datum(os.path.join(self.image_dir, parts[0] + ".jpg"), label, classname=classname)
                )
        return items
