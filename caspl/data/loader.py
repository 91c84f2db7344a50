"""DataManager and loaders: Dassl's batch dicts, samplers, summary table, and the label-free unlabeled loader."""

import importlib
from typing import Any

import torch
from PIL import Image
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from caspl.data.base import DatasetBase
from caspl.data.datum import Datum
from caspl.data.transforms import build_transform
from caspl.registry import DATASET_REGISTRY

SAMPLERS = ("RandomSampler", "SequentialSampler")


def read_image(path: str) -> Image.Image:
    """Open an image as RGB, fully decoded; a missing, corrupt or truncated file raises naming the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise OSError(f"cannot read image {path} (corrupt or truncated?): {e}") from e


def _to_tensor(img: Image.Image) -> torch.Tensor:
    import torchvision.transforms.functional as F  # noqa: PLC0415

    return F.to_tensor(img)


class DatasetWrapper(Dataset):
    """Datums -> dicts {"img", "label", "domain", "impath", "index"} (Dassl's DatasetWrapper)."""

    def __init__(self, data_source: list[Datum], transform: Any = None) -> None:
        self.data_source = data_source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.data_source[idx]
        img = read_image(item.impath)
        img = self.transform(img) if self.transform is not None else _to_tensor(img)
        return {"img": img, "label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}


class UnlabeledDataset(Dataset):
    """Image paths only -> {"img", "impath", "index"}: there is no label to leak into a loss."""

    def __init__(self, impaths: list[str], transform: Any = None) -> None:
        self.impaths = [str(p) for p in impaths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.impaths)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        path = self.impaths[idx]
        img = read_image(path)
        img = self.transform(img) if self.transform is not None else _to_tensor(img)
        return {"img": img, "impath": path, "index": idx}


def build_sampler(name: str, data_source: Any) -> Sampler[int]:
    """RandomSampler or SequentialSampler by Dassl name."""
    if name == "RandomSampler":
        return RandomSampler(data_source)
    if name == "SequentialSampler":
        return SequentialSampler(data_source)
    raise ValueError(f"unsupported sampler {name!r}; available: {', '.join(SAMPLERS)}")


def _loader_kwargs(cfg: Any) -> dict[str, Any]:
    workers = int(cfg.DATALOADER.NUM_WORKERS)
    kw: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": bool(cfg.DATALOADER.PIN_MEMORY and cfg.USE_CUDA and torch.cuda.is_available()),
    }
    if workers > 0:
        kw["persistent_workers"] = bool(cfg.DATALOADER.PERSISTENT_WORKERS)
        kw["prefetch_factor"] = int(cfg.DATALOADER.PREFETCH_FACTOR)
    return kw


def build_data_loader(
    cfg: Any,
    sampler_type: str,
    data_source: list[Datum],
    batch_size: int,
    transform: Any,
    is_train: bool,
) -> DataLoader:
    """A loader over Datums; train drops the last partial batch only when len >= batch size (Dassl)."""
    wrapper = DatasetWrapper(data_source, transform)
    return DataLoader(
        wrapper,
        batch_size=batch_size,
        sampler=build_sampler(sampler_type, wrapper),
        drop_last=is_train and len(data_source) >= batch_size,
        **_loader_kwargs(cfg),
    )


def build_unlabeled_loader(
    cfg: Any, impaths: list[str], transform: Any, batch_size: int, shuffle: bool = True
) -> DataLoader:
    """Loader over label-free images for CasPL's boosting phase."""
    if not impaths:
        raise ValueError(
            "the unlabeled pool is empty: no training images and nothing under DATASET.UNLABELED_DIR"
        )
    ds = UnlabeledDataset(impaths, transform)
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=RandomSampler(ds) if shuffle else SequentialSampler(ds),
        drop_last=shuffle and len(ds) >= batch_size,
        **_loader_kwargs(cfg),
    )


def build_dataset(cfg: Any) -> DatasetBase:
    """Instantiate DATASET_REGISTRY[cfg.DATASET.NAME](cfg), importing the root `datasets` package if needed."""
    name = cfg.DATASET.NAME
    if name not in DATASET_REGISTRY:
        try:
            importlib.import_module("datasets")
        except ImportError:
            pass
    return DATASET_REGISTRY.get(name)(cfg)


class DataManager:
    """Builds the dataset, its transforms and train/val/test loaders (Dassl's DataManager)."""

    def __init__(
        self,
        cfg: Any,
        custom_tfm_train: Any = None,
        custom_tfm_test: Any = None,
        dataset: DatasetBase | None = None,
    ) -> None:
        self.dataset = dataset if dataset is not None else build_dataset(cfg)
        tfm_train = custom_tfm_train if custom_tfm_train is not None else build_transform(cfg, is_train=True)
        tfm_test = custom_tfm_test if custom_tfm_test is not None else build_transform(cfg, is_train=False)
        self.tfm_train, self.tfm_test = tfm_train, tfm_test
        dl = cfg.DATALOADER
        self.train_loader_x = build_data_loader(
            cfg, dl.TRAIN_X.SAMPLER, self.dataset.train_x, dl.TRAIN_X.BATCH_SIZE, tfm_train, is_train=True
        )
        self.val_loader = None
        if self.dataset.val:
            self.val_loader = build_data_loader(
                cfg, dl.TEST.SAMPLER, self.dataset.val, dl.TEST.BATCH_SIZE, tfm_test, is_train=False
            )
        if not self.dataset.test:
            raise ValueError(f"dataset {cfg.DATASET.NAME} has an empty test split")
        self.test_loader = build_data_loader(
            cfg, dl.TEST.SAMPLER, self.dataset.test, dl.TEST.BATCH_SIZE, tfm_test, is_train=False
        )
        self._num_classes = self.dataset.num_classes
        self._lab2cname = self.dataset.lab2cname
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self.dataset.classnames

    def summary_rows(self, cfg: Any) -> list[list[str]]:
        """Rows of the dataset summary table."""
        rows = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", str(list(cfg.DATASET.SOURCE_DOMAINS))])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", str(list(cfg.DATASET.TARGET_DOMAINS))])
        rows.append(["# classes", f"{self.num_classes:,}"])
        rows.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            rows.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            rows.append(["# val", f"{len(self.dataset.val):,}"])
        rows.append(["# test", f"{len(self.dataset.test):,}"])
        return rows

    def show_dataset_summary(self, cfg: Any) -> None:
        """Print Dassl's dataset summary table."""
        print(tabulate(self.summary_rows(cfg)))
