"""tools/prepare_data.py: the status table on a complete, a partial and an absent dataset; archives fetched
from a local HTTP server on 127.0.0.1 (no network)."""

import dataclasses
import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from caspl.registry import DATASET_REGISTRY
from tests.test_datasets_wrappers import make_fake
from tools import archives, prepare_data


def _fake_downloader(calls: list):
    def _download(file_id: str, output: str) -> None:
        calls.append((file_id, output))
        with open(output, "w") as f:
            json.dump({"train": [], "val": [], "test": []}, f)

    return _download


def test_report_complete_partial_absent(tmp_path, capsys):
    make_fake(tmp_path, "EuroSAT")  # complete
    make_fake(tmp_path, "DescribableTextures")  # partial: two images gone
    for p in sorted((tmp_path / "dtd/images/bubbly").iterdir())[:2]:
        p.unlink()
    rc = prepare_data.main(
        [
            "--root",
            str(tmp_path),
            "--dataset",
            "eurosat",
            "--dataset",
            "dtd",
            "--dataset",
            "OxfordPets",
            "--no-download",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line and line.split()[0] in prepare_data.DATASETS
    }
    assert "ready" in rows["EuroSAT"] and "40 / 40" in rows["EuroSAT"]
    assert "incomplete" in rows["DescribableTextures"] and "10 / 12" in rows["DescribableTextures"]
    assert "2 listed image(s) missing" in out and "bubbly" in out
    assert "missing" in rows["OxfordPets"] and str(tmp_path / "oxford_pets") in out
    assert "robots.ox.ac.uk" in out  # where to get it


def test_all_ready_exit_zero_and_check_functions(tmp_path):
    for name in ("ImageNetSketch", "FGVCAircraft"):
        make_fake(tmp_path, name)
    assert prepare_data.check_dataset(str(tmp_path), "FGVCAircraft").status == "ready"
    sketch = prepare_data.check_dataset(str(tmp_path), "ImageNetSketch")
    assert sketch.status == "incomplete" and "997 of 1000 class folders missing" in "\n".join(sketch.notes)
    assert prepare_data.main(["--root", str(tmp_path), "--dataset", "FGVCAircraft"], downloader=None) == 0


def test_split_file_downloaded_once_and_never_overwritten(tmp_path):
    make_fake(tmp_path, "Food101", split=False)
    calls: list = []
    rep = prepare_data.check_dataset(str(tmp_path), "Food101", _fake_downloader(calls))
    split = tmp_path / "food-101/split_zhou_Food101.json"
    assert [c[0] for c in calls] == ["1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"] and split.is_file()
    assert "downloaded split_zhou_Food101.json" in rep.notes
    split.write_text('{"train": [], "val": [], "test": [], "mine": 1}')
    prepare_data.check_dataset(str(tmp_path), "Food101", _fake_downloader(calls))
    assert len(calls) == 1 and "mine" in split.read_text()  # existing file left alone
    assert not list(split.parent.glob(".download-*"))


def test_failed_download_is_reported_not_raised(tmp_path):
    make_fake(tmp_path, "UCF101", split=False)

    def _fail(file_id: str, output: str) -> None:
        raise RuntimeError("no network")

    rep = prepare_data.check_dataset(str(tmp_path), "UCF101", _fail)
    assert rep.status == "incomplete"
    assert any("no network" in n for n in rep.notes) and any("split file missing" in n for n in rep.notes)
    assert not (tmp_path / "ucf101/split_zhou_UCF101.json").exists()


def test_unknown_dataset_name():
    with pytest.raises(SystemExit, match="unknown dataset"):
        prepare_data.resolve_names(["cifar10"])
    assert prepare_data.resolve_names(["oxford_pets.yaml", "IMAGENET"]) == ["OxfordPets", "ImageNet"]
    assert len(prepare_data.resolve_names(None)) == 15


# ---------------------------------------------------------------- --download-archives, against a local server


@dataclasses.dataclass
class Server:
    url: str  # ends with "/"
    folder: Path  # what it serves
    requests: list[str]  # paths asked for, in order


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 serving tmp_path/served, logging every GET."""
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    for var in ("no_proxy", "NO_PROXY"):  # a proxy in the environment must not take local requests
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}/", folder, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _tree(folder: Path, prefix: str) -> dict[str, bytes]:
    """Every file under `folder` as {prefix/relative path: bytes} (an archive's members)."""
    return {
        f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file()
    }


def _write_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)


def _write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _upstream(tmp_path: Path, name: str) -> Path:
    """A miniature copy of `name` (the wrappers' fixture), from which the 'published' archives are packed."""
    up = tmp_path / "upstream" / name
    up.mkdir(parents=True)
    make_fake(up, name)
    return up


def _n_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*.jpg"))


# Each builder packs the miniature copy the way the real archive is laid out (DATASETS.md / table comments).
def _dtd(up: Path, served: Path) -> None:
    members = _tree(up / "dtd/images", "dtd/images")
    members |= {"dtd/labels/labels_joint_anno.txt": b"from the archive", "dtd/imdb/imdb.mat": b"mat"}
    _write_tar(served / "dtd-r1.0.1.tar.gz", members)


def _eurosat(up: Path, served: Path) -> None:
    _write_zip(served / "EuroSAT_RGB.zip", _tree(up / "eurosat/2750", "EuroSAT_RGB"))


def _fgvc(up: Path, served: Path) -> None:
    members = _tree(up / "fgvc_aircraft", "fgvc-aircraft-2013b/data") | {
        "fgvc-aircraft-2013b/README.md": b"r"
    }
    _write_tar(served / "fgvc-aircraft-2013b.tar.gz", members)


def _caltech(up: Path, served: Path) -> None:
    inner = served / "101_ObjectCategories.tar.gz"
    _write_tar(inner, _tree(up / "caltech-101/101_ObjectCategories", "101_ObjectCategories"))
    _write_zip(served / "caltech-101.zip", {"caltech-101/101_ObjectCategories.tar.gz": inner.read_bytes()})
    inner.unlink()


def _ucf(up: Path, served: Path) -> None:
    _write_zip(served / "UCF-101-midframes.zip", _tree(up / "ucf101/UCF-101-midframes", "UCF-101-midframes"))


BUILDERS = {
    "DescribableTextures": (_dtd, "dtd/images"),
    "EuroSAT": (_eurosat, "eurosat/2750"),
    "FGVCAircraft": (_fgvc, "fgvc_aircraft/images"),
    "Caltech101": (_caltech, "caltech-101/101_ObjectCategories"),
    "UCF101": (_ucf, "ucf101/UCF-101-midframes"),
}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _publish(tmp_path, server, monkeypatch, names, urls=None) -> dict[str, Path]:
    """Build each dataset's archives into the server folder and point the real table entries at them (same
    file names, moves and renames; md5 replaced by the fake's when the entry has one). Returns the upstream
    copies."""
    ups = {}
    for name in names:
        ups[name] = _upstream(tmp_path, name)
        BUILDERS[name][0](ups[name], server.folder)
        entries = []
        for a in prepare_data.ARCHIVES[name]:
            served = server.folder / a.filename
            gdrive = a.urls[0].startswith(archives.GDRIVE)
            new_urls = a.urls if gdrive else (urls or (server.url + a.filename,))
            md5 = _md5(served) if a.md5 and served.is_file() else ""
            entries.append(dataclasses.replace(a, urls=new_urls, md5=md5))
        monkeypatch.setitem(prepare_data.ARCHIVES, name, tuple(entries))
    return ups


def _drive(tmp_path: Path, server: Server, calls: list | None = None):
    """A fake gdown: split files from the upstream copies; Drive-hosted archives from the server folder."""
    by_id = {}
    for name in BUILDERS:
        cls = DATASET_REGISTRY.get(name)
        if getattr(cls, "split_gdrive_id", ""):
            by_id[cls.split_gdrive_id] = tmp_path / "upstream" / name / cls.folder / cls.split_file
        for a in prepare_data.ARCHIVES[name]:
            for u in a.urls:
                if u.startswith(archives.GDRIVE):
                    by_id[u[len(archives.GDRIVE) :]] = server.folder / a.filename

    def _download(file_id: str, output: str) -> None:
        if calls is not None:
            calls.append(file_id)
        if not by_id.get(file_id, Path("/nonexistent")).is_file():
            raise RuntimeError(f"no such Drive file {file_id}")
        shutil.copyfile(by_id[file_id], output)

    return _download


def _rows(out: str) -> dict[str, str]:
    return {
        line.split()[0]: line
        for line in out.splitlines()
        if line and line.split()[0] in prepare_data.DATASETS
    }


def _leftovers(root: Path) -> list[Path]:
    """Temp files/folders (ours start with '.') and archive files left under the root."""
    hidden = list(root.rglob(".*"))
    kept = [p for p in (root / prepare_data.ARCHIVE_DIR).rglob("*") if p.is_file()]
    return hidden + kept


def _argv(root: Path, names: list[str], *flags: str) -> list[str]:
    argv = ["--root", str(root)]
    for n in names:
        argv += ["--dataset", n]
    return argv + list(flags)


def test_archives_installed_in_the_wrappers_layout_and_not_fetched_again(
    tmp_path, server, monkeypatch, capsys
):
    names = ["DescribableTextures", "EuroSAT", "FGVCAircraft"]
    ups = _publish(tmp_path, server, monkeypatch, names)
    root = tmp_path / "data"  # absent: --download-archives creates it
    drive = _drive(tmp_path, server)
    assert prepare_data.main(_argv(root, names, "--download-archives"), downloader=drive) == 0
    out = capsys.readouterr().out
    for name in names:
        rep = prepare_data.check_dataset(str(root), name)
        n = _n_images(ups[name] / BUILDERS[name][1])
        assert (rep.status, rep.found, rep.expected) == ("ready", n, n), name
        assert "installed" in _rows(out)[name]
    # the renames: EuroSAT_RGB -> eurosat/2750, fgvc-aircraft-2013b/data -> fgvc_aircraft
    assert not (root / "EuroSAT_RGB").exists() and not (root / "fgvc-aircraft-2013b").exists()
    assert (root / "fgvc_aircraft/variants.txt").is_file() and (root / "dtd/labels").is_dir()
    assert sorted(server.requests) == sorted(
        f"/{a.filename}" for n in names for a in prepare_data.ARCHIVES[n]
    )
    assert _leftovers(root) == []  # archives deleted, no temp folder

    before = list(server.requests)
    assert prepare_data.main(_argv(root, names, "--download-archives"), downloader=drive) == 0
    assert server.requests == before and "installed" not in capsys.readouterr().out


def test_kept_archive_is_reused_without_a_download(tmp_path, server, monkeypatch):
    _publish(tmp_path, server, monkeypatch, ["EuroSAT"])
    root = tmp_path / "data"
    drive = _drive(tmp_path, server)
    prepare_data.main(_argv(root, ["eurosat"], "--download-archives", "--keep-archives"), downloader=drive)
    kept = root / prepare_data.ARCHIVE_DIR / "eurosat" / "EuroSAT_RGB.zip"
    assert kept.is_file() and len(server.requests) == 1
    shutil.rmtree(root / "eurosat/2750")
    assert prepare_data.main(_argv(root, ["eurosat"], "--download-archives"), downloader=drive) == 0
    assert len(server.requests) == 1  # extracted again from the kept file
    assert (root / "eurosat/2750").is_dir() and not kept.exists()  # no --keep-archives this time


def test_existing_data_is_never_overwritten(tmp_path, server, monkeypatch):
    _publish(tmp_path, server, monkeypatch, ["DescribableTextures", "EuroSAT"])
    root = tmp_path / "data"
    mine = root / "dtd/labels/labels_joint_anno.txt"  # also in the archive, with other content
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    sentinel = root / "eurosat/2750/sentinel.txt"  # EuroSAT's image folder exists: nothing to fetch
    sentinel.parent.mkdir(parents=True)
    sentinel.write_text("mine too")
    rc = prepare_data.main(
        _argv(root, ["dtd", "eurosat"], "--download-archives"), downloader=_drive(tmp_path, server)
    )
    assert rc == 1  # EuroSAT's folder has only the sentinel
    assert mine.read_text() == "mine" and sentinel.read_text() == "mine too"
    assert (root / "dtd/imdb/imdb.mat").is_file() and (root / "dtd/images").is_dir()  # the rest merged in
    assert server.requests == ["/dtd-r1.0.1.tar.gz"]
    notes, _ = prepare_data.fetch_archives(str(root), "DescribableTextures", None)
    assert notes == []  # installed now: nothing fetched, nothing said


def test_second_url_is_tried_when_the_first_fails(tmp_path, server, monkeypatch):
    urls = (server.url + "moved/EuroSAT_RGB.zip", server.url + "EuroSAT_RGB.zip")
    _publish(tmp_path, server, monkeypatch, ["EuroSAT"], urls=urls)
    notes, failure = prepare_data.fetch_archives(str(tmp_path / "data"), "EuroSAT", None)
    assert failure == "" and server.requests == ["/moved/EuroSAT_RGB.zip", "/EuroSAT_RGB.zip"]
    assert notes[0].startswith(f"installed EuroSAT_RGB.zip from {urls[1]}")


def test_404_is_reported_with_the_url_and_leaves_nothing(tmp_path, server, monkeypatch, capsys):
    url = server.url + "gone/dtd-r1.0.1.tar.gz"
    _publish(tmp_path, server, monkeypatch, ["DescribableTextures"], urls=(url,))
    root = tmp_path / "data"
    rc = prepare_data.main(_argv(root, ["dtd"], "--download-archives"), downloader=_drive(tmp_path, server))
    out = capsys.readouterr().out
    assert rc == 1 and "download failed" in _rows(out)["DescribableTextures"]
    assert url in out and "404" in out and "the URL may have moved" in out
    by_hand = root / prepare_data.ARCHIVE_DIR / "dtd" / "dtd-r1.0.1.tar.gz"
    assert str(by_hand) in out  # where to put a copy fetched by hand
    assert not (root / "dtd").exists() and _leftovers(root) == []
    assert not (root / prepare_data.ARCHIVE_DIR).exists()  # nor an empty archives/dtd/
    assert prepare_data.RERUN_HINT not in out  # it was just tried


def _truncated(served: Path) -> None:
    data = (served / "dtd-r1.0.1.tar.gz").read_bytes()
    (served / "dtd-r1.0.1.tar.gz").write_bytes(data[: len(data) // 2])


def _garbage(served: Path) -> None:
    (served / "dtd-r1.0.1.tar.gz").write_bytes(b"<html>moved</html>" * 50)


def _traversal(served: Path) -> None:
    _write_tar(served / "dtd-r1.0.1.tar.gz", {"dtd/images/a/a.jpg": b"x", "../escape.txt": b"x"})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncated, "corrupt or truncated"),
        (_garbage, "corrupt or truncated"),
        (_traversal, "refused unsafe"),
    ],
)
def test_bad_archive_is_reported_and_leaves_no_partial_folder(
    tmp_path, server, monkeypatch, capsys, damage, message
):
    _publish(tmp_path, server, monkeypatch, ["DescribableTextures"])
    damage(server.folder)  # after publishing: the table's md5 is the good file's, so it is dropped here
    entry = dataclasses.replace(prepare_data.ARCHIVES["DescribableTextures"][0], md5="")
    monkeypatch.setitem(prepare_data.ARCHIVES, "DescribableTextures", (entry,))
    root = tmp_path / "data"
    rc = prepare_data.main(_argv(root, ["dtd"], "--download-archives"), downloader=_drive(tmp_path, server))
    out = capsys.readouterr().out
    assert rc == 1 and "bad archive" in _rows(out)["DescribableTextures"]
    assert message in out and server.url + "dtd-r1.0.1.tar.gz" in out
    assert not (root / "dtd").exists() and _leftovers(root) == []  # nor the bad download
    assert not list(tmp_path.rglob("escape.txt"))


