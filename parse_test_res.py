"""Mean and std over seeds of the test results in log.txt files (the CoOp family's parse_test_res.py CLI).

A directory of runs, one folder per seed, each with the log.txt our engine writes (Dassl's lines):

    output/base2new/train_base/dtd/shots_16/CasPL_PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx/
        seed1/log.txt  seed2/log.txt  seed3/log.txt

    python parse_test_res.py output/base2new/train_base/dtd/shots_16/CasPL_PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx
    python parse_test_res.py output/base2new/test_new/dtd/... --test-log   # evaluation-only runs
    python parse_test_res.py output/fewshot/dtd/shots_16/CoOp --multi-exp   # one experiment per sub-folder
    --ci95 prints the 95% confidence interval instead of the standard deviation.

The result lines after the end signal count ("Finish training" for training runs; "=> result" with
--test-log), so the per-epoch validation results printed before it are ignored; when several results follow
it, the last one counts. Exit status 1 when no result is found.
"""

import argparse
import math
import re
import sys
from collections import OrderedDict
from pathlib import Path

METRICS = OrderedDict(
    (name, re.compile(rf"^\* {name}: ([-+.\deE]+)%")) for name in ("accuracy", "error", "macro_f1")
)
TRAIN_END = ("Finish training", "Finished training")  # Dassl's line; older Dassl versions said "Finished"
TEST_END = ("=> result",)


class NoResultsError(RuntimeError):
    """No log.txt under a directory holds a final result."""


def compute_ci95(values: list[float]) -> float:
    """Half-width of the 95% normal confidence interval of the mean (CoOp's formula)."""
    return 1.96 * _std(values) / math.sqrt(len(values))


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))  # population std, as np.std


def parse_log(path: Path, end_signals: tuple[str, ...]) -> dict[str, float]:
    """The metrics printed after the first end signal in one log file ({} when the run has none)."""
    found: dict[str, float] = {}
    started = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.strip()
            if line in end_signals:
                started = True
            if not started:
                continue
            for name, regex in METRICS.items():
                match = regex.search(line)
                if match:
                    found[name] = float(match.group(1))
    return found


def run_logs(directory: Path) -> list[Path]:
    """The log.txt of each run: directory/log.txt itself, else one per sub-folder (sorted, hidden skipped)."""
    if not directory.is_dir():
        raise FileNotFoundError(f"parse_test_res: {directory} is not a directory")
    if (directory / "log.txt").is_file():
        return [directory / "log.txt"]
    subdirs = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [str(p) for p in subdirs if not (p / "log.txt").is_file()]
    if missing:
        raise FileNotFoundError(
            f"parse_test_res: no log.txt in {', '.join(missing)} (expected <run>/log.txt)"
        )
    return [p / "log.txt" for p in subdirs]


def parse_directory(directory: Path, end_signals: tuple[str, ...], ci95: bool = False) -> dict[str, float]:
    """Print each run's metrics and their mean +- std (or ci95) over runs; returns the means."""
    print(f"Parsing files in {directory}")
    per_metric: dict[str, list[float]] = OrderedDict()
    for path in run_logs(directory):
        result = parse_log(path, end_signals)
        if not result:
            print(
                f"file: {path}. no result after '{end_signals[0]}' (unfinished run? evaluation-only logs "
                "need --test-log), skipped"
            )
            continue
        print(f"file: {path}. " + " ".join(f"{k}: {v:.2f}%." for k, v in result.items()))
        for key, value in result.items():
            per_metric.setdefault(key, []).append(value)
    if not per_metric:
        raise NoResultsError(f"Nothing found in {directory}")
    means: dict[str, float] = OrderedDict()
    print("===")
    print(f"Summary of directory: {directory}")
    for key, values in per_metric.items():
        mean = sum(values) / len(values)
        spread = compute_ci95(values) if ci95 else _std(values)
        print(f"* {key}: {mean:.2f}% +- {spread:.2f}%")
        means[key] = mean
    print("===")
    return means


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="folder of runs (seed1/, seed2/, ...) or of experiments")
    parser.add_argument("--ci95", action="store_true", help="95%% confidence interval instead of std")
    parser.add_argument("--test-log", action="store_true", help="parse evaluation-only logs")
    parser.add_argument("--multi-exp", action="store_true", help="one experiment per sub-folder")
    args = parser.parse_args(argv)
    end_signals = TEST_END if args.test_log else TRAIN_END
    try:
        if not args.multi_exp:
            parse_directory(args.directory, end_signals, args.ci95)
            return 0
        if not args.directory.is_dir():
            raise FileNotFoundError(f"parse_test_res: {args.directory} is not a directory")
        averages: dict[str, list[float]] = OrderedDict()
        for exp in sorted(p for p in args.directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for key, value in parse_directory(exp, end_signals, args.ci95).items():
                averages.setdefault(key, []).append(value)
        if not averages:
            raise NoResultsError(f"Nothing found in {args.directory}")
        print("Average performance")
        for key, values in averages.items():
            print(f"* {key}: {sum(values) / len(values):.2f}%")
        return 0
    except (FileNotFoundError, NoResultsError) as err:
        print(err, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
