"""Shared machinery of the CoOp-family dataset wrappers: folder checks, split file or annotations, ImageNet names."""

import json
import os
from collections import OrderedDict
from importlib import resources
from typing import Any

from caspl.data.base import DatasetBase
from caspl.data.checks import SplitError, check_split
from caspl.data.datum import Datum
from caspl.data.io import DatasetLayoutError, check_root, listdir_nohidden, require

MAX_LISTED = 5


def missing_images(items: list[Datum]) -> list[str]:
    """Image paths of `items` that are not on disk (each path checked once)."""
    seen: set[str] = set()
    out = []
    for d in items:
        if d.impath not in seen:
            seen.add(d.impath)
            if not os.path.isfile(d.impath):
                out.append(d.impath)
    return out


def format_missing(missing: list[str], limit: int = MAX_LISTED) -> str:
    """'N images missing, e.g.: a, b, c ...'."""
    head = "\n  ".join(missing[:limit])
    more = f"\n  ... and {len(missing) - limit} more" if len(missing) > limit else ""
    return f"{len(missing)} image(s) listed in the split are missing, e.g.:\n  {head}{more}"


class CoOpDataset(DatasetBase):
    """A dataset under DATASET.ROOT/<folder> with a CoOp split file (or annotations to build one)."""

    folder = ""  # under DATASET.ROOT
    image_subdir = ""  # under the dataset folder
    split_file = ""  # split_zhou_*.json under the dataset folder; "" when the dataset ships fixed lists
    split_prefix_is_dataset_dir = False  # StanfordCars' split paths are relative to the dataset folder
    split_gdrive_id = ""  # Google Drive file id of the published split file
    layout = ""  # the expected tree, shown in errors and by tools/prepare_data.py
    fewshot_val = True

    def __init__(self, cfg: Any) -> None:
        name = type(self).__name__
        root = check_root(cfg.DATASET.ROOT, name)
        self.dataset_dir = os.path.join(root, self.folder)
        require(self.dataset_dir, name, self.layout)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        require(self.image_dir, name, self.layout)
        train, val, test = self.load_split()
        missing = missing_images(train + (val or []) + test)
        if missing:
            raise DatasetLayoutError(f"{name}: {format_missing(missing)}\nExpected layout:\n{self.layout}")
        train, val, test = self.build_splits(cfg, train, val, test, fewshot_val=self.fewshot_val)
        super().__init__(train_x=train, val=val, test=test)

    @property
    def split_path(self) -> str:
        return os.path.join(self.dataset_dir, self.split_file)

    @property
    def split_prefix(self) -> str:
        return self.dataset_dir if self.split_prefix_is_dataset_dir else self.image_dir

    def load_split(self) -> tuple[list[Datum], list[Datum] | None, list[Datum]]:
        """Read the split file; else build it from the dataset's own annotations and save it."""
        if os.path.isfile(self.split_path):
            print(f"Reading split from {self.split_path}")
            return self.read_split(self.split_path, self.split_prefix)
        try:
            train, val, test = self.split_from_annotations()
        except FileNotFoundError as e:
            raise DatasetLayoutError(
                f"{type(self).__name__}: neither the split file {self.split_path} nor the annotations needed "
                f"to build it were found ({e}).\nExpected layout:\n{self.layout}\n"
                f"Download the split file with `python tools/prepare_data.py --root <DATA> "
                f"--dataset {type(self).__name__}`."
            ) from None
        check_split(
            {"train": train, "val": val, "test": test},
            f"{type(self).__name__}: the split built from the annotations under {self.dataset_dir}",
        )
        self.save_split(train, val, test, self.split_path, self.split_prefix)
        return train, val, test

    def split_from_annotations(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        """Build train/val/test from the original annotations (overridden per dataset)."""
        raise FileNotFoundError(self.split_path)


def _bundled_imagenet_classnames() -> "OrderedDict[str, str]":
    text = resources.files("caspl.data").joinpath("imagenet_classnames.json").read_text()
    return OrderedDict(json.loads(text))


def published_duplicate_names() -> dict[str, set[str]]:
    """Names the published CLIP ImageNet list gives to two wnids ('missile', 'sunglasses') -> those wnids.

    CLIP, CoOp and the methods built on them evaluate with these names, so they are kept as published.
    """
    by_name: dict[str, set[str]] = {}
    for wnid, name in _bundled_imagenet_classnames().items():
        by_name.setdefault(name, set()).add(wnid)
    return {name: wnids for name, wnids in by_name.items() if len(wnids) > 1}


def imagenet_classnames(folder: str = "") -> "OrderedDict[str, str]":
    """wnid -> CLIP class name: `<folder>/classnames.txt` (CoOp's file) when present, else the bundled list.

    A repeated wnid, a line without a name, or a name given to two wnids is an error naming the file and
    the lines; the only names allowed twice are the published list's own pairs (same name, same wnids).
    """
    path = os.path.join(folder, "classnames.txt") if folder else ""
    if not (path and os.path.isfile(path)):
        return _bundled_imagenet_classnames()
    allowed = published_duplicate_names()
    out: OrderedDict[str, str] = OrderedDict()
    line_of: dict[str, int] = {}  # wnid -> line
    wnid_of: dict[str, str] = {}  # name -> first wnid
    with open(path) as f:
        for n, line in enumerate(f, start=1):
            parts = line.strip().split(" ")
            if not parts[0]:
                continue
            wnid, name = parts[0], " ".join(parts[1:]).strip()
            if not name:
                raise SplitError(
                    f"{path}, line {n}: {line.strip()!r} has no class name; expected '<wnid> <name>'"
                )
            if wnid in out:
                raise SplitError(
                    f"{path}, line {n}: wnid {wnid} repeats line {line_of[wnid]}; expected each wnid once"
                )
            other = wnid_of.setdefault(name, wnid)
            if other != wnid and {other, wnid} - allowed.get(name, set()):
                raise SplitError(
                    f"{path}, line {n}: class name {name!r} of {wnid} is also the name of {other} "
                    f"(line {line_of[other]}); expected a distinct name per class"
                )
            out[wnid] = name
            line_of[wnid] = n
    if not out:
        raise ValueError(f"{path} is empty; expected lines '<wnid> <class name>'")
    return out


def imagenet_subset_wnids(name: str) -> list[str]:
    """The 200 wnids of ImageNetA or ImageNetR."""
    text = resources.files("caspl.data").joinpath("imagenet_subsets.json").read_text()
    return list(json.loads(text)[name])


def read_wnid_folders(
    image_dir: str,
    classnames: "OrderedDict[str, str]",
    dataset: str,
    ignored: tuple[str, ...] = ("README.txt",),
) -> list[Datum]:
    """image_dir/<wnid>/<image>: sorted wnid folders labelled 0.., class names from `classnames`."""
    folders = [
        f
        for f in listdir_nohidden(image_dir)
        if f not in ignored and os.path.isdir(os.path.join(image_dir, f))
    ]
    unknown = [f for f in folders if f not in classnames]
    if unknown:
        raise DatasetLayoutError(
            f"{dataset}: folders under {image_dir} are not ImageNet wnids: {', '.join(unknown[:MAX_LISTED])}"
        )
    items = []
    for label, folder in enumerate(folders):
        # images in os.listdir order like CoOp, so few-shot draws match theirs on the same disk
        for im in listdir_nohidden(os.path.join(image_dir, folder), sort=False):
            items.append(Datum(os.path.join(image_dir, folder, im), label, classname=classnames[folder]))
    return items
