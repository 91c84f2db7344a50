"""Check (and where possible fetch) the 15 CoOp-family datasets under a data root; print a status table.

    python tools/prepare_data.py --root DATA [--dataset OxfordPets --dataset imagenet ...] [--no-download]

Split files are fetched with gdown from their published Google Drive ids when absent; nothing that exists is
ever overwritten. Exit status 0 when every checked dataset is ready, 1 otherwise.
"""

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tabulate import tabulate  # noqa: E402

import datasets  # noqa: E402, F401  (registers the datasets)
from caspl.data import DatasetBase  # noqa: E402
from caspl.data.coop import CoOpDataset, imagenet_classnames, imagenet_subset_wnids  # noqa: E402
from caspl.registry import DATASET_REGISTRY  # noqa: E402

# The CoOp-family benchmark order; CLI names accept these or the configs/datasets/<name>.yaml stems.
DATASETS = (
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101", "FGVCAircraft",
    "SUN397", "DescribableTextures", "EuroSAT", "UCF101", "ImageNetV2", "ImageNetSketch", "ImageNetA",
    "ImageNetR",
)  # fmt: skip
YAML_NAMES = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DescribableTextures", "eurosat": "EuroSAT",
    "ucf101": "UCF101", "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNetSketch",
    "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR",
}  # fmt: skip
# Where the images come from (the CoOp DATASETS.md sources); shown when a dataset is missing.
SOURCES = {
    "ImageNet": "https://image-net.org (train + val, extracted into images/train and images/val wnid folders)",
    "Caltech101": "https://data.caltech.edu/records/mzrjq-6wc02 (101_ObjectCategories)",
    "OxfordPets": "https://www.robots.ox.ac.uk/~vgg/data/pets/data/{images,annotations}.tar.gz",
    "StanfordCars": "cars_train.tgz, cars_test.tgz, car_devkit.tgz, cars_test_annos_withlabels.mat "
    "(Stanford Cars; mirrors exist on Kaggle)",
    "OxfordFlowers": "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/{102flowers.tgz,imagelabels.mat}",
    "Food101": "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)",
    "FGVCAircraft": "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz "
    "(keep data/, rename it fgvc_aircraft/)",
    "SUN397": "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz + Partitions.zip",
    "DescribableTextures": "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
    "EuroSAT": "http://madm.dfki.de/files/sentinel/EuroSAT.zip (RGB, the 2750/ folder)",
    "UCF101": "UCF-101-midframes.zip, Google Drive id 10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O",
    "ImageNetV2": "https://huggingface.co/datasets/vaishaal/ImageNetV2 (imagenetv2-matched-frequency.tar.gz)",
    "ImageNetSketch": "https://github.com/HaohanWang/ImageNet-Sketch",
    "ImageNetA": "https://github.com/hendrycks/natural-adv-examples (imagenet-a.tar)",
    "ImageNetR": "https://github.com/hendrycks/imagenet-r (imagenet-r.tar)",
}
# Image counts of the full test-only sets / ImageNet (train + val), for the found-vs-expected column.
FULL_COUNTS = {
    "ImageNet": 1_281_167 + 50_000,
    "ImageNetV2": 10_000,
    "ImageNetSketch": 50_889,
    "ImageNetA": 7_500,
    "ImageNetR": 30_000,
}
MAX_LISTED = 3

Downloader = Callable[[str, str], None]  # (google drive file id, output path)


@dataclass
class Report:
    """One dataset's verdict."""

    dataset: str
    status: str  # ready | incomplete | missing
    found: int = 0
    expected: int = 0
    notes: list[str] = field(default_factory=list)


def gdown_download(file_id: str, output: str) -> None:
    """Fetch a Google Drive file with gdown."""
    import gdown  # noqa: PLC0415

    if gdown.download(id=file_id, output=output, quiet=False) is None:
        raise RuntimeError(f"gdown could not fetch Google Drive file {file_id}")


def fetch_new_file(file_id: str, target: str, downloader: Downloader) -> str:
    """Download into a temp file next to `target`, then rename; never replaces an existing file."""
    if os.path.exists(target):
        return "exists"
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=os.path.dirname(target))
    os.close(fd)
    try:
        downloader(file_id, tmp)
        if not os.path.exists(target):  # re-check: another process may have written it meanwhile
            os.replace(tmp, target)
        return "downloaded"
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _missing_report(name: str, path: str, layout: str) -> Report:
    notes = [f"expected {path}", f"layout:\n{layout}", f"get: {SOURCES.get(name, '')}"]
    return Report(name, "missing", notes=notes)


def _count_files(folder: str) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _list_missing(paths: list[str]) -> str:
    head = ", ".join(paths[:MAX_LISTED])
    return f"{len(paths):,} listed image(s) missing, e.g. {head}" + (
        " ..." if len(paths) > MAX_LISTED else ""
    )


