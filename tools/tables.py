"""results.json files of the sweeps -> the paper's tables (tabulate) and PNG plots.

    python tools/tables.py output/                  # markdown tables of every setting found, plots in output/plots
    python tools/tables.py output/ --format latex --no-plots
    python tools/tables.py output/ --tables b2n fewshot --plots figures/

Runs are found by the layout the scripts write (the CoOp family's):
    base2new/train_base/<dataset>/shots_<K>/<trainer>/<config>/seed<S>/results.json   (Base)
    base2new/test_new/<dataset>/shots_<K>/<trainer>/<config>/seed<S>/results.json     (New)
    fewshot/<dataset>/shots_<K>/<trainer>/<config>/seed<S>/results.json
    xd/train/<source>/shots_<K>/<trainer>/<config>/seed<S>/results.json                (cross-dataset source)
    xd/test/<target>/shots_<K>/<trainer>/<config>/seed<S>/results.json                 (XD and DG targets)

Every cell is the mean +- std (population std, as parse_test_res.py) of metrics.accuracy over the seeds
found; a table says how many seeds its cells have, a cell from fewer seeds is marked "†n" (n seeds), and a
seed far from the others ("‡") is named in a footnote. HM = 2BN/(B+N) of the mean Base and New, its std
that of the per-seed HMs. Per-dataset rows put the paper's per-dataset numbers (tools/paper_numbers.py)
beside ours with the difference. Average rows are the paper's: mean Base and mean New over the datasets of
the table and the HM of those two means; the mean of the target datasets the paper averages for XD / DG.
An average is shown only for a method with every dataset of its table (a gap otherwise); the difference to
the published average only when it is over the paper's datasets. Missing runs are gaps, never zeros.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate, tabulate_formats

try:
    from tools import paper_numbers as paper
except ImportError:  # run as `python tools/tables.py`: tools/ itself is on sys.path
    import paper_numbers as paper  # type: ignore[no-redef]

DATASET_NAMES = {
    "imagenet": "ImageNet",
    "caltech101": "Caltech101",
    "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars",
    "oxford_flowers": "Flowers102",
    "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DTD",
    "eurosat": "EuroSAT",
    "ucf101": "UCF101",
    "imagenetv2": "ImageNet-V2",
    "imagenet_sketch": "ImageNet-Sketch",
    "imagenet_a": "ImageNet-A",
    "imagenet_r": "ImageNet-R",
    "synthetic": "Synthetic",
}
METHOD_NAMES = {
    "ZeroshotCLIP": "CLIP",
    "CasPL_ZS": "CLIP+CasPL",
    "LinearProbeCLIP": "Linear probe CLIP",
    "CoOp": "CoOp",
    "CasPL_CoOp": "CoOp+CasPL",
    "CoCoOp": "CoCoOp",
    "CasPL_CoCoOp": "CoCoOp+CasPL",
    "IVLP": "IVLP",
    "CasPL_IVLP": "IVLP+CasPL",
    "MaPLe": "MaPLe",
    "CasPL_MaPLe": "MaPLe+CasPL",
    "PromptSRC": "PromptSRC",
    "CasPL_PromptSRC": "PromptSRC+CasPL",
}
TABLES = ("b2n", "fewshot", "xd", "dg")


@dataclass(frozen=True)
class Run:
    """One results.json placed in the sweep layout."""

    setting: str  # b2n | fewshot | xd
    role: str  # base | new (b2n); all (fewshot); source | target (xd)
    dataset: str
    shots: int
    trainer: str
    config: str
    seed: str
    accuracy: float
    path: Path


def harmonic_mean(base: float | None, new: float | None) -> float | None:
    """HM = 2BN/(B+N); a gap (None) when either is missing."""
    if base is None or new is None:
        return None
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def _place(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(setting, role) of a results.json from the folders above <dataset>/shots_K/...; None if unknown."""
    if len(parts) >= 8 and parts[-8] == "base2new" and parts[-7] in ("train_base", "test_new"):
        return "b2n", "base" if parts[-7] == "train_base" else "new"
    if len(parts) >= 8 and parts[-8] == "xd" and parts[-7] in ("train", "test"):
        return "xd", "source" if parts[-7] == "train" else "target"
    if len(parts) >= 7 and parts[-7] == "fewshot":
        return "fewshot", "all"
    return None


def read_accuracy(path: Path) -> float:
    """metrics.accuracy of one results.json, with an error naming the file when it is not there."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        value = record["metrics"]["accuracy"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a results.json with metrics.accuracy ({err!r})") from err
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{path}: metrics.accuracy is not a finite number: {value!r}")
    return float(value)


def collect(root: Path) -> list[Run]:
    """Every results.json under root that sits in the sweep layout (others, e.g. boosting runs, ignored)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    runs = []
    for path in sorted(root.rglob("results.json")):
        parts = path.relative_to(root).parts
        place = _place(parts)
        if place is None or not parts[-5].startswith("shots_") or not parts[-2].startswith("seed"):
            continue
        try:
            shots = int(parts[-5].removeprefix("shots_"))
        except ValueError:
            continue
        runs.append(
            Run(
                place[0],
                place[1],
                parts[-6],
                shots,
                parts[-4],
                parts[-3],
                parts[-2],
                read_accuracy(path),
                path,
            )
        )
    return runs


