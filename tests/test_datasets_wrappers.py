"""The 15 CoOp-family datasets on miniature fake copies: layouts, split files, annotations, class names."""

import io
import json
import os
import random
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

import datasets  # noqa: F401  (registers the datasets)
from caspl.config import get_cfg_default
from caspl.data import DataManager, Datum
from caspl.data.coop import imagenet_classnames, imagenet_subset_wnids
from caspl.data.io import DatasetLayoutError
from caspl.registry import DATASET_REGISTRY

_buf = io.BytesIO()
Image.new("RGB", (4, 4), (200, 30, 90)).save(_buf, format="PNG")
TINY = _buf.getvalue()  # PIL sniffs the content, so the same bytes serve .jpg/.JPEG names too

PET_BREEDS = ["Abyssinian", "american_bulldog", "Bengal", "great_pyrenees"] + [f"breed{k}" for k in range(33)]
EUROSAT = [
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
]  # fmt: skip


def _img(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(TINY)
    return str(path)


def _split_json(path: Path, parts: dict[str, list[tuple[str, int, str]]]) -> None:
    path.write_text(json.dumps({k: [list(e) for e in v] for k, v in parts.items()}))


def _class_folders(image_dir: Path, classes: list[str], n: int = 4) -> None:
    for c in classes:
        for i in range(n):
            _img(image_dir / c / f"{c}_{i:04d}.jpg")


def make_oxford_pets(root: Path, split: bool) -> None:
    d = root / "oxford_pets"
    lines = {"trainval.txt": [], "test.txt": []}
    parts = {"train": [], "val": [], "test": []}
    for label, breed in enumerate(PET_BREEDS):
        for i in range(1, 6):
            name = f"{breed}_{i}"
            _img(d / "images" / f"{name}.jpg")
            which = "test.txt" if i == 5 else "trainval.txt"
            lines[which].append(f"{name} {label + 1} {1 + (breed[0].isupper() is False)} 1")
            part = "test" if i == 5 else ("val" if i == 4 else "train")
            parts[part].append((f"{name}.jpg", label, breed.lower()))
    (d / "annotations").mkdir()
    for k, v in lines.items():
        (d / "annotations" / k).write_text("\n".join(v) + "\n")
    if split:
        _split_json(d / "split_zhou_OxfordPets.json", parts)


def make_caltech101(root: Path, split: bool) -> None:
    d = root / "caltech-101"
    classes = ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "accordion", "airplanes"]
    _class_folders(d / "101_ObjectCategories", classes)
    if split:
        kept = [
            ("Faces", "face"),
            ("Leopards", "leopard"),
            ("accordion", "accordion"),
            ("airplanes", "airplane"),
        ]
        parts = {k: [] for k in ("train", "val", "test")}
        for label, (folder, cname) in enumerate(kept):
            for i, part in enumerate(["train", "train", "val", "test"]):
                parts[part].append((f"{folder}/{folder}_{i:04d}.jpg", label, cname))
        _split_json(d / "split_zhou_Caltech101.json", parts)


def _folder_dataset(
    root: Path, folder: str, image_subdir: str, classes: list[str], split_name: str, split: bool
):
    d = root / folder
    _class_folders(d / image_subdir, classes)
    if split:
        parts = {k: [] for k in ("train", "val", "test")}
        for label, c in enumerate(classes):
            for i, part in enumerate(["train", "train", "val", "test"]):
                parts[part].append((f"{c}/{c}_{i:04d}.jpg", label, c))
        _split_json(d / split_name, parts)


def make_dtd(root: Path, split: bool) -> None:
    _folder_dataset(
        root, "dtd", "images", ["banded", "blotchy", "bubbly"], "split_zhou_DescribableTextures.json", split
    )


def make_food101(root: Path, split: bool) -> None:
    _folder_dataset(
        root, "food-101", "images", ["apple_pie", "baklava", "beef_tartare"], "split_zhou_Food101.json", split
    )


def make_eurosat(root: Path, split: bool) -> None:
    d = root / "eurosat"
    _class_folders(d / "2750", EUROSAT)
    if split:  # the published file carries the readable names
        from datasets.eurosat import NEW_CNAMES

        parts = {k: [] for k in ("train", "val", "test")}
        for label, c in enumerate(EUROSAT):
            for i, part in enumerate(["train", "train", "val", "test"]):
                parts[part].append((f"{c}/{c}_{i:04d}.jpg", label, NEW_CNAMES[c]))
        _split_json(d / "split_zhou_EuroSAT.json", parts)


