"""Dataset wrappers; importing this package registers every dataset in DATASET_REGISTRY."""

from datasets import (  # noqa: F401
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagenet,
    imagenet_variants,
    micro_world,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    synthetic,
    ucf101,
)