def check_split_dataset(root: str, cls: type[CoOpDataset], downloader: Downloader | None) -> Report:
    """A dataset with a CoOp split file (or FGVC's own lists): folder, split, every listed image."""
    name = cls.__name__
    dataset_dir = os.path.join(root, cls.folder)
    if not os.path.isdir(dataset_dir):
        return _missing_report(name, dataset_dir, cls.layout)
    report = Report(name, "ready")
    if cls.split_file:
        split_path = os.path.join(dataset_dir, cls.split_file)
        if not os.path.isfile(split_path) and cls.split_gdrive_id and downloader is not None:
            try:
                fetch_new_file(cls.split_gdrive_id, split_path, downloader)
                report.notes.append(f"downloaded {cls.split_file}")
            except Exception as e:  # noqa: BLE001  (the table reports it; other datasets go on)
                report.notes.append(f"download of {cls.split_file} failed: {e}")
        if not os.path.isfile(split_path):
            report.status = "incomplete"
            report.notes += [
                f"split file missing: {split_path}",
                f"get it: gdown {cls.split_gdrive_id} -O {split_path}",
                "(or keep the original annotations there: the first run builds and saves a split)",
            ]
            report.found = _count_files(os.path.join(dataset_dir, cls.image_subdir))
            return report
        prefix = (
            dataset_dir if cls.split_prefix_is_dataset_dir else os.path.join(dataset_dir, cls.image_subdir)
        )
        try:
            train, val, test = DatasetBase.read_split(split_path, prefix)
        except (ValueError, FileNotFoundError) as e:
            return Report(name, "incomplete", notes=[f"unreadable split file: {e}"])
        items = train + val + test
    else:
        try:
            items = [d for part in _fgvc_lists(dataset_dir, cls) for d in part]
        except FileNotFoundError as e:
            return Report(name, "incomplete", notes=[f"missing {e.filename}", f"layout:\n{cls.layout}"])
    paths = sorted({d.impath for d in items})
    missing = [p for p in paths if not os.path.isfile(p)]
    report.expected, report.found = len(paths), len(paths) - len(missing)
    if missing:
        report.status = "incomplete"
        report.notes.append(_list_missing(missing))
        report.notes.append(f"get: {SOURCES.get(name, '')}")
    return report


def _fgvc_lists(dataset_dir: str, cls: type) -> list:
    probe = object.__new__(cls)
    probe.dataset_dir = dataset_dir
    probe.image_dir = os.path.join(dataset_dir, cls.image_subdir)
    return list(probe.load_split())


def check_wnid_dataset(root: str, cls: type) -> Report:
    """ImageNet and its test-only variants: the class folders and the number of images in them."""
    name = cls.__name__
    dataset_dir = os.path.join(root, cls.folder)
    if not os.path.isdir(dataset_dir):
        return _missing_report(name, dataset_dir, cls.layout)
    names = imagenet_classnames(dataset_dir)
    if name == "ImageNet":
        parts = {os.path.join(dataset_dir, "images", p): list(names) for p in ("train", "val")}
    elif name == "ImageNetV2":
        parts = {os.path.join(dataset_dir, cls.image_subdir): [str(i) for i in range(1000)]}
    elif name in ("ImageNetA", "ImageNetR"):
        parts = {os.path.join(dataset_dir, cls.image_subdir): imagenet_subset_wnids(name)}
    else:
        parts = {os.path.join(dataset_dir, cls.image_subdir): list(names)}
    report = Report(name, "ready", expected=FULL_COUNTS.get(name, 0))
    for folder, classes in parts.items():
        if not os.path.isdir(folder):
            report.status = "incomplete"
            report.notes.append(f"missing {folder}")
            continue
        absent = [c for c in classes if not os.path.isdir(os.path.join(folder, c))]
        report.found += _count_files(folder)
        if absent:
            report.status = "incomplete"
            report.notes.append(
                f"{len(absent)} of {len(classes)} class folders missing under {folder}, e.g. {absent[0]}"
            )
    if report.status != "ready":
        report.notes.append(f"layout:\n{cls.layout}")
        report.notes.append(f"get: {SOURCES.get(name, '')}")
    elif report.expected and report.found < report.expected:
        report.notes.append(f"fewer images than the full set ({report.found:,} < {report.expected:,})")
    return report


def check_dataset(root: str, name: str, downloader: Downloader | None = None) -> Report:
    """Verify one dataset under `root` (fetching its split file when a downloader is given)."""
    cls = DATASET_REGISTRY.get(name)
    if issubclass(cls, CoOpDataset):
        return check_split_dataset(root, cls, downloader)
    return check_wnid_dataset(root, cls)


def resolve_names(names: list[str] | None) -> list[str]:
    """CLI names (registry or yaml stems, any case) -> registry names; all 15 when none given."""
    if not names:
        return list(DATASETS)
    lookup = {n.lower(): n for n in DATASETS} | {k: v for k, v in YAML_NAMES.items()}
    out = []
    for n in names:
        key = n.lower().removesuffix(".yaml")
        if key not in lookup:
            raise SystemExit(f"unknown dataset {n!r}; choose from: {', '.join(DATASETS)}")
        out.append(lookup[key])
    return out


def format_table(reports: list[Report]) -> str:
    """The status table: dataset, status, images found / expected, what to do."""
    rows = []
    for r in reports:
        images = f"{r.found:,} / {r.expected:,}" if r.expected else (f"{r.found:,}" if r.found else "-")
        rows.append([r.dataset, r.status, images, "\n".join(r.notes) or "-"])
    return tabulate(
        rows,
        headers=["dataset", "status", "images found / expected", "notes"],
        tablefmt="simple",
        disable_numparse=True,
    )


def main(argv: list[str] | None = None, downloader: Downloader | None = gdown_download) -> int:
    """CLI entry point; `downloader=None` (or --no-download) never touches the network."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="the folder holding the datasets (DATASET.ROOT)")
    p.add_argument("--dataset", action="append", help="dataset to check (repeatable); default: all 15")
    p.add_argument("--no-download", action="store_true", help="only verify, never download")
    args = p.parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    if not os.path.isdir(root):
        print(f"--root {root} does not exist: every dataset is reported missing")
    reports = [
        check_dataset(root, n, None if args.no_download else downloader) for n in resolve_names(args.dataset)
    ]
    print(format_table(reports))
    return 0 if all(r.status == "ready" for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
