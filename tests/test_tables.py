"""tools/tables.py on fabricated results.json trees: rows, HM, the paper's average, gaps, plots."""

import json
import re
from pathlib import Path

import pytest

from tools import paper_numbers, tables


def write_result(root: Path, rel: str, accuracy: float) -> None:
    """A results.json as the engine writes it (only metrics.accuracy matters to the tables)."""
    folder = root / rel
    folder.mkdir(parents=True, exist_ok=True)
    record = {"trainer": "x", "metrics": {"accuracy": accuracy, "error": 100 - accuracy, "macro_f1": 1.0}}
    (folder / "results.json").write_text(json.dumps(record))


def b2n(root: Path, trainer: str, dataset: str, seed: int, base: float | None, new: float | None) -> None:
    common = f"{dataset}/shots_16/{trainer}/cfg/seed{seed}"
    if base is not None:
        write_result(root, f"base2new/train_base/{common}", base)
    if new is not None:
        write_result(root, f"base2new/test_new/{common}", new)


def rows_of(markdown: str, title_part: str) -> list[list[str]]:
    """The body rows (cells stripped) of the markdown table whose title contains title_part."""
    section = markdown.split(title_part, 1)[1]
    lines = [ln for ln in section.split("\n\n", 2)[1].splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def hm(b: float, n: float) -> float:
    return 2 * b * n / (b + n)


def render_all(root: Path, *args: str) -> str:
    results = tables.Results(tables.collect(root))
    return "\n".join(tables.render(t, args[0] if args else "markdown") for t in tables.build_tables(results))


def test_base2new_rows_seed_means_and_hm(tmp_path):
    numbers = {  # (trainer, dataset): [(base, new) per seed]
        ("CoOp", "dtd"): [(80.0, 50.0), (82.0, 54.0)],
        ("CoOp", "eurosat"): [(95.0, 60.0), (93.0, 62.0)],
        ("CasPL_CoOp", "dtd"): [(83.0, 66.0), (85.0, 64.0)],
        ("CasPL_CoOp", "eurosat"): [(96.0, 80.0), (94.0, 40.0)],
    }
    for (trainer, ds), per_seed in numbers.items():
        for seed, (b, n) in enumerate(per_seed, 1):
            b2n(tmp_path, trainer, ds, seed, b, n)
    write_result(tmp_path, "boost/dtd/vit_b16_l14_ep20_4+4ctx/seed1", 1.0)  # a boosting run: not a table row
    out = render_all(tmp_path)
    detail = rows_of(out, "Base-to-new generalization (")
    expected = []
    for ds, label in (("dtd", "DTD"), ("eurosat", "EuroSAT")):
        for trainer, name in (("CoOp", "CoOp"), ("CasPL_CoOp", "CoOp+CasPL")):
            b = sum(p[0] for p in numbers[(trainer, ds)]) / 2
            n = sum(p[1] for p in numbers[(trainer, ds)]) / 2
            expected.append([label, name, f"{b:.2f}", f"{n:.2f}", f"{hm(b, n):.2f}", "2/2"])
    assert detail == expected

    average = {r[0]: r for r in rows_of(out, "Base-to-new generalization: average")}
    bases = [sum(p[0] for p in numbers[("CasPL_CoOp", ds)]) / 2 for ds in ("dtd", "eurosat")]
    news = [sum(p[1] for p in numbers[("CasPL_CoOp", ds)]) / 2 for ds in ("dtd", "eurosat")]
    avg_b, avg_n = sum(bases) / 2, sum(news) / 2
    row = average["CoOp+CasPL"]
    assert row[1:4] == [f"{avg_b:.2f}", f"{avg_n:.2f}", f"{hm(avg_b, avg_n):.2f}"]
    # The paper's way (HM of the averages) differs from the mean of the per-dataset HMs here.
    mean_of_hms = sum(hm(b, n) for b, n in zip(bases, news)) / 2
    assert f"{mean_of_hms:.2f}" != row[3]
    assert row[4:] == ["–"] * 6  # not the paper's 11 datasets: no published numbers, no difference


def test_missing_runs_are_gaps_never_zeros(tmp_path):
    b2n(tmp_path, "PromptSRC", "dtd", 1, 80.0, 70.0)
    b2n(tmp_path, "PromptSRC", "eurosat", 1, 90.0, None)  # the new-class evaluation never ran
    b2n(tmp_path, "CasPL_PromptSRC", "dtd", 1, 81.0, 72.0)  # no eurosat at all
    out = render_all(tmp_path)
    detail = {(r[0], r[1]): r for r in rows_of(out, "Base-to-new generalization (")}
    assert detail[("EuroSAT", "PromptSRC")][2:6] == ["90.00", "–", "–", "1/0"]
    assert ("EuroSAT", "PromptSRC+CasPL") not in detail
    average = {r[0]: r for r in rows_of(out, "Base-to-new generalization: average")}
    assert average["PromptSRC"][1:4] == ["85.00", "–", "–"]  # base of both datasets, new of one: gap
    assert average["PromptSRC+CasPL"][1:4] == ["–", "–", "–"]
    cells = [
        c
        for title in (" (", ": average")
        for r in rows_of(out, "Base-to-new generalization" + title)
        for c in r
    ]
    assert "0.00" not in cells and "-" not in cells


def test_published_averages_beside_ours_with_the_difference(tmp_path):
    for ds in paper_numbers.PAPER_DATASETS:
        b2n(tmp_path, "CasPL_PromptSRC", ds, 1, 87.11, 80.54)
        b2n(tmp_path, "CasPL_PromptSRC", ds, 2, 87.11, 78.54)
    out = render_all(tmp_path)
    row = rows_of(out, "Base-to-new generalization: average")[0]
    ours_hm = hm(87.11, 79.54)
    assert row == [
        "PromptSRC+CasPL", "87.11", "79.54", f"{ours_hm:.2f}", "86.11", "79.54", "82.69",
        "+1.00", "+0.00", f"{ours_hm - 82.69:+.2f}",
    ]  # fmt: skip
    assert len(rows_of(out, "Base-to-new generalization (")) == 11


def test_paper_averages_are_hm_of_average_base_and_new():
    """The published rows obey the convention the table uses (guards the transcription too)."""
    for method, (b, n, h) in paper_numbers.BASE2NEW_AVERAGE.items():
        assert abs(hm(b, n) - h) < 0.011, method


def test_fewshot_tables_average_paper_rows_and_gaps(tmp_path):
    for ds in paper_numbers.PAPER_DATASETS:
        for k in (1, 2, 4, 8, 16):
            write_result(tmp_path, f"fewshot/{ds}/shots_{k}/CasPL_PromptSRC/cfg/seed1", 70.0 + k)
            if not (ds == "dtd" and k == 4):  # one CoOp run missing
                write_result(tmp_path, f"fewshot/{ds}/shots_{k}/CoOp/cfg/seed1", 60.0 + k)
    out = render_all(tmp_path)
    detail = {(r[0], r[1]): r[2:] for r in rows_of(out, "Few-shot classification (")}
    assert detail[("DTD", "CoOp")] == ["61.00", "62.00", "–", "68.00", "76.00"]
    avg = {(r[0], r[1]): r[2:] for r in rows_of(out, "Few-shot classification: average")}
    assert avg[("PromptSRC+CasPL", "ours")] == ["71.00", "72.00", "74.00", "78.00", "86.00"]
    published = paper_numbers.FEWSHOT_AVERAGE["CasPL_PromptSRC"]
    assert avg[("PromptSRC+CasPL", "paper")] == [f"{published[k]:.2f}" for k in (1, 2, 4, 8, 16)]
    assert avg[("PromptSRC+CasPL", "Δ")][0] == f"{71.0 - published[1]:+.2f}"
    assert avg[("CoOp", "ours")][2] == "–"  # the 4-shot average misses DTD: a gap
    assert avg[("CoOp", "Δ")][2] == "–"


def test_cross_dataset_and_dg_tables_split_targets(tmp_path):
    for trainer, src in (("MaPLe", 70.0), ("CasPL_MaPLe", 72.0)):
        write_result(tmp_path, f"xd/train/imagenet/shots_16/{trainer}/cfg/seed1", src)
        for i, ds in enumerate(("caltech101", "dtd", "imagenet_a", "imagenetv2")):
            if trainer == "MaPLe" and ds == "dtd":
                continue
            write_result(tmp_path, f"xd/test/{ds}/shots_16/{trainer}/cfg/seed1", src - 10 * i)
    out = render_all(tmp_path)
    xd = {r[0]: r[1:] for r in rows_of(out, "Cross-dataset transfer")}
    assert xd["MaPLe+CasPL"] == ["72.00", "72.00", "62.00", "67.00"]  # source, Caltech101, DTD, average
    assert xd["MaPLe"] == ["70.00", "70.00", "–", "–"]
    header = out.split("Cross-dataset transfer", 1)[1].split("\n")[2]
    assert "ImageNet-A" not in header and "DTD" in header
    dg = {r[0]: r[1:] for r in rows_of(out, "Domain generalization")}
    assert dg["MaPLe"] == ["70.00", "40.00", "50.00", "45.00"]  # ImageNet-V2 before -A (paper order)


def test_latex_format_and_cli(tmp_path, capsys):
    b2n(tmp_path, "CoOp", "dtd", 1, 80.0, None)
    plots = tmp_path / "figs"
    assert tables.main([str(tmp_path), "--format", "latex", "--plots", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "\\toprule" in out and re.search(r"& +80.00", out) and "--" in out and "Δ" not in out
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["base2new_bars.png"]
    assert (plots / "base2new_bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fewshot_plots_per_dataset_and_average(tmp_path):
    for ds in ("dtd", "eurosat"):
        for k in (1, 4):
            write_result(tmp_path, f"fewshot/{ds}/shots_{k}/CoOp/cfg/seed1", 50.0 + k)
    written = tables.save_plots(tables.Results(tables.collect(tmp_path)), tmp_path / "p")
    assert sorted(p.name for p in written) == [
        "fewshot_average.png",
        "fewshot_dtd.png",
        "fewshot_eurosat.png",
    ]


def test_bad_or_missing_results_are_named(tmp_path, capsys):
    assert tables.main([str(tmp_path), "--no-plots"]) == 1
    assert "no results.json" in capsys.readouterr().err
    bad = tmp_path / "base2new/train_base/dtd/shots_16/CoOp/cfg/seed1"
    bad.mkdir(parents=True)
    (bad / "results.json").write_text('{"metrics": {}}')
    assert tables.main([str(tmp_path), "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert str(bad / "results.json") in err and "metrics.accuracy" in err


@pytest.mark.parametrize("configs", [("a",), ("a", "b")])
def test_one_trainer_with_two_configs_gets_two_rows(tmp_path, configs):
    for i, cfg in enumerate(configs):
        write_result(tmp_path, f"fewshot/dtd/shots_1/CoOp/{cfg}/seed1", 50.0 + i)
    rows = rows_of(render_all(tmp_path), "Few-shot classification (")
    expected = ["CoOp"] if len(configs) == 1 else ["CoOp [a]", "CoOp [b]"]
    assert [r[1] for r in rows] == expected
