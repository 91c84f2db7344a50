"""Core data plumbing: split files, Dassl few-shot sampling, base/new, few-shot cache, loaders, Synthetic."""

import hashlib
import json
import math
import os
import random
import threading
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from PIL import Image

import datasets  # noqa: F401  (registers Synthetic)
from caspl.config import get_cfg_default
from caspl.data import (
    DataManager,
    DatasetBase,
    Datum,
    UnlabeledDataset,
    build_transform,
    build_unlabeled_loader,
)


def _cfg(root: Path, **kw):
    cfg = get_cfg_default()
    cfg.DATASET.NAME = "Synthetic"
    cfg.DATASET.ROOT = str(root)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.SIZE = (32, 32)
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    cfg.SEED = 1
    for k, v in kw.items():
        node, key = k.split("__")
        setattr(getattr(cfg, node), key, v)
    return cfg


def _items(n_classes: int, per_class: list[int] | int, shuffle_seed: int = 0) -> list[Datum]:
    counts = per_class if isinstance(per_class, list) else [per_class] * n_classes
    items = [Datum(f"/x/c{c}/{i}.jpg", c, 0, f"class{c}") for c in range(n_classes) for i in range(counts[c])]
    random.Random(shuffle_seed).shuffle(items)  # labels interleaved: order of first appearance matters
    return items


def _reference_fewshot(source: list[Datum], k: int) -> list[Datum]:
    """Straightforward re-statement of Dassl's generate_fewshot_dataset (no repeat)."""
    groups: OrderedDict[int, list[Datum]] = OrderedDict()
    for d in source:
        groups.setdefault(d.label, []).append(d)
    out = []
    for members in groups.values():
        out += random.sample(members, k) if len(members) >= k else members
    return out


def test_datum_is_read_only():
    d = Datum("a.jpg", 3, 1, "cat")
    assert (d.impath, d.label, d.domain, d.classname) == ("a.jpg", 3, 1, "cat")
    with pytest.raises(AttributeError):
        d.label = 4


def test_split_round_trip(tmp_path):
    prefix = str(tmp_path / "images")
    train = [
        Datum(os.path.join(prefix, "a", "1.jpg"), 0, classname="a"),
        Datum(os.path.join(prefix, "b/2.jpg"), 1, classname="b"),
    ]
    val = [Datum(os.path.join(prefix, "a/3.jpg"), 0, classname="a")]
    test = [Datum(os.path.join(prefix, "b/4.jpg"), 1, classname="b")]
    path = str(tmp_path / "split.json")
    DatasetBase.save_split(train, val, test, path, prefix)
    raw = json.loads(Path(path).read_text())
    assert raw["train"][0] == ["a/1.jpg", 0, "a"]  # relative path, label, classname
    assert DatasetBase.read_split(path, prefix) == (train, val, test)


def test_bad_split_file_names_the_file(tmp_path):
    p = tmp_path / "split.json"
    p.write_text(json.dumps({"train": [], "val": []}))
    with pytest.raises(ValueError, match="split.json.*'test'"):
        DatasetBase.read_split(str(p), "")


@pytest.mark.parametrize("shots", [1, 4, 16])
def test_fewshot_matches_dassl_algorithm(shots):
    train, val = _items(7, [20, 3, 16, 5, 30, 1, 9], 1), _items(7, 6, 2)
    random.seed(5)
    ours_train = DatasetBase.generate_fewshot_dataset(train, num_shots=shots)
    ours_val = DatasetBase.generate_fewshot_dataset(val, num_shots=min(shots, 4))
    after = random.random()
    random.seed(5)
    assert ours_train == _reference_fewshot(train, shots)
    assert ours_val == _reference_fewshot(val, min(shots, 4))
    assert after == random.random()  # same number of random calls consumed
    counts = {}
    for d in ours_train:
        counts[d.label] = counts.get(d.label, 0) + 1
    assert counts == {c: min(shots, n) for c, n in enumerate([20, 3, 16, 5, 30, 1, 9])}


def test_fewshot_short_class_warns_and_keeps_all():
    with pytest.warns(UserWarning, match="fewer images"):
        out = DatasetBase.generate_fewshot_dataset(_items(2, [2, 8]), num_shots=4)
    assert sorted(d.label for d in out) == [0, 0, 1, 1, 1, 1]


def test_fewshot_multiple_sources_and_disabled():
    a, b = _items(3, 5), _items(3, 5, 1)
    assert DatasetBase.generate_fewshot_dataset(a, num_shots=-1) is a
    out_a, out_b = DatasetBase.generate_fewshot_dataset(a, b, num_shots=2)
    assert len(out_a) == len(out_b) == 6