CARS = ["AM General Hummer SUV 2000", "Tesla Model S Sedan 2012", "smart fortwo Convertible 2012"]


def make_stanford_cars(root: Path, split: bool) -> None:
    d = root / "stanford_cars"
    (d / "devkit").mkdir(parents=True)
    names = np.empty((1, len(CARS)), dtype=object)
    for i, c in enumerate(CARS):
        names[0, i] = c
    sio.savemat(d / "devkit" / "cars_meta.mat", {"class_names": names})
    for sub, mat, per in (
        ("cars_train", d / "devkit" / "cars_train_annos.mat", 5),
        ("cars_test", d / "cars_test_annos_withlabels.mat", 1),
    ):
        ann = np.zeros((1, len(CARS) * per), dtype=[("fname", "O"), ("class", "O")])
        k = 0
        for label in range(len(CARS)):
            for _ in range(per):
                fname = f"{k + 1:05d}.jpg"
                _img(d / sub / fname)
                ann[0, k] = (fname, np.array([[label + 1]], dtype=np.uint8))
                k += 1
        sio.savemat(mat, {"annotations": ann})
    if split:
        parts = {"train": [], "val": [], "test": []}
        for label in range(len(CARS)):
            w = CARS[label].split(" ")
            cname = " ".join([w[-1]] + w[:-1])
            for j, part in enumerate(["train", "train", "train", "train", "val"]):
                parts[part].append((f"cars_train/{label * 5 + j + 1:05d}.jpg", label, cname))
            parts["test"].append((f"cars_test/{label + 1:05d}.jpg", label, cname))
        _split_json(d / "split_zhou_StanfordCars.json", parts)


FLOWERS = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}


def make_oxford_flowers(root: Path, split: bool) -> None:
    d = root / "oxford_flowers"
    labels = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]
    for i in range(len(labels)):
        _img(d / "jpg" / f"image_{i + 1:05d}.jpg")
    sio.savemat(d / "imagelabels.mat", {"labels": np.array([labels])})
    (d / "cat_to_name.json").write_text(json.dumps(FLOWERS))
    if split:
        parts = {"train": [], "val": [], "test": []}
        for i, lab in enumerate(labels):
            part = ["train", "train", "val", "test"][i // 3]
            parts[part].append((f"image_{i + 1:05d}.jpg", lab - 1, FLOWERS[str(lab)]))
        _split_json(d / "split_zhou_OxfordFlowers.json", parts)


SUN = ["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop"]


def make_sun397(root: Path, split: bool) -> None:
    d = root / "sun397"
    (d / "SUN397").mkdir(parents=True)
    (d / "ClassName.txt").write_text("\n".join(SUN) + "\n")
    train, test = [], []
    for c in SUN:
        for i in range(5):
            rel = f"{c}/sun_{i:04d}.jpg"
            _img(d / "SUN397" / rel[1:])
            (test if i == 4 else train).append(rel)
    (d / "Training_01.txt").write_text("\n".join(train) + "\n")
    (d / "Testing_01.txt").write_text("\n".join(test) + "\n")
    if split:
        parts = {"train": [], "val": [], "test": []}
        for label, c in enumerate(SUN):
            cname = " ".join(c.split("/")[2:][::-1])
            for i in range(5):
                part = "test" if i == 4 else ("val" if i == 3 else "train")
                parts[part].append((f"{c[1:]}/sun_{i:04d}.jpg", label, cname))
        _split_json(d / "split_zhou_SUN397.json", parts)


UCF = ["ApplyEyeMakeup", "BabyCrawling", "YoYo"]


def make_ucf101(root: Path, split: bool) -> None:
    d = root / "ucf101"
    lists = d / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {a}\n" for i, a in enumerate(UCF)))
    train, test, parts = [], [], {"train": [], "val": [], "test": []}
    for label, a in enumerate(UCF):
        folder = "_".join(__import__("re").findall("[A-Z][^A-Z]*", a))
        for g in range(1, 6):
            stem = f"v_{a}_g{g:02d}_c01"
            _img(d / "UCF-101-midframes" / folder / f"{stem}.jpg")
            (test if g == 5 else train).append(f"{a}/{stem}.avi" + ("" if g == 5 else f" {label + 1}"))
            part = "test" if g == 5 else ("val" if g == 4 else "train")
            parts[part].append((f"{folder}/{stem}.jpg", label, folder))
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test) + "\n")
    if split:
        _split_json(d / "split_zhou_UCF101.json", parts)


