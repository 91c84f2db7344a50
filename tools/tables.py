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
Numbers are the mean of metrics.accuracy over seeds. HM = 2BN/(B+N) per dataset; an average row is the
paper's: mean Base and mean New over the datasets of the table, and the HM of those two means. An average
is shown only for a method with every dataset of its table (a gap otherwise); the difference to the
published average only when the table holds exactly the paper's datasets. Missing runs are gaps.
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
        raise FileNotFoundError(f"tables: {root} is not a directory")
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


class Results:
    """Seed-averaged accuracies, indexed by (setting, role, dataset, shots, method)."""

    def __init__(self, runs: list[Run]) -> None:
        acc: dict[tuple, list[float]] = defaultdict(list)
        configs: dict[tuple[str, str], set[str]] = defaultdict(set)
        for run in runs:
            configs[(run.setting, run.trainer)].add(run.config)
        for run in runs:
            # A trainer run with several configs in one setting gets one method per config.
            several = len(configs[(run.setting, run.trainer)]) > 1
            method = f"{run.trainer} [{run.config}]" if several else run.trainer
            acc[(run.setting, run.role, run.dataset, run.shots, method)].append(run.accuracy)
        self.values = {k: sum(v) / len(v) for k, v in acc.items()}
        self.counts = {k: len(v) for k, v in acc.items()}

    def get(self, setting: str, role: str, dataset: str, shots: int, method: str) -> float | None:
        """The mean over seeds, or None (a gap)."""
        return self.values.get((setting, role, dataset, shots, method))

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


