"""FGVCAircraft (100 variants): fgvc_aircraft/images + variants.txt + images_variant_{train,val,test}.txt."""

import os

from caspl.data import Datum
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
            with open(os.path.join(self.dataset_dir, "variants.txt")) as f:
                classnames = [line.strip() for line in f if line.strip()]
            cname2lab = {c: i for i, c in enumerate(classnames)}
            return tuple(
                self._read_list(cname2lab, f"images_variant_{s}.txt") for s in ("train", "val", "test")
            )
        except FileNotFoundError as e:
            from caspl.data import DatasetLayoutError  # noqa: PLC0415

            raise DatasetLayoutError(
                f"FGVCAircraft: missing {e.filename}\nExpected layout:\n{self.layout}"
            ) from None

    def _read_list(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        items = []
        with open(os.path.join(self.dataset_dir, name)) as f:
            for line in f:
                parts = line.strip().split(" ")
                if not parts[0]:
                    continue
                classname = " ".join(parts[1:])
                items.append(
                    Datum(
                        os.path.join(self.image_dir, parts[0] + ".jpg"),
                        cname2lab[classname],
                        classname=classname,
                    )
                )
        return items
