"""DatasetBase: split files, few-shot sampling (Dassl's algorithm), base/new subsampling, few-shot cache."""

import hashlib
import json
import math
import os
import random
import warnings
from collections import defaultdict
from typing import Any

from caspl.data.checks import SplitError, check_labels, check_split
from caspl.data.datum import Datum
from caspl.data.io import find_images, read_json, write_json_atomic

SUBSAMPLE_CHOICES = ("all", "base", "new")


class DatasetBase:
    """Holds train_x / train_u / val / test lists of Datum plus the label -> class name table."""

    dataset_dir: str = ""

    def __init__(
        self,
        train_x: list[Datum] | None = None,
        train_u: list[Datum] | None = None,
        val: list[Datum] | None = None,
        test: list[Datum] | None = None,
    ) -> None:
        if not train_x:
            raise ValueError(f"{type(self).__name__}: train_x is empty")
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self) -> list[Datum]:
        return self._train_x

    @property
    def train_u(self) -> list[Datum] | None:
        return self._train_u

    @property
    def val(self) -> list[Datum] | None:
        return self._val

    @property
    def test(self) -> list[Datum] | None:
        return self._test

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self._classnames

    @staticmethod
    def get_num_classes(data_source: list[Datum]) -> int:
        """Number of classes = largest label + 1 (Dassl)."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: list[Datum]) -> tuple[dict[int, str], list[str]]:
        """label -> class name, and the class names ordered by label."""
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return {k: mapping[k] for k in labels}, [mapping[k] for k in labels]

    # ---- split files (CoOp format) -------------------------------------------------------------
    @staticmethod
    def read_split(filepath: str, path_prefix: str) -> tuple[list[Datum], list[Datum], list[Datum]]:
        """Read a CoOp split JSON ({"train","val","test"}: [relative_path, label, classname]) as Datums.

        The split is checked (labels 0..K-1 from the train list, one name per label, distinct names): an
        error names the file and the entry.
        """
        split = read_json(filepath)
        if not isinstance(split, dict):
            raise ValueError(f"split file {filepath}: expected an object with train/val/test lists")
        out = []
        for key in ("train", "val", "test"):
            if key not in split:
                raise ValueError(f"split file {filepath} has no {key!r} list (keys: {sorted(split)})")
            items = []
            for i, entry in enumerate(split[key]):
                if not (
                    isinstance(entry, list | tuple)
                    and len(entry) == 3
                    and isinstance(entry[0], str)
                    and isinstance(entry[1], int)
                    and not isinstance(entry[1], bool)
                    and isinstance(entry[2], str)
                ):
                    raise SplitError(
                        f"split file {filepath}: {key} entry {i} {entry!r} is not "
                        "[relative_path (text), label (integer), classname (text)]"
                    )
                impath, label, classname = entry
                items.append(
                    Datum(impath=os.path.join(path_prefix, impath), label=int(label), classname=classname)
                )
            out.append(items)
        check_split(dict(zip(("train", "val", "test"), out, strict=True)), f"split file {filepath}")
        return out[0], out[1], out[2]

    @staticmethod
    def save_split(
        train: list[Datum], val: list[Datum], test: list[Datum], filepath: str, path_prefix: str
    ) -> None:
        """Write train/val/test as a CoOp split JSON with paths relative to `path_prefix` (atomic)."""

        def _rows(items: list[Datum]) -> list[list[Any]]:
            return [[_relative(item.impath, path_prefix), item.label, item.classname] for item in items]

        write_json_atomic({"train": _rows(train), "val": _rows(val), "test": _rows(test)}, filepath)
        print(f"Saved split to {filepath}")

    # ---- few-shot and base/new -----------------------------------------------------------------
    @staticmethod
    def split_dataset_by_label(data_source: list[Datum]) -> dict[int, list[Datum]]:
        """Group items by label, labels in order of first appearance (the order Dassl samples in)."""
        output: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    @classmethod
    def generate_fewshot_dataset(
        cls, *data_sources: list[Datum], num_shots: int = -1, repeat: bool = False
    ) -> Any:
        """N items per class with Dassl's algorithm and random-call sequence (python `random`)."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            tracker = cls.split_dataset_by_label(data_source)
            dataset: list[Datum] = []
            short = []
            for label, items in tracker.items():
                if len(items) >= num_shots:
                    sampled = random.sample(items, num_shots)
                elif repeat:
                    sampled = random.choices(items, k=num_shots)
                else:
                    sampled = items
                    short.append(f"{items[0].classname or label} ({len(items)})")
                dataset.extend(sampled)
            if short:
                warnings.warn(
                    f"{num_shots} shots requested but {len(short)} class(es) have fewer images; "
                    f"taking all of theirs: {', '.join(short[:5])}{' ...' if len(short) > 5 else ''}",
                    stacklevel=2,
                )
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def subsample_classes(*args: list[Datum], subsample: str = "all", names: tuple[str, ...] = ()) -> Any:
        """CoCoOp base/new: sorted labels of the first source, first ceil(n/2) base, rest new, relabeled.

        The first source's labels must be 0..n-1 and every other source's lie among them (an item of a
        class the first source lacks would be dropped without a word); `names` name the sources in errors.
        """
        if subsample not in SUBSAMPLE_CHOICES:
            raise ValueError(
                f"DATASET.SUBSAMPLE_CLASSES must be one of {', '.join(SUBSAMPLE_CHOICES)}, got {subsample!r}"
            )
        if args:
            labels = names if len(names) == len(args) else tuple(f"list {k}" for k in range(len(args)))
            check_labels(dict(zip(labels, args, strict=True)), f"DATASET.SUBSAMPLE_CLASSES {subsample}")
        if subsample == "all":
            return args
        labels = sorted({item.label for item in args[0]})
        m = math.ceil(len(labels) / 2)
        print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
        selected = labels[:m] if subsample == "base" else labels[m:]
        relabeler = {y: y_new for y_new, y in enumerate(selected)}
        output = []
        for dataset in args:
            output.append(
                [
                    Datum(impath=item.impath, label=relabeler[item.label], classname=item.classname)
                    for item in dataset
                    if item.label in relabeler
                ]
            )
        return output

    # ---- the shared few-shot cache + subsample step every wrapper calls ---------------------------
    def fewshot_cache_path(self, num_shots: int, seed: int) -> str:
        """`<dataset_dir>/split_fewshot/shot_{N}-seed_{S}.json`."""
        return os.path.join(self.dataset_dir, "split_fewshot", f"shot_{num_shots}-seed_{seed}.json")

    def load_or_generate_fewshot(
        self, train: list[Datum], val: list[Datum] | None, num_shots: int, seed: int, fewshot_val: bool = True
    ) -> tuple[list[Datum], list[Datum] | None]:
        """Few-shot train (N/class) and val (min(N, 4)/class), cached as JSON; a stale cache is rebuilt."""
        if num_shots < 1:
            return train, val
        path = self.fewshot_cache_path(num_shots, seed)
        fingerprint = _fingerprint(train, val if fewshot_val else None, self.dataset_dir)
        if os.path.exists(path):
            cached = self._read_fewshot_cache(path, fingerprint, train, val if fewshot_val else None)
            if cached is not None:
                print(f"Loading preprocessed few-shot data from {path}")
                c_train, c_val = cached
                return c_train, (c_val if fewshot_val else val)
        train_fs = self.generate_fewshot_dataset(train, num_shots=num_shots)
        val_fs = val
        if fewshot_val and val is not None:
            val_fs = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        rows = {
            "num_shots": num_shots,
            "seed": seed,
            "split_fingerprint": fingerprint,
            "train": _rows(train_fs, self.dataset_dir),
            "val": _rows(val_fs, self.dataset_dir) if fewshot_val and val_fs is not None else None,
        }
        print(f"Saving preprocessed few-shot data to {path}")
        try:
            write_json_atomic(rows, path)
        except OSError as e:  # a read-only shared data folder: the subset is still valid for this run
            warnings.warn(f"could not write the few-shot cache {path}: {e}", stacklevel=2)
        return train_fs, val_fs

    def _read_fewshot_cache(
        self, path: str, fingerprint: str, train: list[Datum], val: list[Datum] | None
    ) -> tuple[list[Datum], list[Datum] | None] | None:
        """The cached subsets, or None (with a warning) when the cache is unreadable or from another split."""
        try:
            data = read_json(path)
            if data.get("split_fingerprint") != fingerprint:
                raise ValueError("it was made from a different split file")
            by_path = {os.path.normpath(d.impath): d for d in train + (val or [])}
            out = []
            for key in ("train", "val"):
                if data.get(key) is None:
                    out.append(None)
                    continue
                items = []
                for rel, label, classname in data[key]:
                    d = by_path.get(os.path.normpath(os.path.join(self.dataset_dir, rel)))
                    if d is None or d.label != label or d.classname != classname:
                        raise ValueError(f"entry {rel!r} is not in the split")
                    items.append(d)
                out.append(items)
            return out[0], out[1]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            warnings.warn(f"Rebuilding few-shot cache {path}: {e}", stacklevel=3)
            return None

    def build_splits(
        self,
        cfg: Any,
        train: list[Datum],
        val: list[Datum] | None,
        test: list[Datum],
        fewshot_val: bool = True,
    ) -> tuple[list[Datum], list[Datum] | None, list[Datum]]:
        """NUM_SHOTS (cached) then SUBSAMPLE_CLASSES; remembers the full train list for the unlabeled pool."""
        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        if subsample not in SUBSAMPLE_CHOICES:
            raise ValueError(
                f"DATASET.SUBSAMPLE_CLASSES must be one of {', '.join(SUBSAMPLE_CHOICES)}, got {subsample!r}"
            )
        self._full_train = list(train)
        train, val = self.load_or_generate_fewshot(
            train, val, int(cfg.DATASET.NUM_SHOTS), int(cfg.SEED), fewshot_val=fewshot_val
        )
        if val is None:
            train, test = self.subsample_classes(train, test, subsample=subsample, names=("train", "test"))
        else:
            train, val, test = self.subsample_classes(
                train, val, test, subsample=subsample, names=("train", "val", "test")
            )
        return list(train), (list(val) if val is not None else None), list(test)

    # ---- unlabeled pool ------------------------------------------------------------------------
    def unlabeled_impaths(self, unlabeled_dir: str = "") -> list[str]:
        """Training images of every class with labels dropped, plus every image under `unlabeled_dir`."""
        source = getattr(self, "_full_train", None) or self.train_x
        paths = [item.impath for item in source]
        if unlabeled_dir:
            folder = os.path.abspath(os.path.expanduser(unlabeled_dir))
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"DATASET.UNLABELED_DIR {folder} does not exist")
            extra = find_images(folder)
            if not extra:
                warnings.warn(
                    f"DATASET.UNLABELED_DIR {folder} holds no jpg/jpeg/png/webp images", stacklevel=2
                )
            paths += extra
        return paths


def _relative(impath: str, prefix: str) -> str:
    rel = os.path.relpath(impath, prefix) if prefix else impath
    return rel.replace(os.sep, "/")


def _rows(items: list[Datum], prefix: str) -> list[list[Any]]:
    return [[_relative(d.impath, prefix), d.label, d.classname] for d in items]


def _fingerprint(train: list[Datum], val: list[Datum] | None, prefix: str) -> str:
    """A hash of the split the few-shot subset is drawn from (paths relative, so moving DATA is fine)."""
    payload = json.dumps([_rows(train, prefix), _rows(val, prefix) if val is not None else None])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