# ---------------------------------------------------------------------------- seed statistics
OUTLIER_STD = 2.0  # a seed further than this many of the cell's std from the other seeds' mean is flagged,
OUTLIER_MIN_GAP = 0.5  # if it is also this many points from it (near-identical seeds have a tiny std)


def _std(values: list[float]) -> float:
    """Population std (numpy's default, parse_test_res.py's)."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@dataclass
class Cell:
    """One table cell: a value per seed; mean, std and seed count derived from them."""

    per_seed: dict[str, float]
    mean_override: float | None = None  # HM of means, average of means: the paper's value, not a seed mean

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def mean(self) -> float:
        if self.mean_override is not None:
            return self.mean_override
        return sum(self.per_seed.values()) / self.n

    @property
    def std(self) -> float | None:
        return _std(list(self.per_seed.values())) if self.n > 1 else None


def far_seeds(per_seed: dict[str, float]) -> list[tuple[str, float, float, float]]:
    """(seed, value, other seeds' mean, cell std) of each seed further than OUTLIER_STD x the cell's std (the
    one the cell shows) from the mean of the other seeds, and at least OUTLIER_MIN_GAP points; 3+ seeds.

    The distance is to the others' mean, so the seed does not pull the reference towards itself: with 3
    seeds, evenly spaced ones are never flagged (1.8 std) and one seed apart from two equal ones always is
    (2.1 std)."""
    if len(per_seed) < 3:
        return []
    std = _std(list(per_seed.values()))
    found = []
    for seed, value in per_seed.items():
        others = [v for s, v in per_seed.items() if s != seed]
        mean = sum(others) / len(others)
        gap = abs(value - mean)
        if gap > OUTLIER_STD * std and gap >= OUTLIER_MIN_GAP:
            found.append((seed, value, mean, std))
    return found


def _seed_order(seed: str) -> tuple[int, str]:
    digits = seed.removeprefix("seed")
    return (int(digits), seed) if digits.isdigit() else (1 << 30, seed)


def combine(cells: list[Cell | None], how: str) -> Cell | None:
    """A cell from others over the same seeds: "mean" (average over datasets) or "hm" (of Base and New).

    Its value is the paper's (the mean of the cells' means, or the HM of the two means); its per-seed values
    (for the std) cover the seeds every cell has. A gap when any cell is missing.
    """
    if not cells or any(c is None for c in cells):
        return None
    means = [c.mean for c in cells]  # type: ignore[union-attr]
    value = sum(means) / len(means) if how == "mean" else harmonic_mean(*means)
    common = set.intersection(*(set(c.per_seed) for c in cells))  # type: ignore[union-attr]
    per_seed = {}
    for seed in sorted(common, key=_seed_order):
        vals = [c.per_seed[seed] for c in cells]  # type: ignore[union-attr]
        per_seed[seed] = sum(vals) / len(vals) if how == "mean" else harmonic_mean(*vals)
    return Cell(per_seed, mean_override=value)


class Results:
    """Accuracies per seed, indexed by (setting, role, dataset, shots, method)."""

    def __init__(self, runs: list[Run]) -> None:
        acc: dict[tuple, dict[str, float]] = defaultdict(dict)
        configs: dict[tuple[str, str], set[str]] = defaultdict(set)
        for run in runs:
            configs[(run.setting, run.trainer)].add(run.config)
        for run in runs:
            # A trainer run with several configs in one setting gets one method per config.
            several = len(configs[(run.setting, run.trainer)]) > 1
            method = f"{run.trainer} [{run.config}]" if several else run.trainer
            acc[(run.setting, run.role, run.dataset, run.shots, method)][run.seed] = run.accuracy
        self.per_seed = {
            k: dict(sorted(v.items(), key=lambda kv: _seed_order(kv[0]))) for k, v in acc.items()
        }
        self.values = {k: sum(v.values()) / len(v) for k, v in self.per_seed.items()}
        self.counts = {k: len(v) for k, v in self.per_seed.items()}

    def get(self, setting: str, role: str, dataset: str, shots: int, method: str) -> float | None:
        """The mean over seeds, or None (a gap)."""
        return self.values.get((setting, role, dataset, shots, method))

    def cell(self, setting: str, role: str, dataset: str, shots: int, method: str) -> Cell | None:
        """The seeds' values of one cell, or None (a gap)."""
        values = self.per_seed.get((setting, role, dataset, shots, method))
        return Cell(dict(values)) if values else None

    def keys(self, setting: str, role: str | None = None) -> list[tuple]:
        """Keys of one setting (and role)."""
        return [k for k in self.values if k[0] == setting and (role is None or k[1] == role)]

    def methods(self, setting: str, role: str | None = None) -> list[str]:
        """Methods with results in a setting, in the paper's order (unknown ones after, by name)."""
        return sorted({k[4] for k in self.keys(setting, role)}, key=_method_order)

    def datasets(self, setting: str, role: str | None = None) -> list[str]:
        """Datasets with results in a setting, in the paper's order (unknown ones after, by name)."""
        return sorted({k[2] for k in self.keys(setting, role)}, key=_dataset_order)