def test_md5_mismatch_is_a_bad_archive(tmp_path, server, monkeypatch):
    _publish(tmp_path, server, monkeypatch, ["EuroSAT"])
    entry = dataclasses.replace(prepare_data.ARCHIVES["EuroSAT"][0], md5="0" * 32)
    monkeypatch.setitem(prepare_data.ARCHIVES, "EuroSAT", (entry,))
    notes, failure = prepare_data.fetch_archives(str(tmp_path / "data"), "EuroSAT", None)
    assert failure == "bad archive" and "md5" in notes[0] and "differs from the published" in notes[0]
    assert not (tmp_path / "data/eurosat").exists()


@pytest.mark.parametrize(
    ("kind", "member"),
    [
        ("tar", "../escape.txt"),
        ("tar", "/tmp/abs-escape.txt"),
        ("tar", "dtd/../../escape.txt"),
        ("link", "../../escape.txt"),
        ("zip", "../escape.txt"),
    ],
)
def test_members_outside_the_target_are_refused(tmp_path, kind, member):
    root, store = tmp_path / "data", tmp_path / "data" / "archives" / "dtd"
    store.mkdir(parents=True)
    filename = "dtd.zip" if kind == "zip" else "dtd.tar.gz"
    good = {"dtd/images/a/a.jpg": b"x"}
    if kind == "zip":
        _write_zip(store / filename, good | {member: b"x"})
    elif kind == "link":
        _write_tar(store / filename, good, links={"dtd/link": member})
    else:
        _write_tar(store / filename, good | {member: b"x"})
    entry = archives.Archive(("http://127.0.0.1:9/unused",), filename, (("dtd", "dtd"),))
    with pytest.raises(archives.ArchiveError, match="refused") as err:
        archives.install(entry, str(root), str(store))
    assert err.value.status == "bad archive" and member in str(err.value)
    assert not (root / "dtd").exists() and not list(root.glob(".extract-*"))
    assert (store / filename).is_file()  # a file put there by hand is left for the user to look at
    assert not list(tmp_path.rglob("*escape.txt")) and not Path("/tmp/abs-escape.txt").exists()


