"""Data plumbing: Datum, DatasetBase (splits, few-shot, base/new), transforms, DataManager, loaders."""

from caspl.data.base import SUBSAMPLE_CHOICES, DatasetBase
from caspl.data.datum import Datum
from caspl.data.io import DatasetLayoutError, find_images, listdir_nohidden, read_json, write_json_atomic
from caspl.data.loader import (
    DataManager,
    DatasetWrapper,
    UnlabeledDataset,
    build_data_loader,
    build_dataset,
    build_sampler,
    build_unlabeled_loader,
    read_image,
)
from caspl.data.transforms import build_transform

__all__ = [
    "SUBSAMPLE_CHOICES",
    "DataManager",
    "DatasetBase",
    "DatasetLayoutError",
    "DatasetWrapper",
    "Datum",
    "UnlabeledDataset",
    "build_data_loader",
    "build_dataset",
    "build_sampler",
    "build_transform",
    "build_unlabeled_loader",
    "find_images",
    "listdir_nohidden",
    "read_image",
    "read_json",
    "write_json_atomic",
]