def _method_order(method: str) -> tuple[int, str]:
    trainer = method.split(" [")[0]
    order = list(METHOD_NAMES)
    return (order.index(trainer) if trainer in order else len(order), method)


def _dataset_order(dataset: str) -> tuple[int, str]:
    order = list(DATASET_NAMES)
    return (order.index(dataset) if dataset in order else len(order), dataset)


def method_label(method: str) -> str:
    """The paper's name of a method (e.g. CasPL_PromptSRC -> PromptSRC+CasPL)."""
    trainer, _, rest = method.partition(" [")
    return METHOD_NAMES.get(trainer, trainer) + (f" [{rest}" if rest else "")


def dataset_label(dataset: str) -> str:
    """The paper's name of a dataset config (e.g. oxford_flowers -> Flowers102)."""
    return DATASET_NAMES.get(dataset, dataset)


def _trainer(method: str) -> str:
    return method.split(" [")[0]


def _diff(ours: Cell | float | None, published: float | None) -> float | None:
    if isinstance(ours, Cell):
        ours = ours.mean
    return None if ours is None or published is None else ours - published


# ---------------------------------------------------------------------------- the paper's numbers
# Read with getattr: the per-dataset tables of tools/paper_numbers.py may be absent (older checkouts).
def paper_base2new(method: str, dataset: str) -> tuple[float, float, float] | None:
    """(Base, New, HM) the paper reports for a method on one dataset."""
    return getattr(paper, "BASE2NEW", {}).get(_trainer(method), {}).get(dataset)


def paper_fewshot(method: str, dataset: str) -> dict[int, float]:
    """Accuracy per shot count the paper reports for a method on one dataset ({} if none)."""
    return getattr(paper, "FEWSHOT", {}).get(_trainer(method), {}).get(dataset) or {}


def paper_transfer(method: str, kind: str) -> tuple[dict[str, float], float | None]:
    """Per-dataset accuracies and the published target average of a method in the XD or DG table."""
    trainer = _trainer(method)
    table = getattr(paper, "XD" if kind == "xd" else "DG", {})
    averages = getattr(paper, "XD_AVERAGE" if kind == "xd" else "DG_AVERAGE", {})
    per_dataset = table.get(trainer)
    if per_dataset is None and kind == "dg" and trainer == "CasPL_ZS":
        boost = getattr(paper, "BOOST_ZS", {})  # CLIP + boosting prompts, zero-shot (appendix)
        by_trainer = bool(boost) and isinstance(next(iter(boost.values())), dict)
        per_dataset = boost.get(trainer) if by_trainer else boost
    average = averages.get(trainer) if isinstance(averages, dict) else None
    return dict(per_dataset or {}), average


def dg_average_targets(targets: list[str]) -> list[str]:
    """The DG targets the paper averages over (all targets of the table if the paper does not say)."""
    chosen = getattr(paper, "DG_AVERAGE_TARGETS", None)
    return [t for t in targets if t in chosen] if chosen else list(targets)


# ---------------------------------------------------------------------------- tables
@dataclass
class Table:
    """A titled table: headers and rows of Cells / floats / strings / None (gaps)."""

    title: str
    headers: list[str]
    rows: list[list[Any]]
    signed: set[int]  # columns printed with a sign (differences)
    notes: list[str]


def _b2n_shots(results: Results) -> int:
    """The shot count of the base-to-new runs (16 in the paper); the most common one if several."""
    shots = [k[3] for k in results.keys("b2n")]
    return max(set(shots), key=shots.count)