def test_nested_archive_and_drive_hosted_archive(tmp_path, server, monkeypatch):
    names = ["Caltech101", "UCF101"]  # a zip holding a tar.gz; a zip fetched by the Drive downloader
    ups = _publish(tmp_path, server, monkeypatch, names)
    root = tmp_path / "data"
    calls: list = []
    assert (
        prepare_data.main(
            _argv(root, names, "--download-archives"), downloader=_drive(tmp_path, server, calls)
        )
        == 0
    )
    for name in names:
        rep = prepare_data.check_dataset(str(root), name)
        assert rep.status == "ready" and rep.found == rep.expected > 0
    assert _n_images(root / "caltech-101") == _n_images(
        ups["Caltech101"] / "caltech-101/101_ObjectCategories"
    )
    assert server.requests == ["/caltech-101.zip"]
    assert prepare_data.ARCHIVES["UCF101"][0].urls[0].removeprefix(archives.GDRIVE) in calls
    assert _leftovers(root) == []


def test_no_download_fetches_nothing_and_flags_exclude(tmp_path, server, monkeypatch, capsys):
    _publish(tmp_path, server, monkeypatch, ["DescribableTextures"])
    root = tmp_path / "data"
    root.mkdir()
    assert prepare_data.main(_argv(root, ["dtd", "imagenet"], "--no-download")) == 1
    out = capsys.readouterr().out
    assert server.requests == [] and prepare_data.RERUN_HINT in out
    for flags in (["--no-download", "--download-archives"], ["--keep-archives"]):
        with pytest.raises(SystemExit):
            prepare_data.main(_argv(root, ["dtd"], *flags))
    # a dataset without a public archive keeps its instructions
    assert prepare_data.main(_argv(root, ["imagenet"], "--download-archives"), downloader=None) == 1
    out = capsys.readouterr().out
    assert "missing" in _rows(out)["ImageNet"] and "needs a login" in out and server.requests == []


