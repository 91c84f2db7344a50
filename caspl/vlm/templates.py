"""Hand-crafted prompt templates: CoOp's per-dataset templates (used by zero-shot CLIP and as defaults)."""

DATASET_TEMPLATES: dict[str, str] = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
    "Synthetic": "a photo of a {}.",
}

DEFAULT_TEMPLATE = "a photo of a {}."


def dataset_template(dataset_name: str) -> str:
    """CoOp's template for a dataset; "a photo of a {}." for datasets it does not list."""
    return DATASET_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def fill(template: str, classnames: list[str]) -> list[str]:
    """One prompt per class, underscores read as spaces."""
    return [template.format(name.replace("_", " ")) for name in classnames]
