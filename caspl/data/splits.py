"""Split builders used when a CoOp split file is absent (same algorithms and random calls as CoOp)."""

import os
import random
from collections import defaultdict

from caspl.data.datum import Datum
from caspl.data.io import listdir_nohidden


def split_trainval(trainval: list[Datum], p_val: float = 0.2) -> tuple[list[Datum], list[Datum]]:
    """Per class (order of first appearance), shuffle and move round(n * p_val) items to val."""
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    tracker: dict[int, list[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            raise ValueError(f"class {label} has too few images ({len(idxs)}) to hold out a validation image")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def split_by_ratio(
    groups: list[tuple[int, str, list[str]]], p_trn: float = 0.5, p_val: float = 0.2
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Per (label, classname, impaths) group: shuffle, then round(n*p_trn) train, round(n*p_val) val, rest test."""
    train, val, test = [], [], []
    for label, classname, impaths in groups:
        random.shuffle(impaths)
        n = len(impaths)
        n_train, n_val = round(n * p_trn), round(n * p_val)
        if not (n_train > 0 and n_val > 0 and n - n_train - n_val > 0):
            raise ValueError(f"class {classname!r} has too few images ({n}) for a train/val/test split")
        train += [Datum(p, label, classname=classname) for p in impaths[:n_train]]
        val += [Datum(p, label, classname=classname) for p in impaths[n_train : n_train + n_val]]
        test += [Datum(p, label, classname=classname) for p in impaths[n_train + n_val :]]
    return train, val, test


def read_and_split_folders(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: tuple[str, ...] = (),
    new_cnames: dict[str, str] | None = None,
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """image_dir/<class>/<image>: sorted classes (minus `ignored`) labelled 0.., split 50/20/30 per class."""
    categories = [c for c in listdir_nohidden(image_dir) if c not in ignored]
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    groups = []
    for label, category in enumerate(categories):
        folder = os.path.join(image_dir, category)
        # os.listdir order, as CoOp (the shuffle that follows starts from it)
        images = [os.path.join(folder, im) for im in listdir_nohidden(folder, sort=False)]
        groups.append((label, (new_cnames or {}).get(category, category), images))
    return split_by_ratio(groups, p_trn, p_val)
