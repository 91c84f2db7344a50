"""DescribableTextures (47 classes): dtd/images + split_zhou_DescribableTextures.json."""

from caspl.data import Datum
from caspl.data.coop import CoOpDataset
from caspl.data.splits import read_and_split_folders
from caspl.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class DescribableTextures(CoOpDataset):
    """DTD; without the split file: images/<class>/ split 50/20/30 per class."""

    folder = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    split_gdrive_id = "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"
    layout = """dtd/
|-- images/                       (banded/, blotchy/, ...)
|-- imdb/
|-- labels/
|-- split_zhou_DescribableTextures.json"""

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        return read_and_split_folders(self.image_dir)