def base2new_tables(results: Results) -> list[Table]:
    """Per-dataset Base/New/HM of every method (with the paper's beside), and the average."""
    shots = _b2n_shots(results)
    datasets, methods = results.datasets("b2n"), results.methods("b2n")
    rows, with_paper = [], False
    for ds in datasets:
        for m in methods:
            base, new = (results.cell("b2n", r, ds, shots, m) for r in ("base", "new"))
            if base is None and new is None:
                continue
            seeds = "/".join(str(c.n if c else 0) for c in (base, new))
            hm = combine([base, new], "hm")
            pub = paper_base2new(m, ds)
            with_paper |= pub is not None
            pb, pn, ph = pub or (None, None, None)
            rows.append(
                [dataset_label(ds), method_label(m), base, new, hm, seeds, pb, pn, ph,
                 _diff(base, pb), _diff(new, pn), _diff(hm, ph)]
            )  # fmt: skip
    headers = ["Dataset", "Method", "Base", "New", "HM", "Seeds (base/new)"]
    paper_headers = ["Paper Base", "Paper New", "Paper HM", "Δ Base", "Δ New", "Δ HM"]
    detail = Table(
        f"Base-to-new generalization ({shots} shots; accuracy %, mean ± std over seeds)",
        headers + paper_headers if with_paper else headers,
        [r if with_paper else r[: len(headers)] for r in rows],
        {9, 10, 11},
        [],
    )
    complete_paper = tuple(sorted(datasets)) == tuple(sorted(paper.PAPER_DATASETS))
    avg_rows = []
    for m in methods:
        base = combine([results.cell("b2n", "base", ds, shots, m) for ds in datasets], "mean")
        new = combine([results.cell("b2n", "new", ds, shots, m) for ds in datasets], "mean")
        hm = combine([base, new], "hm")  # the paper's average HM: HM of the averages
        pub = paper.BASE2NEW_AVERAGE.get(_trainer(m)) if complete_paper else None
        pb, pn, ph = pub if pub else (None, None, None)
        avg_rows.append(
            [method_label(m), base, new, hm, pb, pn, ph, _diff(base, pb), _diff(new, pn), _diff(hm, ph)]
        )
    notes = [f"Average over {len(datasets)} dataset(s): {', '.join(map(dataset_label, datasets))}."]
    if not complete_paper:
        notes.append(
            "Published averages are over the paper's 11 datasets: shown only when this table has them."
        )
    average = Table(
        "Base-to-new generalization: average (HM of the average Base and New, as in the paper)",
        ["Method", "Base", "New", "HM", "Paper Base", "Paper New", "Paper HM", "Δ Base", "Δ New", "Δ HM"],
        avg_rows,
        {7, 8, 9},
        notes,
    )
    return [detail, average]


def _shot_headers(shots: list[int]) -> list[str]:
    return [f"{k} shot{'s' if k > 1 else ''}" for k in shots]


def _signed_row(values: list[float | None]) -> list[str | None]:
    """Differences preformatted with a sign (a row of a table whose other rows are not differences)."""
    return [None if d is None else f"{0.0 if abs(d) < 0.005 else d:+.2f}" for d in values]


def fewshot_tables(results: Results) -> list[Table]:
    """Accuracy per number of shots: per dataset (the paper's beside), and the average."""
    datasets, methods = results.datasets("fewshot"), results.methods("fewshot")
    shots = sorted({k[3] for k in results.keys("fewshot")})
    rows = []
    for ds in datasets:
        for m in methods:
            cells = [results.cell("fewshot", "all", ds, k, m) for k in shots]
            if all(c is None for c in cells):
                continue
            rows.append([dataset_label(ds), method_label(m), "ours", *cells])
            pub = paper_fewshot(m, ds)
            if pub:
                published = [pub.get(k) for k in shots]
                rows.append([dataset_label(ds), method_label(m), "paper", *published])
                rows.append([dataset_label(ds), method_label(m), "Δ", *_signed_row(
                    [_diff(c, p) for c, p in zip(cells, published)])])  # fmt: skip
    with_paper = any(r[2] != "ours" for r in rows)
    detail = Table(
        "Few-shot classification (accuracy %, mean ± std over seeds)",
        ["Dataset", "Method", *([""] if with_paper else []), *_shot_headers(shots)],
        [r if with_paper else r[:2] + r[3:] for r in rows],
        set(),
        [],
    )
    complete_paper = tuple(sorted(datasets)) == tuple(sorted(paper.PAPER_DATASETS))
    avg_rows = []
    for m in methods:
        ours = [combine([results.cell("fewshot", "all", ds, k, m) for ds in datasets], "mean") for k in shots]
        avg_rows.append([method_label(m), "ours", *ours])
        pub = paper.FEWSHOT_AVERAGE.get(_trainer(m)) if complete_paper else None
        if pub:
            published = [pub.get(k) for k in shots]
            avg_rows.append([method_label(m), "paper", *published])
            avg_rows.append(
                [method_label(m), "Δ", *_signed_row([_diff(o, p) for o, p in zip(ours, published)])]
            )
    notes = [f"Average over {len(datasets)} dataset(s): {', '.join(map(dataset_label, datasets))}."]
    if not complete_paper:
        notes.append(
            "Published averages are over the paper's 11 datasets: shown only when this table has them."
        )
    average = Table(
        "Few-shot classification: average over datasets",
        ["Method", "", *_shot_headers(shots)],
        avg_rows,
        set(),
        notes,
    )
    return [detail, average]