AIRCRAFT = ["707-320", "A300B4", "Cessna 172"]


def make_fgvc_aircraft(root: Path, split: bool) -> None:
    d = root / "fgvc_aircraft"
    d.mkdir()
    (d / "variants.txt").write_text("\n".join(AIRCRAFT) + "\n")
    k = 1000000
    for part, n in (("train", 3), ("val", 1), ("test", 2)):
        lines = []
        for c in AIRCRAFT:
            for _ in range(n):
                k += 1
                _img(d / "images" / f"{k:07d}.jpg")
                lines.append(f"{k:07d} {c}")
        (d / f"images_variant_{part}.txt").write_text("\n".join(lines) + "\n")


WNIDS = ["n01440764", "n01443537", "n01484850"]


def make_imagenet(root: Path, split: bool) -> None:
    for part, n in (("train", 5), ("val", 2)):
        for w in WNIDS:
            for i in range(n):
                _img(root / "imagenet" / "images" / part / w / f"{w}_{i}.JPEG")


def make_imagenetv2(root: Path, split: bool) -> None:
    base = root / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    for i in range(1000):  # every class holds an image: an empty class folder is a gap in the labels
        _img(base / str(i) / "a.jpeg")


def make_imagenet_sketch(root: Path, split: bool) -> None:
    for w in WNIDS:
        _img(root / "imagenet-sketch" / "images" / w / "sketch_1.JPEG")


def _make_subset(folder: str, sub: str, name: str) -> Callable[[Path, bool], None]:
    def _make(root: Path, split: bool) -> None:
        for w in imagenet_subset_wnids(name)[:3]:
            _img(root / folder / sub / w / "x.jpg")
        (root / folder / sub / "README.txt").write_text("readme\n")

    return _make


# name -> (builder, n classes, (train, val, test) sizes with the split file, expected class names sample)
FAKES: dict[str, tuple[Callable[[Path, bool], None], int, tuple[int, int, int], dict[int, str]]] = {
    "OxfordPets": (
        make_oxford_pets,
        37,
        (111, 37, 37),
        {0: "abyssinian", 1: "american_bulldog", 3: "great_pyrenees"},
    ),
    "Caltech101": (make_caltech101, 4, (8, 4, 4), {0: "face", 1: "leopard", 3: "airplane"}),
    "DescribableTextures": (make_dtd, 3, (6, 3, 3), {0: "banded"}),
    "Food101": (make_food101, 3, (6, 3, 3), {0: "apple_pie"}),
    "EuroSAT": (
        make_eurosat,
        10,
        (20, 10, 10),
        {0: "Annual Crop Land", 3: "Highway or Road", 9: "Sea or Lake"},
    ),
    "StanfordCars": (
        make_stanford_cars,
        3,
        (12, 3, 3),
        {0: "2000 AM General Hummer SUV", 1: "2012 Tesla Model S Sedan"},
    ),
    "OxfordFlowers": (make_oxford_flowers, 3, (6, 3, 3), {0: "pink primrose", 2: "canterbury bells"}),
    "SUN397": (make_sun397, 3, (9, 3, 3), {0: "abbey", 1: "outdoor apartment_building", 2: "shop bakery"}),
    "UCF101": (make_ucf101, 3, (9, 3, 3), {0: "Apply_Eye_Makeup", 2: "Yo_Yo"}),
    "FGVCAircraft": (make_fgvc_aircraft, 3, (9, 3, 6), {0: "707-320", 2: "Cessna 172"}),
    "ImageNet": (make_imagenet, 3, (15, 6, 6), {0: "tench", 1: "goldfish", 2: "great white shark"}),
    "ImageNetV2": (make_imagenetv2, 1000, (1000, 0, 1000), {0: "tench", 1: "goldfish", 999: "toilet paper"}),
    "ImageNetSketch": (make_imagenet_sketch, 3, (3, 0, 3), {2: "great white shark"}),
    "ImageNetA": (_make_subset("imagenet-adversarial", "imagenet-a", "ImageNetA"), 3, (3, 0, 3), {}),
    "ImageNetR": (_make_subset("imagenet-rendition", "imagenet-r", "ImageNetR"), 3, (3, 0, 3), {}),
}
SPLIT_BUILT = [
    "OxfordPets",
    "Caltech101",
    "DescribableTextures",
    "Food101",
    "EuroSAT",
    "StanfordCars",
    "OxfordFlowers",
    "SUN397",
    "UCF101",
]
SPLIT_FILES = {
    "OxfordPets": "oxford_pets/split_zhou_OxfordPets.json",
    "Caltech101": "caltech-101/split_zhou_Caltech101.json",
    "DescribableTextures": "dtd/split_zhou_DescribableTextures.json",
    "Food101": "food-101/split_zhou_Food101.json",
    "EuroSAT": "eurosat/split_zhou_EuroSAT.json",
    "StanfordCars": "stanford_cars/split_zhou_StanfordCars.json",
    "OxfordFlowers": "oxford_flowers/split_zhou_OxfordFlowers.json",
    "SUN397": "sun397/split_zhou_SUN397.json",
    "UCF101": "ucf101/split_zhou_UCF101.json",
}