def test_archive_table_matches_the_wrappers():
    assert set(prepare_data.ARCHIVES).isdisjoint(prepare_data.NO_ARCHIVE)
    assert set(prepare_data.ARCHIVES) | set(prepare_data.NO_ARCHIVE) == set(prepare_data.DATASETS)
    for name, entries in prepare_data.ARCHIVES.items():
        cls = DATASET_REGISTRY.get(name)
        targets = [t for a in entries for t in a.targets]
        assert f"{cls.folder}/{cls.image_subdir}" in targets, name  # some archive provides the image folder
        for a in entries:
            assert all(u.startswith(("https://", "http://", archives.GDRIVE)) for u in a.urls), name
            for dst in [d for _, d in a.moves] + list(a.provides):
                assert dst == cls.folder or dst.startswith(cls.folder + "/"), (name, dst)
                assert ".." not in dst.split("/"), (name, dst)
        assert len({a.filename for a in entries}) == len(entries), name


def test_changed_archive_layout_installs_nothing(tmp_path, server, monkeypatch, capsys):
    _publish(tmp_path, server, monkeypatch, ["EuroSAT"])
    _write_zip(server.folder / "EuroSAT_RGB.zip", {"EuroSAT/Forest/Forest_1.jpg": b"x"})  # top folder renamed
    root = tmp_path / "data"
    assert prepare_data.main(_argv(root, ["eurosat"], "--download-archives"), downloader=None) == 1
    out = capsys.readouterr().out
    assert "bad archive" in _rows(out)["EuroSAT"] and "no EuroSAT_RGB inside" in out
    assert not (root / "eurosat").exists() and _leftovers(root) == []
    # with several moves, one missing source means none of them is made
    store = tmp_path / "store"
    store.mkdir()
    _write_zip(store / "two.zip", {"a/1.txt": b"1"})
    entry = archives.Archive(("http://127.0.0.1:9/unused",), "two.zip", (("a", "x/a"), ("b", "x/b")))
    with pytest.raises(archives.ArchiveError, match="no b inside"):
        archives.install(entry, str(root), str(store))
    assert not (root / "x").exists()


def test_extraction_failure_keeps_the_downloaded_archive(tmp_path, server, monkeypatch):
    _publish(tmp_path, server, monkeypatch, ["EuroSAT"])

    def _disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archives, "extract_and_move", _disk_full)
    root = tmp_path / "data"
    notes, failure = prepare_data.fetch_archives(str(root), "EuroSAT", None)
    kept = root / prepare_data.ARCHIVE_DIR / "eurosat" / "EuroSAT_RGB.zip"
    assert failure == "extraction failed" and "No space left" in notes[0]
    assert kept.is_file() and f"{kept} is kept" in notes[1]  # not downloaded again next time