def transfer_table(results: Results, kind: str) -> Table | None:
    """Cross-dataset (kind "xd") or domain-generalization ("dg") table: source, targets, the paper's
    target average; per method our row, and the paper's numbers and the difference where it has them."""
    dg = set(paper.DG_TARGETS)
    targets = [ds for ds in results.datasets("xd", "target") if (ds in dg) == (kind == "dg")]
    if not targets:
        return None
    shots_all = [k[3] for k in results.keys("xd")]
    shots = max(set(shots_all), key=shots_all.count)
    sources = results.datasets("xd", "source")
    averaged = targets if kind == "xd" else dg_average_targets(targets)
    paper_targets = list(paper.XD_TARGETS) if kind == "xd" else list(getattr(paper, "DG_AVERAGE_TARGETS", ()))
    same_average = sorted(averaged) == sorted(paper_targets)
    methods = sorted(
        {k[4] for k in results.keys("xd", "target") if k[2] in targets}
        | {k[4] for k in results.keys("xd", "source")},
        key=_method_order,
    )
    rows = []
    for m in methods:
        src = [results.cell("xd", "source", ds, shots, m) for ds in sources]
        tgt = {ds: results.cell("xd", "target", ds, shots, m) for ds in targets}
        average = combine([tgt[ds] for ds in averaged], "mean")
        rows.append([method_label(m), "ours", *src, *tgt.values(), average])
        pub, pub_avg = paper_transfer(m, kind)
        if pub:
            published = [pub.get(ds) for ds in [*sources, *targets]]
            rows.append([method_label(m), "paper", *published, pub_avg])
            diffs = [_diff(c, p) for c, p in zip([*src, *tgt.values()], published)]
            rows.append(
                [
                    method_label(m),
                    "Δ",
                    *_signed_row([*diffs, _diff(average, pub_avg) if same_average else None]),
                ]
            )
    with_paper = any(r[1] != "ours" for r in rows)
    name = "Cross-dataset transfer" if kind == "xd" else "Domain generalization"
    left_out = [dataset_label(t) for t in targets if t not in averaged]
    notes = [f"Average over the {len(averaged)} target(s) {', '.join(map(dataset_label, averaged))}; a gap "
             "when one is missing."]  # fmt: skip
    if left_out:
        notes.append(f"{', '.join(left_out)}: shown, but not in the average (the paper does not average it).")
    if with_paper and not same_average:
        notes.append("The published average is over other targets than ours: no difference shown for it.")
    return Table(
        f"{name} (trained on the source with {shots} shots; accuracy %, mean ± std over seeds)",
        [
            "Method",
            *([""] if with_paper else []),
            *[f"{dataset_label(s)} (source)" for s in sources],
            *map(dataset_label, targets),
            "Average",
        ],
        [r if with_paper else r[:1] + r[2:] for r in rows],
        set(),
        notes,
    )


# ---------------------------------------------------------------------------- rendering
@dataclass
class SeedNotes:
    """What a table's cells say about their seeds: the most seeds of a cell, the cells with a far-off seed
    (row, column) and the notes (seed count first, one footnote per far-off seed)."""

    most: int
    far: set[tuple[int, int]]
    count_note: str
    footnotes: list[str]


def seed_notes(table: Table) -> SeedNotes:
    """ "†n" on cells from fewer seeds than the table's most; "‡" + a footnote for a seed far from the others
    (only on measured cells: an HM or an average inherits its inputs' seeds)."""
    cells = [(r, i, v) for r, row in enumerate(table.rows) for i, v in enumerate(row) if isinstance(v, Cell)]
    if not cells:
        return SeedNotes(0, set(), "", [])
    most = max(v.n for _, _, v in cells)
    fewer = any(v.n < most for _, _, v in cells)
    count = f"Cells: mean ± std over {most} seed(s)" + ("; †n: over n seeds only." if fewer else ".")
    far, footnotes = set(), []
    for r, i, value in cells:
        if value.mean_override is not None:
            continue
        for seed, v, mean, std in far_seeds(value.per_seed):
            labels = [c for c in table.rows[r][:i] if isinstance(c, str) and c not in ("ours", "paper", "Δ")]
            far.add((r, i))
            footnotes.append(
                f"‡ {' / '.join([*labels, table.headers[i]])}: {seed} = {v:.2f} is {abs(v - mean) / std:.1f} "
                f"std (the cell's {std:.2f}) from the mean of the other seeds, {mean:.2f}"
            )
    return SeedNotes(most, far, count, footnotes)


