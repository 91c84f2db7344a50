"""EuroSAT (10 classes, readable names): eurosat/2750 + split_zhou_EuroSAT.json."""

from caspl.data import Datum
from caspl.data.coop import CoOpDataset
from caspl.data.splits import read_and_split_folders
from caspl.registry import DATASET_REGISTRY

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(CoOpDataset):
    """EuroSAT RGB; without the split file: 2750/<class>/ split 50/20/30 with readable class names."""

    folder = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    split_gdrive_id = "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"
    layout = """eurosat/
|-- 2750/                         (AnnualCrop/, Forest/, ...)
|-- split_zhou_EuroSAT.json"""

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        return read_and_split_folders(self.image_dir, new_cnames=NEW_CNAMES)
