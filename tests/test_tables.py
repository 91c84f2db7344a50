"""tools/tables.py on fabricated results.json trees: rows, HM, seed std and flags, the paper's numbers
(per dataset and averages), gaps, plots."""

import json
import math
import re
import struct
from pathlib import Path

import pytest

from tools import paper_numbers, tables

PER_DATASET_PAPER = (
    "BASE2NEW",
    "FEWSHOT",
    "XD",
    "XD_AVERAGE",
    "DG",
    "DG_AVERAGE",
    "DG_AVERAGE_TARGETS",
    "BOOST_ZS",
)


@pytest.fixture(autouse=True)
def no_per_dataset_paper_numbers(monkeypatch):
    """Tests pass the paper's per-dataset numbers in themselves: their values never decide an outcome."""
    for name in PER_DATASET_PAPER:
        monkeypatch.delattr(paper_numbers, name, raising=False)


def pstd(values: list[float]) -> float:
    """Population std, the tables' convention."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def cell(values: list[float], mean: float | None = None) -> str:
    """The text of a cell over `values` (mean defaults to theirs)."""
    mean = sum(values) / len(values) if mean is None else mean
    return f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} ± {pstd(values):.2f}"


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
            bs, ns = [p[0] for p in numbers[(trainer, ds)]], [p[1] for p in numbers[(trainer, ds)]]
            b, n = sum(bs) / 2, sum(ns) / 2
            hms = [hm(x, y) for x, y in zip(bs, ns)]  # the HM's std is that of the per-seed HMs
            expected.append([label, name, cell(bs), cell(ns), cell(hms, mean=hm(b, n)), "2/2"])
    assert detail == expected

    average = {r[0]: r for r in rows_of(out, "Base-to-new generalization: average")}
    bases = [sum(p[0] for p in numbers[("CasPL_CoOp", ds)]) / 2 for ds in ("dtd", "eurosat")]
    news = [sum(p[1] for p in numbers[("CasPL_CoOp", ds)]) / 2 for ds in ("dtd", "eurosat")]
    avg_b, avg_n = sum(bases) / 2, sum(news) / 2
    row = average["CoOp+CasPL"]
    assert [c.split(" ±")[0] for c in row[1:4]] == [f"{avg_b:.2f}", f"{avg_n:.2f}", f"{hm(avg_b, avg_n):.2f}"]
    # The std of an average is over the seeds' averages (seed 1: mean of dtd and eurosat seed 1, ...).
    seed_new = [(66.0 + 80.0) / 2, (64.0 + 40.0) / 2]
    assert row[2] == cell(seed_new)
    # The paper's way (HM of the averages) differs from the mean of the per-dataset HMs here.
    mean_of_hms = sum(hm(b, n) for b, n in zip(bases, news)) / 2
    assert f"{mean_of_hms:.2f}" != row[3].split(" ±")[0]
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
    assert [c.split(" ±")[0] for c in row] == [
        "PromptSRC+CasPL", "87.11", "79.54", f"{ours_hm:.2f}", "86.11", "79.54", "82.69",
        "+1.00", "+0.00", f"{ours_hm - 82.69:+.2f}",
    ]  # fmt: skip
    assert row[2] == "79.54 ± 1.00"
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
    assert pngs == ["base2new_bars.png", "base2new_hm_CoOp.png"]
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


# ---------------------------------------------------------------------------- seeds: std, counts, flags
def test_cells_show_std_seed_count_fewer_seeds_and_a_far_seed(tmp_path):
    dtd = {1: 50.0, 2: 51.0, 3: 50.5, 4: 70.0}  # seed 4 is far from the others
    for seed, acc in dtd.items():
        write_result(tmp_path, f"fewshot/dtd/shots_1/CoOp/cfg/seed{seed}", acc)
    for seed, acc in {1: 80.0, 2: 82.0}.items():  # two seeds only
        write_result(tmp_path, f"fewshot/eurosat/shots_1/CoOp/cfg/seed{seed}", acc)
    for seed, acc in {1: 80.0, 2: 80.0, 3: 80.1, 4: 80.0}.items():  # close seeds: 80.1 is not "far"
        write_result(tmp_path, f"fewshot/ucf101/shots_1/CoOp/cfg/seed{seed}", acc)
    out = render_all(tmp_path)
    detail = {r[0]: r[2] for r in rows_of(out, "Few-shot classification (")}
    assert detail["DTD"] == cell(list(dtd.values())) + " ‡"
    assert detail["EuroSAT"] == cell([80.0, 82.0]) + " †2"
    assert detail["UCF101"] == cell([80.0, 80.0, 80.1, 80.0])
    section = out.split("Few-shot classification (", 1)[1].split("##", 1)[0]
    assert "Cells: mean ± std over 4 seed(s); †n: over n seeds only." in section
    footnotes = [ln for ln in section.splitlines() if ln.startswith("‡")]
    std = pstd(list(dtd.values()))
    assert footnotes == [
        f"‡ DTD / CoOp / 1 shot: seed4 = 70.00 is {(70.0 - 50.5) / std:.1f} std (the cell's {std:.2f}) from the "
        "mean of the other seeds, 50.50"
    ]


def test_far_seed_needs_three_seeds_and_a_real_gap():
    assert tables.far_seeds({"seed1": 10.0, "seed2": 90.0}) == []  # two seeds: no "others" to compare with
    assert tables.far_seeds({"a": 91.5, "b": 93.0, "c": 94.5}) == []  # evenly spread seeds: none is far
    assert [s for s, *_ in tables.far_seeds({"a": 80.0, "b": 80.0, "c": 84.0})] == ["c"]
    assert [s for s, *_ in tables.far_seeds({"a": 1.0, "b": 1.2, "c": 0.9, "d": 9.0})] == ["d"]
    assert tables.far_seeds({"a": 80.0, "b": 80.0, "c": 80.4}) == []  # under OUTLIER_MIN_GAP points


# ---------------------------------------------------------------------------- the paper's per-dataset numbers
def test_base2new_per_dataset_rows_have_the_papers_numbers_and_deltas(tmp_path, monkeypatch):
    monkeypatch.setattr(paper_numbers, "BASE2NEW", {"CoOp": {"dtd": (79.0, 41.0, 54.0)}}, raising=False)
    for seed, (b, n) in enumerate([(80.0, 50.0), (82.0, 54.0)], 1):
        b2n(tmp_path, "CoOp", "dtd", seed, b, n)
        b2n(tmp_path, "CoOp", "eurosat", seed, b + 10, n + 10)
    out = render_all(tmp_path)
    header = out.split("Base-to-new generalization (", 1)[1].split("\n")[2]
    assert [h.strip() for h in header.strip("|").split("|")][6:] == [
        "Paper Base", "Paper New", "Paper HM", "Δ Base", "Δ New", "Δ HM",
    ]  # fmt: skip
    rows = {r[0]: r for r in rows_of(out, "Base-to-new generalization (")}
    assert rows["DTD"][6:] == ["79.00", "41.00", "54.00", "+2.00", "+11.00", f"{hm(81.0, 52.0) - 54.0:+.2f}"]
    assert rows["EuroSAT"][6:] == ["–"] * 6  # the paper has no number for it here: gaps, not zeros


def test_fewshot_per_dataset_rows_have_paper_and_delta_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(paper_numbers, "FEWSHOT", {"CoOp": {"dtd": {1: 45.0, 4: 60.0}}}, raising=False)
    for k, acc in ((1, 50.0), (2, 55.0), (4, 58.5)):
        write_result(tmp_path, f"fewshot/dtd/shots_{k}/CoOp/cfg/seed1", acc)
        write_result(tmp_path, f"fewshot/eurosat/shots_{k}/CoOp/cfg/seed1", acc + 20)
    rows = {(r[0], r[2]): r[3:] for r in rows_of(render_all(tmp_path), "Few-shot classification (")}
    assert rows[("DTD", "ours")] == ["50.00", "55.00", "58.50"]
    assert rows[("DTD", "paper")] == ["45.00", "–", "60.00"]
    assert rows[("DTD", "Δ")] == ["+5.00", "–", "-1.50"]
    assert ("EuroSAT", "paper") not in rows and rows[("EuroSAT", "ours")][0] == "70.00"


def test_xd_and_dg_rows_with_the_papers_numbers_and_the_papers_average(tmp_path, monkeypatch):
    monkeypatch.setattr(paper_numbers, "XD", {"MaPLe": {"imagenet": 70.7, "caltech101": 93.5}}, raising=False)
    monkeypatch.setattr(paper_numbers, "XD_AVERAGE", {"MaPLe": 66.3}, raising=False)
    monkeypatch.setattr(
        paper_numbers, "DG", {"MaPLe": {"imagenetv2": 64.1, "imagenet_r": 77.0}}, raising=False
    )
    monkeypatch.setattr(paper_numbers, "DG_AVERAGE", {"MaPLe": 60.3}, raising=False)
    monkeypatch.setattr(paper_numbers, "DG_AVERAGE_TARGETS", ("imagenetv2", "imagenet_r"), raising=False)
    for seed, shift in ((1, 0.0), (2, 2.0)):
        write_result(tmp_path, f"xd/train/imagenet/shots_16/MaPLe/cfg/seed{seed}", 70.0 + shift)
        for ds, acc in (
            ("caltech101", 90.0),
            ("imagenetv2", 60.0),
            ("imagenet_a", 40.0),
            ("imagenet_r", 80.0),
        ):
            write_result(tmp_path, f"xd/test/{ds}/shots_16/MaPLe/cfg/seed{seed}", acc + shift)
    out = render_all(tmp_path)
    xd = {r[1]: r[2:] for r in rows_of(out, "Cross-dataset transfer")}
    assert xd["ours"] == [cell([70.0, 72.0]), cell([90.0, 92.0]), cell([90.0, 92.0])]  # source, Caltech, avg
    assert xd["paper"] == ["70.70", "93.50", "66.30"]
    # Our average is over 1 target, the paper's over 10: no difference for it.
    assert xd["Δ"] == ["+0.30", "-2.50", "–"]
    dg = {r[1]: r[2:] for r in rows_of(out, "Domain generalization")}
    header = out.split("Domain generalization", 1)[1].split("\n")[2]
    assert [h.strip() for h in header.strip("|").split("|")][3:] == [
        "ImageNet-V2",
        "ImageNet-A",
        "ImageNet-R",
        "Average",
    ]
    avg = (61.0 + 81.0) / 2  # ImageNet-A shown, not averaged (the paper's DG_AVERAGE_TARGETS)
    assert dg["ours"][-1] == cell([70.0, 72.0], mean=avg)
    assert dg["paper"] == ["–", "64.10", "–", "77.00", "60.30"]
    assert dg["Δ"][-1] == f"{avg - 60.3:+.2f}"
    assert "ImageNet-A: shown, but not in the average" in out


@pytest.mark.parametrize("keyed_by_trainer", [True, False])
def test_dg_compares_clip_plus_boost_with_the_papers_zero_shot_numbers(
    tmp_path, monkeypatch, keyed_by_trainer
):
    numbers = {"imagenetv2": 63.0}
    boost = {"CasPL_ZS": numbers} if keyed_by_trainer else numbers
    monkeypatch.setattr(paper_numbers, "BOOST_ZS", boost, raising=False)
    write_result(tmp_path, "xd/test/imagenetv2/shots_16/CasPL_ZS/cfg/seed1", 64.0)
    dg = {r[1]: r[2:] for r in rows_of(render_all(tmp_path), "Domain generalization")}
    assert dg["paper"][0] == "63.00" and dg["Δ"][0] == "+1.00"


# ---------------------------------------------------------------------------- command line
def test_empty_tables_are_named_with_the_reason(tmp_path, capsys):
    b2n(tmp_path, "CoOp", "dtd", 1, 80.0, 60.0)
    assert tables.main([str(tmp_path), "--no-plots", "--tables", "b2n", "fewshot", "dg"]) == 0
    captured = capsys.readouterr()
    assert "Base-to-new generalization" in captured.out
    assert "tables: fewshot: empty, no results.json under fewshot/" in captured.err
    assert "tables: dg: empty" in captured.err and "tables: b2n" not in captured.err
    assert tables.main([str(tmp_path), "--no-plots", "--tables", "xd"]) == 1  # nothing to print at all
    captured = capsys.readouterr()
    assert captured.out == "" and "none of the requested tables (xd) has runs" in captured.err


def test_missing_folder_is_named_once(tmp_path, capsys):
    assert tables.main([str(tmp_path / "nope"), "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert err.count("tables:") == 1 and f"{tmp_path / 'nope'} is not a directory" in err


# ---------------------------------------------------------------------------- plots
def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def layout_problems(fig) -> list[str]:
    """Overlaps a reader would see: the legend over a bar, tick labels over each other, unlabelled axes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    for ax in fig.axes:
        if not ax.get_xlabel() or not ax.get_ylabel():
            problems.append(f"{ax.get_title()}: an axis has no label")
        legend = ax.get_legend()
        if legend is None:
            problems.append(f"{ax.get_title()}: no legend")
            continue
        box = legend.get_window_extent(renderer)
        bars = [p for p in ax.patches if math.isfinite(p.get_height()) and p.get_height() > 0]
        problems += [
            f"{ax.get_title()}: legend hides a bar"
            for p in bars
            if box.overlaps(p.get_window_extent(renderer))
        ]
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        problems += [
            f"{ax.get_title()}: tick labels overlap" for a, b in zip(ticks, ticks[1:]) if a.overlaps(b)
        ]
    return problems


