"""tools/prepare_data.py: the status table on a complete, a partial and an absent dataset; no network."""

import json

import pytest

from tests.test_datasets_wrappers import make_fake
from tools import prepare_data


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