def _mean(values: list[float | None]) -> float | None:
    """Mean of a complete list; a gap when any value is missing (an average must not hide a hole)."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def _diff(ours: float | None, published: float | None) -> float | None:
    return None if ours is None or published is None else ours - published


@dataclass
class Table:
    """A titled table: headers and rows of floats / strings / None (gaps)."""

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
    """Per-dataset Base/New/HM of every method, and the average with the published numbers."""
    shots = _b2n_shots(results)
    datasets, methods = results.datasets("b2n"), results.methods("b2n")
    rows = []
    for ds in datasets:
        for m in methods:
            base, new = (results.get("b2n", r, ds, shots, m) for r in ("base", "new"))
            if base is None and new is None:
                continue
            seeds = "/".join(str(results.counts.get(("b2n", r, ds, shots, m), 0)) for r in ("base", "new"))
            rows.append([dataset_label(ds), method_label(m), base, new, harmonic_mean(base, new), seeds])
    detail = Table(
        f"Base-to-new generalization ({shots} shots; accuracy %, mean over seeds)",
        ["Dataset", "Method", "Base", "New", "HM", "Seeds (base/new)"],
        rows,
        set(),
        [],
    )
    complete_paper = tuple(sorted(datasets)) == tuple(sorted(paper.PAPER_DATASETS))
    avg_rows = []
    for m in methods:
        base = _mean([results.get("b2n", "base", ds, shots, m) for ds in datasets])
        new = _mean([results.get("b2n", "new", ds, shots, m) for ds in datasets])
        hm = harmonic_mean(base, new)  # the paper's average HM: HM of the averages
        pub = paper.BASE2NEW_AVERAGE.get(m.split(" [")[0]) if complete_paper else None
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


def fewshot_tables(results: Results) -> list[Table]:
    """Accuracy per number of shots: per dataset, and the average with the published numbers."""
    datasets, methods = results.datasets("fewshot"), results.methods("fewshot")
    shots = sorted({k[3] for k in results.keys("fewshot")})
    rows = []
    for ds in datasets:
        for m in methods:
            values = [results.get("fewshot", "all", ds, k, m) for k in shots]
            if any(v is not None for v in values):
                rows.append([dataset_label(ds), method_label(m), *values])
    detail = Table(
        "Few-shot classification (accuracy %, mean over seeds)",
        ["Dataset", "Method", *[f"{k} shot{'s' if k > 1 else ''}" for k in shots]],
        rows,
        set(),
        [],
    )
    complete_paper = tuple(sorted(datasets)) == tuple(sorted(paper.PAPER_DATASETS))
    avg_rows = []
    for m in methods:
        ours = [_mean([results.get("fewshot", "all", ds, k, m) for ds in datasets]) for k in shots]
        avg_rows.append([method_label(m), "ours", *ours])
        pub = paper.FEWSHOT_AVERAGE.get(m.split(" [")[0]) if complete_paper else None
        if pub:
            published = [pub.get(k) for k in shots]
            avg_rows.append([method_label(m), "paper", *published])
            diffs = [_diff(o, p) for o, p in zip(ours, published)]
            signed = [None if d is None else f"{0.0 if abs(d) < 0.005 else d:+.2f}" for d in diffs]
            avg_rows.append([method_label(m), "Δ", *signed])
    notes = [f"Average over {len(datasets)} dataset(s): {', '.join(map(dataset_label, datasets))}."]
    if not complete_paper:
        notes.append(
            "Published averages are over the paper's 11 datasets: shown only when this table has them."
        )
    average = Table(
        "Few-shot classification: average over datasets",
        ["Method", "", *[f"{k} shot{'s' if k > 1 else ''}" for k in shots]],
        avg_rows,
        set(),
        notes,
    )
    return [detail, average]


def transfer_table(results: Results, kind: str) -> Table | None:
    """Cross-dataset (kind "xd") or domain-generalization ("dg") table: source, targets, target average."""
    dg = set(paper.DG_TARGETS)
    targets = [ds for ds in results.datasets("xd", "target") if (ds in dg) == (kind == "dg")]
    if not targets:
        return None
    shots_all = [k[3] for k in results.keys("xd")]
    shots = max(set(shots_all), key=shots_all.count)
    sources = results.datasets("xd", "source")
    methods = sorted(
        {k[4] for k in results.keys("xd", "target") if k[2] in targets}
        | {k[4] for k in results.keys("xd", "source")},
        key=_method_order,
    )
    rows = []
    for m in methods:
        src = [results.get("xd", "source", ds, shots, m) for ds in sources]
        tgt = [results.get("xd", "target", ds, shots, m) for ds in targets]
        rows.append([method_label(m), *src, *tgt, _mean(tgt)])
    name = "Cross-dataset transfer" if kind == "xd" else "Domain generalization"
    return Table(
        f"{name} (trained on the source with {shots} shots; accuracy %, mean over seeds)",
        [
            "Method",
            *[f"{dataset_label(s)} (source)" for s in sources],
            *map(dataset_label, targets),
            "Average",
        ],
        rows,
        set(),
        [f"Average over the {len(targets)} target(s) of the table; a gap when a target is missing."],
    )


def render(table: Table, fmt: str) -> str:
    """One table as text: title, tabulate body, notes."""
    gap = "--" if fmt.startswith("latex") else "–"

    def cell(i: int, v: Any) -> str:
        if v is None:
            return gap
        if isinstance(v, float):
            v = 0.0 if abs(v) < 0.005 else v  # no "-0.00"
            return f"{v:+.2f}" if i in table.signed else f"{v:.2f}"
        return str(v)

    body = [[cell(i, v) for i, v in enumerate(row)] for row in table.rows]
    # Numbers right-aligned, labels left (tabulate cannot tell: every cell is a preformatted string).
    align = [
        "right" if any(isinstance(r[i], float) or _signed_text(r[i]) for r in table.rows) else "left"
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
    lines += [f"{'% ' if comment == '%' else ''}{n}" for n in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def _signed_text(value: Any) -> bool:
    """A preformatted difference such as "+1.23"."""
    return isinstance(value, str) and len(value) > 1 and value[0] in "+-" and value[1].isdigit()


def build_tables(results: Results, which: tuple[str, ...] = TABLES) -> list[Table]:
    """Every requested table that has data."""
    tables: list[Table] = []
    if "b2n" in which and results.keys("b2n"):
        tables += base2new_tables(results)
    if "fewshot" in which and results.keys("fewshot"):
        tables += fewshot_tables(results)
    for kind in ("xd", "dg"):
        if kind in which:
            table = transfer_table(results, kind)
            if table is not None:
                tables.append(table)
    return tables


def save_plots(results: Results, out_dir: Path) -> list[Path]:
    """PNG plots: few-shot curves per dataset and on average; Base/New/HM bars per method."""
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
            ds: {m: [results.get("fewshot", "all", ds, k, m) for k in shots] for m in methods}
            for ds in datasets
        }
        curves["average"] = {
            m: [_mean([curves[ds][m][i] for ds in datasets]) for i in range(len(shots))] for m in methods
        }
        for name, per_method in curves.items():
            fig, ax = plt.subplots(figsize=(5, 4))
            for m, values in per_method.items():
                # NaN breaks the line: a missing run is a gap, never a zero.
                ax.plot(shots, [nan if v is None else v for v in values], marker="o", label=method_label(m))
            if name == "average" and tuple(sorted(datasets)) == tuple(sorted(paper.PAPER_DATASETS)):
                for m in methods:
                    pub = paper.FEWSHOT_AVERAGE.get(m.split(" [")[0])
                    if pub:
                        ax.plot(shots, [pub.get(k, nan) for k in shots], ls="--", alpha=0.5,
                                label=f"{method_label(m)} (paper)")  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_xticks(shots, [str(k) for k in shots])
            ax.set_xlabel("shots per class")
            ax.set_ylabel("accuracy (%)")
            ax.set_title("Average over datasets" if name == "average" else dataset_label(name))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            path = out_dir / f"fewshot_{name}.png"
            fig.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
    if results.keys("b2n"):
        shots = _b2n_shots(results)
        datasets, methods = results.datasets("b2n"), results.methods("b2n")
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(methods)), 4))
        width = 0.27
        for j, label in enumerate(("Base", "New", "HM")):
            heights = []
            for m in methods:
                base = _mean([results.get("b2n", "base", ds, shots, m) for ds in datasets])
                new = _mean([results.get("b2n", "new", ds, shots, m) for ds in datasets])
                value = {"Base": base, "New": new, "HM": harmonic_mean(base, new)}[label]
                heights.append(nan if value is None else value)  # no bar for a gap
            bars = ax.bar([i + (j - 1) * width for i in range(len(methods))], heights, width, label=label)
            ax.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.1f}" for h in heights], fontsize=6)
        ax.set_xticks(range(len(methods)), [method_label(m) for m in methods], rotation=20, ha="right")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"Base-to-new: average over {len(datasets)} dataset(s)")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        path = out_dir / "base2new_bars.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


# ---------------------------------------------------------------------------- teachers (scripts/teachers.sh)
def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a JSON file ({err})") from err


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
    text = "\n".join(render(t, args.format) for t in build_tables(results, tuple(args.tables)))
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