def test_plots_from_fixture_results_are_readable_pngs(tmp_path, monkeypatch):
    monkeypatch.setattr(
        paper_numbers, "BASE2NEW", {"CasPL_PromptSRC": {"dtd": (83.0, 72.0, 77.1)}}, raising=False
    )
    monkeypatch.setattr(
        paper_numbers, "FEWSHOT", {"CoOp": {"dtd": {1: 50.0, 4: 58.0, 16: 63.0}}}, raising=False
    )
    for i, ds in enumerate(
        ("imagenet", "caltech101", "oxford_pets", "fgvc_aircraft", "dtd", "eurosat", "ucf101")
    ):
        for seed in (1, 2, 3):
            for t, trainer in enumerate(("PromptSRC", "CasPL_PromptSRC")):  # high bars right under a legend
                b2n(tmp_path, trainer, ds, seed, 95.0 + t + seed * 0.3, 90.0 + 3 * t - i + seed)
    for ds in ("dtd", "eurosat"):
        for k in (1, 2, 4, 8, 16):
            for seed in (1, 2):
                write_result(tmp_path, f"fewshot/{ds}/shots_{k}/CoOp/cfg/seed{seed}", 40.0 + 2 * k + 3 * seed)
    checked = {}
    original = tables._save

    def checked_save(fig, path):
        checked[path.name] = layout_problems(fig)
        return original(fig, path)

    monkeypatch.setattr(tables, "_save", checked_save)
    written = tables.save_plots(tables.Results(tables.collect(tmp_path)), tmp_path / "plots")
    assert sorted(p.name for p in written) == [
        "base2new_bars.png", "base2new_hm_CasPL_PromptSRC.png", "base2new_hm_PromptSRC.png",
        "fewshot_average.png", "fewshot_dtd.png", "fewshot_eurosat.png",
    ]  # fmt: skip
    assert checked.keys() == {p.name for p in written}
    assert {name: problems for name, problems in checked.items() if problems} == {}
    for path in written:
        width, height = png_size(path)
        assert 400 <= width <= 2000 and 300 <= height <= 1200, (path.name, width, height)


def test_layout_check_sees_a_legend_over_the_bars():
    """The check above can fail: a legend drawn inside the axes over tall bars is caught."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.bar([0, 1, 2], [95, 96, 97], label="ours")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper right")
    assert "legend hides a bar" in " ".join(layout_problems(fig))
    plt.close(fig)
