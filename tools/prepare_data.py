"""Check (and where possible fetch) the 15 CoOp-family datasets under a data root; print a status table.

    python tools/prepare_data.py --root DATA [--dataset OxfordPets --dataset imagenet ...] [--no-download]
        [--download-archives [--keep-archives]]

Split files are fetched with gdown from their published Google Drive ids when absent. With
--download-archives the image archives that have a public URL (ARCHIVES below; tens of GB for some) are
downloaded too, extracted and moved into the layout the wrappers expect. Nothing that exists is ever
overwritten. Exit status 0 when every checked dataset is ready, 1 otherwise.
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
from caspl.data.io import chmod_as_created  # noqa: E402
from caspl.registry import DATASET_REGISTRY  # noqa: E402
from tools.archives import GDRIVE, Archive, ArchiveError, display_url, install, is_installed  # noqa: E402

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
    "StanfordCars": "cars_train.tgz, cars_test.tgz, car_devkit.tgz, cars_test_annos_withlabels.mat: the "
    "ai.stanford.edu URLs are gone, so no download here; get them from a mirror (e.g. Kaggle, login needed)",
    "OxfordFlowers": "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/{102flowers.tgz,imagelabels.mat}",
    "Food101": "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (food-101.tar.gz)",
    "FGVCAircraft": "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz "
    "(keep data/, rename it fgvc_aircraft/)",
    "SUN397": "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz + Partitions.zip",
    "DescribableTextures": "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
    "EuroSAT": "https://zenodo.org/records/7711810/files/EuroSAT_RGB.zip (its EuroSAT_RGB/ folder is "
    "eurosat/2750; CoOp's madm.dfki.de URL is dead)",
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

# --download-archives: per dataset, the files to fetch and where their contents go (the wrappers' layouts).
# None of these URLs can be checked from where this table was written; a failed download says so in the
# table ("the URL may have moved") with the file's final place, so it can be fetched by hand and reused.
VGG = "https://www.robots.ox.ac.uk/~vgg/data"
ARCHIVES: dict[str, tuple[Archive, ...]] = {
    # CoOp DATASETS.md's www.vision.caltech.edu URL is gone; Caltech's data repository record (URL and md5 from
    # torchvision 0.29 datasets/caltech.py) is a zip holding caltech-101/101_ObjectCategories.tar.gz.
    "Caltech101": (
        Archive(
            ("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",),
            "caltech-101.zip",
            (("101_ObjectCategories", "caltech-101/101_ObjectCategories"),),
            inner="caltech-101/101_ObjectCategories.tar.gz",
            md5="3138e1922a9193bfa496528edbbc45d0",
        ),
    ),
    # CoOp DATASETS.md (OxfordPets); md5s from torchvision datasets/oxford_iiit_pet.py.
    "OxfordPets": (
        Archive(
            (f"{VGG}/pets/data/images.tar.gz",),
            "images.tar.gz",
            (("images", "oxford_pets/images"),),
            md5="5c4f3ee8e5d25df40f4fd59a7f44e54c",
        ),
        Archive(
            (f"{VGG}/pets/data/annotations.tar.gz",),
            "annotations.tar.gz",
            (("annotations", "oxford_pets/annotations"),),
            md5="95a8c909bbe2e81eed6a22bccdf3f68f",
        ),
    ),
    # CoOp DATASETS.md (Flowers102): the tgz holds jpg/; md5s from torchvision datasets/flowers102.py;
    # cat_to_name.json is the Google Drive file DATASETS.md links.
    "OxfordFlowers": (
        Archive(
            (f"{VGG}/flowers/102/102flowers.tgz",),
            "102flowers.tgz",
            (("jpg", "oxford_flowers/jpg"),),
            md5="52808999861908f626f3c1f4e79d11fa",
        ),
        Archive(
            (f"{VGG}/flowers/102/imagelabels.mat",),
            "imagelabels.mat",
            (("imagelabels.mat", "oxford_flowers/imagelabels.mat"),),
            md5="e0620be6f572b9609742df49c70aed4d",
        ),
        Archive(
            (GDRIVE + "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0",),
            "cat_to_name.json",
            (("cat_to_name.json", "oxford_flowers/cat_to_name.json"),),
        ),
    ),
    # DATASETS.md names the ETH page and food-101.tar.gz (it extracts to food-101/); the file URL and md5 are
    # torchvision's datasets/food101.py.
    "Food101": (
        Archive(
            ("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",),
            "food-101.tar.gz",
            (("food-101", "food-101"),),
            provides=("food-101/images", "food-101/meta"),
            md5="85eeb15f3717b99a5da872d97d918f87",
        ),
    ),
    # CoOp DATASETS.md: keep data/ of the tarball and rename it fgvc_aircraft/ (no md5 published).
    "FGVCAircraft": (
        Archive(
            (f"{VGG}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",),
            "fgvc-aircraft-2013b.tar.gz",
            (("fgvc-aircraft-2013b/data", "fgvc_aircraft"),),
            provides=("fgvc_aircraft/images", "fgvc_aircraft/variants.txt"),
        ),
    ),
    # CoOp DATASETS.md; md5 from torchvision datasets/sun397.py. Partitions.zip is left out: the split file
    # replaces it, and its inner layout is not documented there.
    "SUN397": (
        Archive(
            ("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",),
            "SUN397.tar.gz",
            (("SUN397", "sun397/SUN397"),),
            md5="8ca2778205c41d23104230ba66911c7a",
        ),
    ),
    # CoOp DATASETS.md (extracts to dtd/ with images/, imdb/, labels/); md5 from torchvision datasets/dtd.py.
    "DescribableTextures": (
        Archive(
            (f"{VGG}/dtd/download/dtd-r1.0.1.tar.gz",),
            "dtd-r1.0.1.tar.gz",
            (("dtd", "dtd"),),
            provides=("dtd/images",),
            md5="fff73e5086ae6bdbea199a49dfb8a4c1",
        ),
    ),
    # DATASETS.md's madm.dfki.de URL is dead; the EuroSAT authors' RGB release is Zenodo record 7711810, whose
    # top folder EuroSAT_RGB/ is the old 2750/ (no md5 known here).
    "EuroSAT": (
        Archive(
            ("https://zenodo.org/records/7711810/files/EuroSAT_RGB.zip",),
            "EuroSAT_RGB.zip",
            (("EuroSAT_RGB", "eurosat/2750"),),
        ),
    ),
    # CoOp DATASETS.md: UCF-101-midframes.zip on Google Drive, extracted to ucf101/UCF-101-midframes.
    "UCF101": (
        Archive(
            (GDRIVE + "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O",),
            "UCF-101-midframes.zip",
            (("UCF-101-midframes", "ucf101/UCF-101-midframes"),),
        ),
    ),
    # The modestyachts/ImageNetV2 README moved the test sets to the Hugging Face dataset vaishaal/ImageNetV2;
    # DATASETS.md's S3 URL is kept as a mirror. Top folder as in DATASETS.md's layout.
    "ImageNetV2": (
        Archive(
            (
                "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/"
                "imagenetv2-matched-frequency.tar.gz",
                "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
            ),
            "imagenetv2-matched-frequency.tar.gz",
            (
                (
                    "imagenetv2-matched-frequency-format-val",
                    "imagenetv2/imagenetv2-matched-frequency-format-val",
                ),
            ),
        ),
    ),
    # DATASETS.md links HaohanWang/ImageNet-Sketch, whose README gives this Google Drive id (7.8 GB zip); the
    # zip's top folder sketch/ (wnid folders) becomes imagenet-sketch/images.
    "ImageNetSketch": (
        Archive(
            (GDRIVE + "1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA",),
            "ImageNet-Sketch.zip",
            (("sketch", "imagenet-sketch/images"),),
        ),
    ),
    # DATASETS.md links hendrycks/natural-adv-examples, whose README gives this tarball (imagenet-a/ inside).
    "ImageNetA": (
        Archive(
            ("https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",),
            "imagenet-a.tar",
            (("imagenet-a", "imagenet-adversarial/imagenet-a"),),
        ),
    ),
    # DATASETS.md links hendrycks/imagenet-r, whose README gives this tarball (imagenet-r/ inside).
    "ImageNetR": (
        Archive(
            ("https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",),
            "imagenet-r.tar",
            (("imagenet-r", "imagenet-rendition/imagenet-r"),),
        ),
    ),
}
NO_ARCHIVE = {
    "ImageNet": "no download: ImageNet needs a login at image-net.org",
    "StanfordCars": "no download: the original Stanford URLs are gone and the mirrors need a login",
}
RERUN_HINT = "(or rerun with --download-archives)"
ARCHIVE_DIR = "archives"  # <root>/archives/<dataset folder>/<file>: downloads, and files put there by hand

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
        chmod_as_created(tmp)  # the split file is read by every user of the data root
        downloader(file_id, tmp)
        if not os.path.exists(target):  # re-check: another process may have written it meanwhile
            os.replace(tmp, target)
        return "downloaded"
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _missing_report(name: str, path: str, layout: str) -> Report:
    notes = [f"expected {path}", f"layout:\n{layout}", f"get: {SOURCES.get(name, '')}"]
    if name in ARCHIVES:
        notes.append(RERUN_HINT)
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
        try:  # also checks labels and class names (caspl.data.checks)
            train, val, test = DatasetBase.read_split(split_path, prefix)
        except (ValueError, FileNotFoundError) as e:  # keeps the notes so far ("downloaded ...")
            report.status = "incomplete"
            report.notes.append(f"unreadable or inconsistent split file: {e}")
            return report
        items = train + val + test
    else:
        try:
            items = [d for part in _fgvc_lists(dataset_dir, cls) for d in part]
        except FileNotFoundError as e:
            return Report(name, "incomplete", notes=[f"missing {e.filename}", f"layout:\n{cls.layout}"])
        except ValueError as e:  # SplitError: a list contradicts variants.txt or itself
            return Report(name, "incomplete", notes=[f"inconsistent annotation lists: {e}"])
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
    try:
        names = imagenet_classnames(dataset_dir)
    except ValueError as e:  # SplitError: a repeated wnid or name in classnames.txt
        return Report(name, "incomplete", notes=[f"invalid class list: {e}"])
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


def _listed(paths: list[str], root: str) -> str:
    rel = [os.path.relpath(p, root) for p in paths]
    return ", ".join(rel[:MAX_LISTED]) + (
        f" (+{len(rel) - MAX_LISTED} more)" if len(rel) > MAX_LISTED else ""
    )


def fetch_archives(
    root: str, name: str, downloader: Downloader | None, keep: bool = False
) -> tuple[list[str], str]:
    """Install each archive of `name` that `root` still lacks; returns (notes, failure status or "")."""
    if name not in ARCHIVES:
        return [NO_ARCHIVE.get(name, "no public archive known")], ""
    store = os.path.join(root, ARCHIVE_DIR, DATASET_REGISTRY.get(name).folder)
    notes: list[str] = []
    failure = ""
    for archive in ARCHIVES[name]:
        if is_installed(archive, root):
            continue
        path = os.path.join(store, archive.filename)
        try:
            done = install(archive, root, store, downloader, keep)
        except ArchiveError as e:  # reported in the table; the other archives and datasets go on
            failure = failure or e.status
            urls = " or ".join(display_url(u) for u in archive.urls)
            detail = str(e) if e.status == "download failed" else f"{urls}: {e}"
            notes.append(f"{e.status}: {archive.filename}: {detail}")
            if e.status == "extraction failed":  # not the file's fault (e.g. a full disk): it stays
                notes.append(f"{path} is kept; fix the cause and rerun with --download-archives")
            else:
                notes.append(
                    f"the URL may have moved: get {archive.filename} by hand, save it as {path} "
                    "and rerun with --download-archives (it is extracted from there)"
                )
            continue
        line = f"installed {archive.filename} from {done.source}"
        if done.moved:
            line += f": {_listed(done.moved, root)}"
        notes.append(line)
        if done.kept:
            notes.append(f"kept what existed: {_listed(done.kept, root)}")
        if keep:
            notes.append(f"archive kept at {path}")
    for folder in (store, os.path.dirname(store)):  # no empty archives/<folder>/ left by a failed download
        try:
            os.rmdir(folder)
        except OSError:
            pass
    return notes, failure


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
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--no-download", action="store_true", help="only verify, never download")
    mode.add_argument(
        "--download-archives",
        action="store_true",
        help="also download and extract the image archives that have a public URL (tens of GB for some)",
    )
    p.add_argument(
        "--keep-archives", action="store_true", help=f"keep downloaded archives under ROOT/{ARCHIVE_DIR}/"
    )
    args = p.parse_args(argv)
    if args.keep_archives and not args.download_archives:
        p.error("--keep-archives goes with --download-archives")
    root = os.path.abspath(os.path.expanduser(args.root))
    names = resolve_names(args.dataset)
    if args.download_archives:
        os.makedirs(root, exist_ok=True)
    elif not os.path.isdir(root):
        print(f"--root {root} does not exist: every dataset is reported missing")
    fetch = None if args.no_download else downloader
    reports = []
    for name in names:
        notes, failure = (
            fetch_archives(root, name, fetch, args.keep_archives) if args.download_archives else ([], "")
        )
        report = check_dataset(root, name, fetch)
        if failure and report.status != "ready":
            report.status = failure
        report.notes = notes + [n for n in report.notes if not (args.download_archives and n == RERUN_HINT)]
        reports.append(report)
    print(format_table(reports))
    return 0 if all(r.status == "ready" for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