def make_fake(root: Path, name: str, split: bool = True) -> Path:
    """Factory: a miniature copy of dataset `name` under `root` (real layout and annotation formats)."""
    FAKES[name][0](root, split)
    return root


def _cfg(root: Path, name: str, **opts):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.SEED = 1
    cfg.INPUT.SIZE = (8, 8)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    for k, v in opts.items():
        setattr(cfg.DATASET, k, v)
    return cfg


def _build(root: Path, name: str, **opts):
    return DATASET_REGISTRY.get(name)(_cfg(root, name, **opts))


@pytest.mark.parametrize("name", list(FAKES))
def test_loads_with_layout_names_and_sizes(tmp_path, name):
    make_fake(tmp_path, name)
    ds = _build(tmp_path, name)
    _, n_classes, (n_train, n_val, n_test), names = FAKES[name]
    assert ds.num_classes == n_classes
    assert len(ds.train_x) == n_train and len(ds.test) == n_test
    assert len(ds.val or []) == n_val
    for label, cname in names.items():
        assert ds.lab2cname[label] == cname
    labels = {d.label for d in ds.train_x}
    assert min(labels) == 0 and max(labels) == n_classes - 1
    assert all(os.path.isfile(d.impath) for d in ds.test)


def test_imagenet_subsets_map_wnids_to_clip_names(tmp_path):
    make_fake(tmp_path, "ImageNetA")
    ds = _build(tmp_path, "ImageNetA")
    names = imagenet_classnames()
    wnids = imagenet_subset_wnids("ImageNetA")[:3]
    assert ds.classnames == [names[w] for w in wnids]
    assert len(imagenet_subset_wnids("ImageNetR")) == 200 and len(names) == 1000
    assert len(set(names.values())) > 990  # CLIP's names (a handful of duplicates like "maillot")


def test_imagenet_reads_classnames_txt_when_present(tmp_path):
    make_fake(tmp_path, "ImageNet")
    txt = "\n".join(f"{w} custom {i}" for i, w in enumerate(OrderedDict.fromkeys(imagenet_classnames())))
    (tmp_path / "imagenet" / "classnames.txt").write_text(txt + "\n")
    assert _build(tmp_path, "ImageNet").classnames == ["custom 0", "custom 1", "custom 2"]


@pytest.mark.parametrize("name", SPLIT_BUILT)
def test_split_built_from_annotations_matches_conventions(tmp_path, name):
    make_fake(tmp_path, name, split=False)
    random.seed(0)
    ds = _build(tmp_path, name)
    split_path = tmp_path / SPLIT_FILES[name]
    assert split_path.is_file()  # saved in the CoOp format for the next run
    saved = json.loads(split_path.read_text())
    assert [len(saved[k]) for k in ("train", "val", "test")] == [len(ds.train_x), len(ds.val), len(ds.test)]
    assert all(isinstance(e[0], str) and not os.path.isabs(e[0]) for e in saved["train"])
    for label, cname in FAKES[name][3].items():
        assert ds.lab2cname[label] == cname
    assert ds.num_classes == FAKES[name][1]
    if name == "Caltech101":  # BACKGROUND_Google / Faces_easy skipped
        assert not any("BACKGROUND" in d.impath or "Faces_easy" in d.impath for d in ds.train_x + ds.test)
    # The saved split reads back to the same items.
    again = _build(tmp_path, name)
    assert [d.impath for d in again.test] == [d.impath for d in ds.test]


@pytest.mark.parametrize(
    ("name", "base", "new"), [("OxfordPets", 19, 18), ("EuroSAT", 5, 5), ("Caltech101", 2, 2)]
)
def test_base_new_sizes(tmp_path, name, base, new):
    make_fake(tmp_path, name)
    b = _build(tmp_path, name, SUBSAMPLE_CLASSES="base")
    n = _build(tmp_path, name, SUBSAMPLE_CLASSES="new")
    full = _build(tmp_path, name)
    assert (b.num_classes, n.num_classes) == (base, new)
    assert b.classnames + n.classnames == full.classnames
    assert {d.label for d in n.test} == set(range(new))


