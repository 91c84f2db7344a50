"""Reliability of data reads (issue 11): split / annotation files are checked, errors name file and entry."""

import json
from pathlib import Path

import pytest

import datasets  # noqa: F401  (registers the datasets)
from caspl.data import DatasetBase, Datum
from caspl.data.checks import SplitError
from caspl.data.coop import imagenet_classnames
from tests.test_datasets_wrappers import WNIDS, _build, make_fake


# ---------------------------------------------------------------- item 5: split files
def _split(path: Path, train, val=None, test=None) -> Path:
    """A CoOp split JSON of (relative_path, label, classname) rows."""
    path.write_text(json.dumps({"train": train, "val": val or [], "test": test or []}))
    return path


def _rows(labels_names: list[tuple[int, str]], prefix: str = "") -> list[list]:
    return [[f"{prefix}{name}/{i}.jpg", label, name] for i, (label, name) in enumerate(labels_names)]


FOUR = [(0, "cat"), (1, "dog"), (2, "bicycle"), (3, "apple")]


def test_train_label_beyond_the_classes_is_refused(tmp_path):
    """A train label of 7 in a 4-class split made 3 base classes out of 2."""
    f = _split(tmp_path / "s.json", _rows(FOUR + [(7, "kite")]), test=_rows(FOUR))
    with pytest.raises(SplitError) as e:
        DatasetBase.read_split(str(f), str(tmp_path))
    msg = str(e.value)
    assert str(f) in msg and "train entry 4" in msg and "label 7" in msg and "4, 5, 6" in msg


@pytest.mark.parametrize("bad", [99, 4, -1])
def test_test_label_outside_the_classes_is_refused(tmp_path, bad):
    """A test label of 99 or -1 silently dropped an image."""
    f = _split(
        tmp_path / "s.json", _rows(FOUR), val=_rows(FOUR), test=_rows(FOUR) + [["x/9.jpg", bad, "cat"]]
    )
    with pytest.raises(SplitError) as e:
        DatasetBase.read_split(str(f), str(tmp_path))
    assert str(f) in str(e.value) and "test entry 4" in str(e.value) and str(bad) in str(e.value)


def test_two_names_for_one_label_are_refused(tmp_path):
    """One mismatched class name gave ['dog', 'bicycle', 'cat', 'dog']."""
    f = _split(
        tmp_path / "s.json", _rows(FOUR), test=_rows([(0, "cat"), (1, "dog"), (2, "bicycle"), (3, "dog")])
    )
    with pytest.raises(SplitError) as e:
        DatasetBase.read_split(str(f), str(tmp_path))
    msg = str(e.value)
    assert "test entry 3" in msg and "'dog' differs from 'apple'" in msg and "one class name per label" in msg


def test_one_name_for_two_labels_is_refused(tmp_path):
    f = _split(tmp_path / "s.json", _rows([(0, "cat"), (1, "dog"), (2, "cat")]))
    with pytest.raises(SplitError, match="class name 'cat' is given to label 2 and to label 0"):
        DatasetBase.read_split(str(f), str(tmp_path))


@pytest.mark.parametrize(
    "entry", [["a.jpg", "1", "dog"], ["a.jpg", 1.5, "dog"], ["a.jpg", True, "dog"], ["a.jpg", 1]]
)
def test_malformed_entry_names_the_file_and_entry(tmp_path, entry):
    f = _split(tmp_path / "s.json", _rows(FOUR) + [entry])
    with pytest.raises(SplitError) as e:
        DatasetBase.read_split(str(f), str(tmp_path))
    assert str(f) in str(e.value) and "train entry 4" in str(e.value)


def test_a_consistent_split_reads_as_before(tmp_path):
    f = _split(tmp_path / "s.json", _rows(FOUR), val=_rows(FOUR[:2]), test=_rows(FOUR[::-1]))
    train, val, test = DatasetBase.read_split(str(f), str(tmp_path))
    assert [d.label for d in train] == [0, 1, 2, 3] and len(val) == 2 and test[0].classname == "apple"