def render(table: Table, fmt: str) -> str:
    """One table as text: title, tabulate body, notes (seed count, the table's own, far-off seeds)."""
    seeds = seed_notes(table)
    gap = "--" if fmt.startswith("latex") else "–"

    def cell(r: int, i: int, v: Any) -> str:
        if v is None:
            return gap
        if isinstance(v, Cell):
            text = f"{v.mean:.2f}" if v.std is None else f"{v.mean:.2f} ± {v.std:.2f}"
            if v.n < seeds.most:
                text += f" †{v.n}"
            return text + (" ‡" if (r, i) in seeds.far else "")
        if isinstance(v, float):
            v = 0.0 if abs(v) < 0.005 else v  # no "-0.00"
            return f"{v:+.2f}" if i in table.signed else f"{v:.2f}"
        return str(v)

    body = [[cell(r, i, v) for i, v in enumerate(row)] for r, row in enumerate(table.rows)]
    # Numbers right-aligned, labels left (tabulate cannot tell: every cell is a preformatted string).
    align = [
        "right" if any(isinstance(r[i], float | Cell) or _signed_text(r[i]) for r in table.rows) else "left"
        for i in range(len(table.headers))
    ]
    headers = table.headers
    if fmt.startswith("latex"):
        body = [[c.replace("Δ", "Diff.") for c in row] for row in body]
        headers = [h.replace("Δ", "Diff.") for h in headers]
    tab_fmt = {"markdown": "github", "latex": "latex_booktabs"}.get(fmt, fmt)
    text = tabulate(body, headers=headers, tablefmt=tab_fmt, disable_numparse=True, colalign=align)
    comment = "%" if fmt.startswith("latex") else "#"
    lines = [f"{comment}{'#' if comment == '#' else ''} {table.title}", "", text, ""]
    notes = ([seeds.count_note] if seeds.count_note else []) + table.notes + seeds.footnotes
    lines += [f"{'% ' if comment == '%' else ''}{n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def _signed_text(value: Any) -> bool:
    """A preformatted difference such as "+1.23"."""
    return isinstance(value, str) and len(value) > 1 and value[0] in "+-" and value[1].isdigit()


def build_tables(results: Results, which: tuple[str, ...] = TABLES) -> list[Table]:
    """Every requested table that has data."""
    return [t for kind in which for t in tables_of(results, kind)]


def tables_of(results: Results, kind: str) -> list[Table]:
    """The tables of one kind (b2n, fewshot, xd, dg); [] when no run feeds them."""
    if kind == "b2n":
        return base2new_tables(results) if results.keys("b2n") else []
    if kind == "fewshot":
        return fewshot_tables(results) if results.keys("fewshot") else []
    table = transfer_table(results, kind)
    return [table] if table is not None else []


EMPTY_REASONS = {
    "b2n": "no results.json under base2new/{train_base,test_new}/<dataset>/shots_K/<trainer>/<config>/seedS",
    "fewshot": "no results.json under fewshot/<dataset>/shots_K/<trainer>/<config>/seedS",
    "xd": "no xd/test/<target>/... run on a cross-dataset target ("
    + ", ".join(paper.XD_TARGETS[:3])
    + ", ...)",
    "dg": "no xd/test/<target>/... run on a domain-generalization target ("
    + ", ".join(paper.DG_TARGETS)
    + ")",
}


# ---------------------------------------------------------------------------- plots
PAPER_STYLE = {"color": "0.55", "hatch": "//", "edgecolor": "0.3"}


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _hm_bars(results: Results, method: str, shots: int, out_dir: Path) -> Path:
    """HM per dataset and on average, ours (error bar: std over seeds) beside the paper's."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    datasets = results.datasets("b2n")
    ours = [
        combine([results.cell("b2n", r, ds, shots, method) for r in ("base", "new")], "hm") for ds in datasets
    ]
    bases = [results.cell("b2n", "base", ds, shots, method) for ds in datasets]
    news = [results.cell("b2n", "new", ds, shots, method) for ds in datasets]
    ours.append(combine([combine(bases, "mean"), combine(news, "mean")], "hm"))
    published = [(paper_base2new(method, ds) or (None, None, None))[2] for ds in datasets]
    complete_paper = tuple(sorted(datasets)) == tuple(sorted(paper.PAPER_DATASETS))
    avg = paper.BASE2NEW_AVERAGE.get(_trainer(method)) if complete_paper else None
    published.append(avg[2] if avg else None)
    labels = [*map(dataset_label, datasets), "Average"]
    x = list(range(len(labels)))
    nan = float("nan")
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(labels) + 1.5), 4.2))
    heights = [nan if c is None else c.mean for c in ours]
    errors = [0.0 if c is None or c.std is None else c.std for c in ours]
    width = 0.4 if any(p is not None for p in published) else 0.6
    shift = width / 2 if width == 0.4 else 0.0
    bars = ax.bar(
        [i - shift for i in x], heights, width, yerr=errors, capsize=3, label="ours (± std over seeds)"
    )
    ax.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.1f}" for h in heights], fontsize=6, padding=2)
    if width == 0.4:
        pub = [nan if p is None else p for p in published]
        pbars = ax.bar([i + shift for i in x], pub, width, label="paper", **PAPER_STYLE)
        ax.bar_label(pbars, labels=["" if math.isnan(h) else f"{h:.1f}" for h in pub], fontsize=6, padding=2)
    ax.set_xticks(x, labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_xlabel("dataset")
    ax.set_ylabel("HM of base and new accuracy (%)")
    ax.set_ylim(0, 110)
    ax.set_title(f"{method_label(method)}: base-to-new HM per dataset")
    ax.grid(axis="y", alpha=0.3)
    # Above the axes, never over the bars.
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.08), ncol=2, fontsize=8, frameon=False)
    safe = method.replace(" ", "_").replace("[", "").replace("]", "").replace("/", "-")
    return _save(fig, out_dir / f"base2new_hm_{safe}.png")


def save_plots(results: Results, out_dir: Path) -> list[Path]:
    """PNG plots: few-shot curves per dataset and on average (shaded std, the paper's dashed); HM per
    dataset per method (ours with error bars beside the paper's); Base/New/HM averages per method."""
    import matplotlib  # noqa: PLC0415 (only when plotting)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    nan = float("nan")
    if results.keys("fewshot"):
        datasets, methods = results.datasets("fewshot"), results.methods("fewshot")
        shots = sorted({k[3] for k in results.keys("fewshot")})
        curves = {
            ds: {m: [results.cell("fewshot", "all", ds, k, m) for k in shots] for m in methods}
            for ds in datasets
        }
        curves["average"] = {
            m: [combine([curves[ds][m][i] for ds in datasets], "mean") for i in range(len(shots))]
            for m in methods
        }
        complete_paper = tuple(sorted(datasets)) == tuple(sorted(paper.PAPER_DATASETS))
        for name, per_method in curves.items():
            fig, ax = plt.subplots(figsize=(5.5, 4.2))
            for m, cells in per_method.items():
                # NaN breaks the line: a missing run is a gap, never a zero.
                mean = [nan if c is None else c.mean for c in cells]
                std = [nan if c is None else (c.std or 0.0) for c in cells]
                (line,) = ax.plot(shots, mean, marker="o", label=method_label(m))
                ax.fill_between(shots, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)],
                                color=line.get_color(), alpha=0.2, linewidth=0)  # fmt: skip
                if name == "average":
                    pub = paper.FEWSHOT_AVERAGE.get(_trainer(m)) if complete_paper else None
                else:
                    pub = paper_fewshot(m, name)
                if pub:  # the shot counts the paper reports, joined (a dashed line with crosses)
                    known = [k for k in shots if pub.get(k) is not None]
                    ax.plot(known, [pub[k] for k in known], ls="--", marker="x", color=line.get_color(),
                            alpha=0.7, label=f"{method_label(m)} (paper)")  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_xticks(shots, [str(k) for k in shots])
            ax.minorticks_off()
            ax.set_xlabel("shots per class")
            ax.set_ylabel("accuracy (%)")
            ax.set_title("Average over datasets" if name == "average" else dataset_label(name))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="shaded: ± std over seeds",
                      title_fontsize=7)  # fmt: skip
            written.append(_save(fig, out_dir / f"fewshot_{name}.png"))
    if results.keys("b2n"):
        shots = _b2n_shots(results)
        datasets, methods = results.datasets("b2n"), results.methods("b2n")
        for m in methods:
            written.append(_hm_bars(results, m, shots, out_dir))
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(methods) + 1), 4.2))
        width = 0.27
        for j, label in enumerate(("Base", "New", "HM")):
            cells = []
            for m in methods:
                base = combine([results.cell("b2n", "base", ds, shots, m) for ds in datasets], "mean")
                new = combine([results.cell("b2n", "new", ds, shots, m) for ds in datasets], "mean")
                cells.append({"Base": base, "New": new, "HM": combine([base, new], "hm")}[label])
            heights = [nan if c is None else c.mean for c in cells]  # no bar for a gap
            errors = [0.0 if c is None or c.std is None else c.std for c in cells]
            bars = ax.bar([i + (j - 1) * width for i in range(len(methods))], heights, width, yerr=errors,
                          capsize=2, label=label)  # fmt: skip
            ax.bar_label(
                bars, labels=["" if math.isnan(h) else f"{h:.1f}" for h in heights], fontsize=6, padding=2
            )
        ax.set_xticks(range(len(methods)), [method_label(m) for m in methods], rotation=20, ha="right")
        ax.set_xlabel("method")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 110)
        ax.set_title(f"Base-to-new: average over {len(datasets)} dataset(s)", pad=22)
        # Above the axes, in one row: a legend inside the axes hid the last method's New bar.
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        written.append(_save(fig, out_dir / "base2new_bars.png"))
    return written