def _reference_fewshot(source: list[Datum], k: int) -> list[Datum]:
    groups: dict[int, list[Datum]] = {}
    for d in source:
        groups.setdefault(d.label, []).append(d)
    out = []
    for members in groups.values():
        out += random.sample(members, k) if len(members) >= k else members
    return out


def test_fewshot_determinism_cache_and_reference(tmp_path):
    make_fake(tmp_path, "OxfordPets")
    full = _build(tmp_path, "OxfordPets")
    random.seed(1)
    a = _build(tmp_path, "OxfordPets", NUM_SHOTS=2)
    random.seed(1)
    assert a.train_x == _reference_fewshot(full.train_x, 2)
    assert a.val == _reference_fewshot(full.val, 2)
    cache = tmp_path / "oxford_pets/split_fewshot/shot_2-seed_1.json"
    assert cache.is_file()
    random.seed(12345)  # the cache decides, not the random state
    assert [d.impath for d in _build(tmp_path, "OxfordPets", NUM_SHOTS=2).train_x] == [
        d.impath for d in a.train_x
    ]
    cache.unlink()
    random.seed(1)
    assert _build(tmp_path, "OxfordPets", NUM_SHOTS=2).train_x == a.train_x  # same seed, same files
    random.seed(2)
    cfg = _cfg(tmp_path, "OxfordPets", NUM_SHOTS=2)
    cfg.SEED = 2
    other = DATASET_REGISTRY.get("OxfordPets")(cfg)
    assert [d.impath for d in other.train_x] != [d.impath for d in a.train_x]
    # ImageNet: few-shot on train only; val stays the full test set
    make_fake(tmp_path, "ImageNet")
    random.seed(1)
    inet = _build(tmp_path, "ImageNet", NUM_SHOTS=2)
    assert len(inet.train_x) == 6 and inet.val == inet.test and len(inet.test) == 6


def test_missing_pieces_give_named_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="(?s)OxfordPets.*oxford_pets.*split_zhou_OxfordPets.json"):
        _build(tmp_path, "OxfordPets")
    make_fake(tmp_path, "DescribableTextures")
    for p in list((tmp_path / "dtd/images/banded").iterdir())[:2]:
        p.unlink()
    with pytest.raises(DatasetLayoutError, match=r"2 image\(s\) listed in the split are missing"):
        _build(tmp_path, "DescribableTextures")
    (tmp_path / "fgvc_aircraft").mkdir()
    (tmp_path / "fgvc_aircraft/images").mkdir()
    with pytest.raises(DatasetLayoutError, match="variants.txt"):
        _build(tmp_path, "FGVCAircraft")
    with pytest.raises(DatasetLayoutError, match="DATASET.ROOT"):
        DATASET_REGISTRY.get("EuroSAT")(_cfg(tmp_path / "nowhere", "EuroSAT"))
    make_fake(tmp_path, "Food101", split=False)
    (tmp_path / "food-101/split_zhou_Food101.json").write_text("{}")
    with pytest.raises(ValueError, match="(?s)split_zhou_Food101.json.*'train'"):
        _build(tmp_path, "Food101")


def test_data_manager_on_a_fake_dataset(tmp_path):
    make_fake(tmp_path, "EuroSAT")
    dm = DataManager(_cfg(tmp_path, "EuroSAT", NUM_SHOTS=1, SUBSAMPLE_CLASSES="new"))
    batch = next(iter(dm.test_loader))
    assert batch["img"].shape[1:] == (3, 8, 8)
    assert dm.classnames == [
        "Pasture Land",
        "Permanent Crop Land",
        "Residential Buildings",
        "River",
        "Sea or Lake",
    ]
    assert sorted(batch["label"].tolist()) == [0, 1, 2, 3, 4]
    assert len(dm.dataset.unlabeled_impaths()) == 20  # full train split of all 10 classes, labels dropped


def test_every_dataset_has_a_coop_named_yaml():
    import yaml

    repo = Path(__file__).resolve().parents[1]
    stems = {
        "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
        "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r",
    }  # fmt: skip
    names = {
        yaml.safe_load((repo / f"configs/datasets/{s}.yaml").read_text())["DATASET"]["NAME"] for s in stems
    }
    assert names == set(FAKES)