def test_a_bad_split_file_stops_the_dataset_wrapper(tmp_path):
    make_fake(tmp_path, "DescribableTextures")
    path = tmp_path / "dtd/split_zhou_DescribableTextures.json"
    split = json.loads(path.read_text())
    split["test"][1][1] = 7
    path.write_text(json.dumps(split))
    with pytest.raises(SplitError, match="test entry 1"):
        _build(tmp_path, "DescribableTextures")


def test_subsample_refuses_labels_the_train_list_lacks():
    train = [Datum(f"/x/{i}.jpg", i, classname=f"c{i}") for i in range(4)]
    test = [Datum("/x/t.jpg", 5, classname="c5")]
    with pytest.raises(SplitError, match="DATASET.SUBSAMPLE_CLASSES new: test entry 0"):
        DatasetBase.subsample_classes(train, test, subsample="new", names=("train", "test"))
    gap = [d for d in train if d.label != 1]
    with pytest.raises(SplitError, match=r"label\(s\) 1 without any train image"):
        DatasetBase.subsample_classes(gap, subsample="base", names=("train",))


# ---------------------------------------------------------------- item 5: annotation files
def test_fgvc_repeated_variant_and_unknown_variant(tmp_path):
    make_fake(tmp_path, "FGVCAircraft")
    d = tmp_path / "fgvc_aircraft"
    variants = (d / "variants.txt").read_text()
    (d / "variants.txt").write_text(variants + "707-320\n")
    with pytest.raises(SplitError, match=r"variants.txt, line 4: class '707-320' repeats line 1"):
        _build(tmp_path, "FGVCAircraft")
    (d / "variants.txt").write_text(variants)
    (d / "images_variant_test.txt").write_text((d / "images_variant_test.txt").read_text() + "1000001 B-52\n")
    with pytest.raises(
        SplitError, match=r"images_variant_test.txt, line 7: class 'B-52' is not in variants.txt"
    ):
        _build(tmp_path, "FGVCAircraft")


def test_sun397_repeated_class_and_ucf101_repeated_action(tmp_path):
    make_fake(tmp_path, "SUN397", split=False)
    names = tmp_path / "sun397/ClassName.txt"
    first = names.read_text().splitlines()[0]
    names.write_text(names.read_text() + first + "\n")
    with pytest.raises(SplitError, match=r"ClassName.txt, line \d+: class .* repeats line 1"):
        _build(tmp_path, "SUN397")
    make_fake(tmp_path, "UCF101", split=False)
    ind = tmp_path / "ucf101/ucfTrainTestlist/classInd.txt"
    ind.write_text(ind.read_text() + "4 YoYo\n")
    with pytest.raises(SplitError, match=r"classInd.txt, line 4: '4 YoYo' repeats an action"):
        _build(tmp_path, "UCF101")


def test_pets_annotations_with_two_breeds_under_one_label(tmp_path):
    make_fake(tmp_path, "OxfordPets", split=False)
    test_txt = tmp_path / "oxford_pets/annotations/test.txt"
    lines = test_txt.read_text().splitlines()
    lines[1] = lines[1].replace(" 2 ", " 1 ", 1)  # american_bulldog_5 filed under label 1 (abyssinian)
    test_txt.write_text("\n".join(lines) + "\n")
    with pytest.raises(SplitError) as e:
        _build(tmp_path, "OxfordPets")
    assert "annotations under" in str(e.value) and "one class name per label" in str(e.value)
    assert not (tmp_path / "oxford_pets/split_zhou_OxfordPets.json").exists()  # nothing saved


# ---------------------------------------------------------------- item 5: ImageNet class lists
def test_imagenet_classnames_repeated_wnid_or_name(tmp_path):
    f = tmp_path / "classnames.txt"
    f.write_text("n01440764 tench\nn01443537 goldfish\nn01440764 tench fish\n")
    with pytest.raises(SplitError, match=r"classnames.txt, line 3: wnid n01440764 repeats line 1"):
        imagenet_classnames(str(tmp_path))
    f.write_text("n01440764 tench\nn01443537 tench\n")
    with pytest.raises(
        SplitError, match=r"line 2: class name 'tench' of n01443537 is also the name of n01440764"
    ):
        imagenet_classnames(str(tmp_path))
    f.write_text("n01440764 tench\nn01443537\n")
    with pytest.raises(SplitError, match="line 2: 'n01443537' has no class name"):
        imagenet_classnames(str(tmp_path))