@pytest.mark.parametrize(("n", "base"), [(7, 4), (37, 19), (10, 5)])
def test_subsample_base_new_odd_counts(n, base):
    train, test = _items(n, 2), _items(n, 1)
    b_train, b_test = DatasetBase.subsample_classes(train, test, subsample="base")
    n_train, n_test = DatasetBase.subsample_classes(train, test, subsample="new")
    assert {d.label for d in b_train} == set(range(base)) == {d.label for d in b_test}
    assert {d.label for d in n_train} == set(range(n - base))
    assert base == math.ceil(n / 2)
    # relabeled from 0 but class names follow their images
    assert all(d.classname == f"class{d.label + base}" for d in n_test)
    assert all(d.classname == f"class{d.label}" for d in b_test)
    assert DatasetBase.subsample_classes(train, subsample="all") == (train,)
    with pytest.raises(ValueError, match="all, base, new"):
        DatasetBase.subsample_classes(train, subsample="novel")


def test_dataset_base_tables():
    ds = DatasetBase(train_x=[Datum("a", 2, classname="c2"), Datum("b", 0, classname="c0")], test=[])
    assert ds.num_classes == 3
    assert ds.lab2cname == {0: "c0", 2: "c2"} and ds.classnames == ["c0", "c2"]


def test_synthetic_fewshot_cache_reuse_and_rebuild(tmp_path):
    from datasets.synthetic import Synthetic

    cfg = _cfg(tmp_path, DATASET__NUM_SHOTS=4)
    random.seed(1)
    first = Synthetic(cfg)
    cache = tmp_path / "synthetic/split_fewshot/shot_4-seed_1.json"
    assert cache.is_file()
    assert len(first.train_x) == 12 * 4 and len(first.val) == 12 * 4 and len(first.test) == 12 * 8
    # A different random state would pick other files: the cache must be what decides.
    random.seed(999)
    again = Synthetic(cfg)
    assert [d.impath for d in again.train_x] == [d.impath for d in first.train_x]
    # Same seed, no cache: the same files (determinism); another seed: different files.
    random.seed(2)  # train.py seeds python's random with SEED before building the data
    cfg2 = _cfg(tmp_path, DATASET__NUM_SHOTS=4)
    cfg2.SEED = 2
    other = Synthetic(cfg2)
    assert {d.impath for d in other.train_x} != {d.impath for d in first.train_x}
    assert (tmp_path / "synthetic/split_fewshot/shot_4-seed_2.json").is_file()
    # A cache from another split is rebuilt with a warning.
    data = json.loads(cache.read_text())
    data["train"][0][0] = "nonexistent/x.png"
    data["split_fingerprint"] = "0" * 16
    cache.write_text(json.dumps(data))
    random.seed(1)
    with pytest.warns(UserWarning, match="Rebuilding few-shot cache"):
        rebuilt = Synthetic(cfg)
    assert [d.impath for d in rebuilt.train_x] == [d.impath for d in first.train_x]
    assert json.loads(cache.read_text())["split_fingerprint"] != "0" * 16


def test_synthetic_fewshot_equals_reference_on_split(tmp_path):
    from datasets.synthetic import Synthetic

    full = Synthetic(_cfg(tmp_path))
    random.seed(3)
    cfg = _cfg(tmp_path, DATASET__NUM_SHOTS=2)
    cfg.SEED = 3
    fs = Synthetic(cfg)
    random.seed(3)
    assert fs.train_x == _reference_fewshot(full.train_x, 2)
    assert fs.val == _reference_fewshot(full.val, 2)


def test_synthetic_base_new_after_fewshot(tmp_path):
    from datasets.synthetic import CLASSNAMES, Synthetic

    base = Synthetic(_cfg(tmp_path, DATASET__NUM_SHOTS=2, DATASET__SUBSAMPLE_CLASSES="base"))
    new = Synthetic(_cfg(tmp_path, DATASET__NUM_SHOTS=2, DATASET__SUBSAMPLE_CLASSES="new"))
    assert base.classnames == list(CLASSNAMES[:6]) and new.classnames == list(CLASSNAMES[6:])
    assert len(base.train_x) == 12 and len(new.test) == 6 * 8
    assert {d.label for d in new.val} == set(range(6))
    # The unlabeled pool is every class's full train set, whatever the subsample/shots.
    assert len(new.unlabeled_impaths()) == 12 * 16
    with pytest.raises(ValueError, match="all, base, new"):
        Synthetic(_cfg(tmp_path, DATASET__SUBSAMPLE_CLASSES="novel"))


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def test_synthetic_is_deterministic_and_well_formed(tmp_path):
    from datasets.synthetic import Synthetic

    a = Synthetic(_cfg(tmp_path / "a"))
    Synthetic(_cfg(tmp_path / "b"))
    assert _tree_digest(tmp_path / "a/synthetic") == _tree_digest(tmp_path / "b/synthetic")
    assert len(a.classnames) >= 10 and all(c.isalpha() for c in a.classnames)
    split = json.loads((tmp_path / "a/synthetic/split_synthetic.json").read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [192, 48, 96]
    assert not list(tmp_path.glob("a/.synthetic-tmp-*"))  # temp dir renamed away
    img = Image.open(a.train_x[0].impath)
    assert img.size == (32, 32) and img.mode == "RGB"


def test_synthetic_two_generators_at_once(tmp_path):
    from datasets.synthetic import generate_synthetic

    target = str(tmp_path / "synthetic")
    barrier = threading.Barrier(3)
    errors = []

    def _go():
        barrier.wait()
        try:
            generate_synthetic(target)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=_go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(json.loads((tmp_path / "synthetic/split_synthetic.json").read_text())["test"]) == 96
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]  # losers' temp dirs removed