# ---------------------------------------------------------------------------- teachers (scripts/teachers.sh)
def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a JSON file ({err})") from err


def _mean(values: list[float | None]) -> float | None:
    """Mean of a complete list; a gap when any value is missing (an average must not hide a hole)."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def teacher_tables(root: Path) -> list[Table]:
    """Phase-1 runs grouped by teacher (held-out KL, from any boosting results.json under root) and the
    teacher ablation of scripts/teachers.sh: teacher -> Base / New / HM of its phase-2 trainer.

    Layout: <root>/teachers/<slug>/{train_base,test_new}/<dataset>/shots_K/<trainer>/<config>/seedS/results.json;
    the teacher's name is read from the slug's phase-1 results.json (<root>/teachers/<slug>/boost/...).
    """
    kd: dict[tuple[str, str], list[tuple[float | None, float]]] = defaultdict(list)
    for path in sorted(root.rglob("results.json")):
        record = _json(path)
        teacher = record.get("teacher")
        if isinstance(teacher, dict) and record.get("kd_heldout_after") is not None:
            kd[(str(teacher.get("name")), str(record.get("dataset")))].append(
                (record.get("kd_heldout_before"), record["kd_heldout_after"])  # before: None when resumed
            )
    tables = []
    if kd:
        rows = [
            [name, ds, _mean([b for b, _ in v]), _mean([a for _, a in v]), len(v)]
            for (name, ds), v in sorted(kd.items())
        ]
        tables.append(
            Table(
                "Phase 1 by teacher: held-out KL(teacher || student), mean over seeds",
                ["Teacher", "Dataset", "KL before", "KL after", "Seeds"],
                rows,
                set(),
                [],
            )
        )
    acc: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)  # (slug, role, dataset, method)
    names: dict[str, str] = {}
    for path in sorted((root / "teachers").glob("*/*/*/shots_*/*/*/seed*/results.json")):
        slug, role, dataset, _, trainer, config = path.relative_to(root / "teachers").parts[:6]
        if role in ("train_base", "test_new"):
            acc[(slug, "base" if role == "train_base" else "new", dataset, f"{trainer} [{config}]")].append(
                read_accuracy(path)
            )
    for path in sorted((root / "teachers").glob("*/boost/**/results.json")):
        teacher = _json(path).get("teacher")
        if isinstance(teacher, dict):
            names[path.relative_to(root / "teachers").parts[0]] = str(teacher.get("name"))
    if not acc:
        return tables
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    runs = sorted({(slug, method) for slug, _, _, method in mean})
    datasets = sorted({k[2] for k in mean}, key=_dataset_order)
    rows = []
    for slug, method in runs:
        base = _mean([mean.get((slug, "base", ds, method)) for ds in datasets])
        new = _mean([mean.get((slug, "new", ds, method)) for ds in datasets])
        rows.append([names.get(slug, slug), method_label(method), base, new, harmonic_mean(base, new)])
    tables.append(
        Table(
            "Teacher ablation: base-to-new with each teacher (accuracy %, mean over seeds and datasets)",
            ["Teacher", "Method", "Base", "New", "HM"],
            rows,
            set(),
            [f"Datasets: {', '.join(map(dataset_label, datasets))}; HM of the average Base and New."],
        )
    )
    return tables


def _print_teacher_tables(root: Path, fmt: str) -> int:
    """--teachers: print the teacher tables; 1 when there is nothing to show."""
    if not root.is_dir():
        print(f"tables: {root} is not a directory", file=sys.stderr)
        return 1
    try:
        tables = teacher_tables(root)
    except ValueError as err:
        print(f"tables: {err}", file=sys.stderr)
        return 1
    if not tables:
        print(
            f"tables: no phase-1 runs with a recorded teacher and no {root}/teachers/ runs", file=sys.stderr
        )
        return 1
    print("\n".join(render(t, fmt) for t in tables), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="output root of the sweeps (e.g. output/)")
    parser.add_argument(
        "--format", default="markdown", help="markdown (default), latex, or a tabulate format"
    )
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES), help="which tables")
    parser.add_argument(
        "--plots", type=Path, default=None, help="folder for the PNG plots (default ROOT/plots)"
    )
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("-o", "--output", type=Path, default=None, help="also write the tables to this file")
    parser.add_argument(
        "--teachers", action="store_true", help="only the teacher tables (scripts/teachers.sh)"
    )
    args = parser.parse_args(argv)
    if args.format not in ("markdown", "latex", *tabulate_formats):
        parser.error(f"--format {args.format!r}: use markdown, latex or one of {', '.join(tabulate_formats)}")
    if args.teachers:
        return _print_teacher_tables(args.root, args.format)
    try:
        runs = collect(args.root)
    except (FileNotFoundError, ValueError) as err:
        print(f"tables: {err}", file=sys.stderr)
        return 1
    if not runs:
        print(
            f"tables: no results.json under {args.root} in the sweep layout "
            "(base2new/{train_base,test_new}/, fewshot/, xd/{train,test}/ <dataset>/shots_K/<trainer>/<config>/seedS)",
            file=sys.stderr,
        )
        return 1
    results = Results(runs)
    built = []
    for kind in args.tables:
        found = tables_of(results, kind)
        if not found:
            print(f"tables: {kind}: empty, {EMPTY_REASONS[kind]} in {args.root}", file=sys.stderr)
        built += found
    if not built:
        print(f"tables: none of the requested tables ({' '.join(args.tables)}) has runs", file=sys.stderr)
        return 1
    text = "\n".join(render(t, args.format) for t in built)
    print(text, end="")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    if not args.no_plots:
        for path in save_plots(results, args.plots or args.root / "plots"):
            print(f"saved {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