def test_the_published_clip_duplicates_stay_allowed(tmp_path):
    bundled = imagenet_classnames()
    assert len(bundled) == 1000 and len(set(bundled.values())) == 998  # 'missile' and 'sunglasses' twice
    (tmp_path / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in bundled.items()))
    assert imagenet_classnames(str(tmp_path)) == bundled
    # the same name on other wnids is not the published pair
    (tmp_path / "classnames.txt").write_text("n03773504 missile\nn01440764 missile\n")
    with pytest.raises(SplitError, match="'missile' of n01440764"):
        imagenet_classnames(str(tmp_path))


def test_imagenet_val_folder_missing_would_shift_labels(tmp_path):
    make_fake(tmp_path, "ImageNet")
    val = tmp_path / "imagenet/images/val"
    for f in (val / WNIDS[1]).iterdir():
        f.unlink()
    (val / WNIDS[1]).rmdir()
    with pytest.raises(SplitError, match="one class name per label"):
        _build(tmp_path, "ImageNet")


def test_prepare_data_reports_a_bad_split_and_a_bad_classnames_file(tmp_path):
    from tools import prepare_data

    make_fake(tmp_path, "DescribableTextures")
    path = tmp_path / "dtd/split_zhou_DescribableTextures.json"
    split = json.loads(path.read_text())
    split["train"][0][2] = "bubbly"
    path.write_text(json.dumps(split))
    report = prepare_data.check_dataset(str(tmp_path), "DescribableTextures")
    assert report.status == "incomplete" and "train entry" in " ".join(report.notes)
    make_fake(tmp_path, "ImageNet")
    (tmp_path / "imagenet/classnames.txt").write_text("n01440764 tench\nn01440764 tench\n")
    report = prepare_data.check_dataset(str(tmp_path), "ImageNet")
    assert report.status == "incomplete" and "wnid n01440764 repeats line 1" in " ".join(report.notes)