def test_loader_batch_format_and_drop_last(tmp_path):
    cfg = _cfg(tmp_path, DATASET__NUM_SHOTS=1)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 5
    cfg.DATALOADER.TEST.BATCH_SIZE = 7
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    dm = DataManager(cfg)
    batch = next(iter(dm.train_loader_x))
    assert batch["img"].shape == (5, 3, 32, 32) and batch["img"].dtype == torch.float32
    assert batch["label"].dtype == torch.long and batch["index"].dtype == torch.long
    assert isinstance(batch["impath"], list) and len(batch["impath"]) == 5
    assert dm.train_loader_x.drop_last and not dm.test_loader.drop_last
    assert sum(len(b["label"]) for b in dm.train_loader_x) == 10  # 12 items, batch 5, last dropped
    assert sum(len(b["label"]) for b in dm.test_loader) == 96
    labels = torch.cat([b["label"] for b in dm.test_loader])
    assert labels.tolist() == [d.label for d in dm.dataset.test]  # sequential test order
    assert dm.num_classes == 12 and dm.classnames[0] == "apple" and dm.val_loader is not None
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 64  # more than the 12 train items: keep the partial batch
    assert not DataManager(cfg).train_loader_x.drop_last


def test_summary_table_printed(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    cfg.VERBOSE = True
    DataManager(cfg)
    out = capsys.readouterr().out
    assert "# classes" in out and "192" in out and "# test" in out


def test_unlabeled_items_carry_no_label(tmp_path):
    cfg = _cfg(tmp_path)
    dm = DataManager(cfg)
    extra = tmp_path / "extra/nested"
    extra.mkdir(parents=True)
    for name in ("z.png", "a.webp", "note.txt"):
        (extra / name).write_bytes(b"")
    Image.new("RGB", (8, 8)).save(extra / "z.png")
    Image.new("RGB", (8, 8)).save(extra / "a.webp")
    paths = dm.dataset.unlabeled_impaths(str(tmp_path / "extra"))
    assert len(paths) == 192 + 2 and paths[-2:] == [str(extra / "a.webp"), str(extra / "z.png")]
    item = UnlabeledDataset(paths, build_transform(cfg, is_train=False))[len(paths) - 1]
    assert set(item) == {"img", "impath", "index"}
    batch = next(iter(build_unlabeled_loader(cfg, paths, build_transform(cfg, True), 16)))
    assert "label" not in batch and batch["img"].shape == (16, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="UNLABELED_DIR"):
        dm.dataset.unlabeled_impaths(str(tmp_path / "nope"))


def test_corrupt_image_names_the_file(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:40])  # truncated
    ds = UnlabeledDataset([str(good), str(bad)])
    assert ds[0]["img"].shape == (3, 32, 32)
    with pytest.raises(OSError, match="bad.png"):
        ds[1]


def test_transforms_vocabulary(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.INPUT.SIZE = (24, 24)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = ("random_translation", "random_flip", "center_crop", "normalize")
    img = Image.new("RGB", (40, 30), (255, 0, 0))
    x = build_transform(cfg, is_train=True)(img)
    assert x.shape == (3, 24, 24)
    expected_red = (1.0 - cfg.INPUT.PIXEL_MEAN[0]) / cfg.INPUT.PIXEL_STD[0]
    assert torch.allclose(x[0], torch.full((24, 24), expected_red), atol=1e-4)
    test_x = build_transform(cfg, is_train=False)(Image.new("RGB", (60, 30)))
    assert test_x.shape == (3, 24, 24)
    cfg.INPUT.TRANSFORMS = ("random_flip",)  # no normalize: raw [0, 1] pixels
    assert build_transform(cfg, is_train=False)(img).max() == 1.0
    cfg.INPUT.TRANSFORMS = ("imagenet_policy_x",)
    with pytest.raises(ValueError, match="imagenet_policy_x"):
        build_transform(cfg, is_train=True)
    cfg.INPUT.TRANSFORMS = ()
    cfg.INPUT.INTERPOLATION = "lanczos"
    with pytest.raises(ValueError, match="bilinear"):
        build_transform(cfg, is_train=False)