# ---------------------------------------------------------------- item 14: archive extraction
def _tar(path: Path, entries: list[tuple[str, str, object]]) -> Path:
    """A tar of (name, kind, payload) in order: kind 'file' (bytes), 'dir', 'sym' / 'hard' (link target)."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = payload
            tar.addfile(info)
    return path


# The chain of the issue: each link looks harmless on its own (normpath of 'a/..' is '.'), but on disk
# a2 -> a/.. is the extraction folder's parent and a3 -> a2/.. its grandparent.
CHAIN = [
    ("b", "dir", None),
    ("a", "sym", "b/.."),
    ("a2", "sym", "a/.."),
    ("a3", "sym", "a2/.."),
    ("a3/victim/file", "file", b"pwned"),
]


@pytest.mark.parametrize("interpreter_filter", [True, False])
def test_symlink_chain_is_refused_as_unsafe_with_or_without_data_filter(
    tmp_path, monkeypatch, interpreter_filter
):
    import tarfile

    from tools import archives

    if not interpreter_filter:  # Python 3.10.0-3.10.11 / 3.11.0-3.11.3
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    box = tmp_path / "box" / "inner"  # the victim folder would be tmp_path/box/victim or tmp_path/victim
    root, store = box / "data", box / "data" / "archives" / "dtd"
    store.mkdir(parents=True)
    _tar(store / "dtd.tar", [("dtd/images/a/a.jpg", "file", b"x"), *CHAIN])
    entry = archives.Archive(("http://127.0.0.1:9/unused",), "dtd.tar", (("dtd", "dtd"),))
    with pytest.raises(archives.ArchiveError) as err:
        archives.install(entry, str(root), str(store))
    msg = str(err.value)
    assert err.value.status == "bad archive" and "unsafe member" in msg and "corrupt" not in msg
    assert "a2" in msg or "a3" in msg
    assert not list(tmp_path.rglob("victim")) and not (root / "dtd").exists()
    assert not list(root.glob(".extract-*"))


def test_extract_tar_refuses_each_escape(tmp_path):
    from tools import archives

    cases = {
        "abs-link": [("l", "sym", "/etc")],
        "up-link": [("d", "dir", None), ("d/l", "sym", "../..")],
        "through-link": [("d", "dir", None), ("l", "sym", "d"), ("l", "file", b"x")],
        "hard-out": [("h", "hard", "../outside.txt")],
        "hard-missing": [("h", "hard", "nothing")],
        "replace": [("f", "file", b"1"), ("f", "file", b"2")],
        "dotdot": [("x/../../up.txt", "file", b"x")],
        "absolute": [("/tmp/abs-escape-caspl.txt", "file", b"x")],
    }
    (tmp_path / "outside.txt").write_text("secret")
    for case, entries in cases.items():
        dest = tmp_path / case
        dest.mkdir()
        with pytest.raises(archives.ArchiveError, match="unsafe member") as e:
            archives.extract(str(_tar(tmp_path / f"{case}.tar", entries)), str(dest), "x.tar")
        assert "corrupt" not in str(e.value), case
    assert not Path("/tmp/abs-escape-caspl.txt").exists() and not (tmp_path / "up.txt").exists()


def test_extract_tar_keeps_links_that_stay_inside(tmp_path):
    from tools import archives

    entries = [
        ("top/images/a.jpg", "file", b"jpeg"),
        ("top/alias", "sym", "images"),
        ("top/alias/b.jpg", "file", b"second"),  # written through an inside link into images/
        ("top/copy.jpg", "hard", "top/images/a.jpg"),
    ]
    dest = tmp_path / "out"
    dest.mkdir()
    archives.extract(str(_tar(tmp_path / "ok.tar", entries)), str(dest), "ok.tar")
    assert (dest / "top/images/b.jpg").read_bytes() == b"second"
    assert (dest / "top/copy.jpg").read_bytes() == b"jpeg" and (dest / "top/alias").is_symlink()


@pytest.mark.parametrize(
    "member",
    ["../escape.txt", "ok/../../escape.txt", "/tmp/abs-escape-caspl.txt", "C:/x.txt", "..\\escape.txt"],
)
def test_zip_members_escaping_are_refused_as_unsafe(tmp_path, member):
    import zipfile

    from tools import archives

    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ok/a.jpg", b"x")
        z.writestr(member, b"x")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(archives.ArchiveError, match=r"unsafe member .*absolute or '\.\.'"):
        archives.extract(str(path), str(dest), "a.zip")
    assert list(dest.iterdir()) == []  # refused before anything is written
    assert not list(tmp_path.rglob("escape.txt")) and not Path("/tmp/abs-escape-caspl.txt").exists()


# ---------------------------------------------------------------- item 17: the umask is respected
@pytest.fixture(params=[0o002, 0o077])
def umask(request):
    import os

    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_synthetic_folder_split_and_fewshot_cache_follow_the_umask(tmp_path, umask):
    data = _build(tmp_path, "Synthetic", NUM_SHOTS=2)
    folder = tmp_path / "synthetic"
    assert len(data.train_x) == 24
    assert _mode(folder) == 0o777 & ~umask and _mode(folder / "images") == 0o777 & ~umask
    assert _mode(folder / "split_synthetic.json") == 0o666 & ~umask
    cache = folder / "split_fewshot/shot_2-seed_1.json"
    assert _mode(cache) == 0o666 & ~umask and _mode(cache.parent) == 0o777 & ~umask


def test_downloads_follow_the_umask(tmp_path, umask):
    from tools import archives, prepare_data

    def _download(_id: str, out: str) -> None:
        Path(out).write_bytes(b'{"train": [], "val": [], "test": []}')

    target = tmp_path / "split.json"
    assert prepare_data.fetch_new_file("id", str(target), _download) == "downloaded"
    assert _mode(target) == 0o666 & ~umask
    entry = archives.Archive(("gdrive:abc",), "notes.txt", (("notes.txt", "misc/notes.txt"),))
    root, store = tmp_path / "data", tmp_path / "data/archives/misc"
    root.mkdir()
    archives.install(entry, str(root), str(store), gdrive=_download, keep=True)
    assert _mode(store / "notes.txt") == 0o666 & ~umask and _mode(root / "misc/notes.txt") == 0o666 & ~umask
