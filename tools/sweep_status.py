"""One table of every run a sweep expects: done (with its accuracy), running / queued (with its Slurm job
id), failed (with the last error line of its log), missing.

The runs are the sweep script's own plan (``scripts/<sweep>.sh`` asked for its plan only), for the settings
in the environment (TRAINER, DATASETS, SEEDS, CONFIG, SHOTS, BOOST_CONFIG, SOURCE: the same variables as
the scripts) or the flags below, so the table lists exactly the runs the sweep would run. Queued and running
jobs come from ``squeue`` (each job the scripts submit carries its run folder as its comment) when Slurm is
reachable. A run is done when its results.json exists; a run that is not done, has no live job and left a
console.txt or log.txt failed (or was stopped); a local run under way also shows as failed.

Usage: python tools/sweep_status.py OUT [--sweep base2new|xd|dg|fewshot ...] [--trainer T] [--datasets "a b"]
Exit code: 1 while any run failed, 0 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEPS = ("base2new", "xd", "dg", "fewshot")
# Flag -> the sweep scripts' environment variable.
SETTINGS = {
    "trainer": "TRAINER",
    "datasets": "DATASETS",
    "seeds": "SEEDS",
    "shots": "SHOTS",
    "config": "CONFIG",
    "boost_config": "BOOST_CONFIG",
    "source": "SOURCE",
}
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT"}
ERROR_LINE = re.compile(r"error|exception|traceback|cancelled|killed|out of memory|time limit|signal", re.I)


@dataclass
class Run:
    what: str
    folder: Path
    state: str = "missing"
    detail: str = ""


def planned_runs(sweep: str, out: Path, env: dict[str, str]) -> list[Run]:
    """The runs scripts/<sweep>.sh plans for these settings, in its order."""
    env = {**env, "OUT": str(out), "CASPL_PLAN_TSV": "1", "LAUNCHER": "local", "JOBS": "1", "GPU": ""}
    res = subprocess.run(
        ["bash", str(REPO / "scripts" / f"{sweep}.sh")], cwd=REPO, env=env, capture_output=True, text=True
    )
    if res.returncode != 0:
        raise SystemExit(f"sweep_status: scripts/{sweep}.sh could not plan its runs:\n{res.stderr.strip()}")
    runs = []
    for line in res.stdout.splitlines():
        what, folder, _after = line.split("\t")
        runs.append(Run(what, Path(folder)))
    return runs


def live_jobs() -> dict[str, tuple[str, str]]:
    """Run folder -> (job id, state) of this user's queued or running Slurm jobs; {} without Slurm."""
    if shutil.which("squeue") is None:
        return {}
    res = subprocess.run(
        ["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%T|%k"], capture_output=True, text=True
    )
    if res.returncode != 0:
        print(f"sweep_status: squeue failed, queued jobs not shown: {res.stderr.strip()}", file=sys.stderr)
        return {}
    jobs = {}
    for line in res.stdout.splitlines():
        job_id, state, comment = line.split("|", 2)
        if comment:
            jobs[comment] = (job_id, state)
    return jobs


def last_error_line(path: Path, max_chars: int = 160) -> str:
    """The last line of a log that looks like an error (else its last line), shortened."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return f"{path.name} is empty"
    errors = [line for line in lines if ERROR_LINE.search(line)]
    line = errors[-1] if errors else lines[-1]
    return line if len(line) <= max_chars else line[: max_chars - 3] + "..."


def classify(run: Run, jobs: dict[str, tuple[str, str]]) -> None:
    """Fill in the state and detail of one run from its folder and the live jobs."""
    results = run.folder / "results.json"
    if results.is_file():
        try:
            accuracy = json.loads(results.read_text())["metrics"]["accuracy"]
        except (ValueError, KeyError, TypeError) as err:
            run.state, run.detail = "failed", f"results.json unreadable ({err!r})"
            return
        run.state, run.detail = "done", f"{accuracy:.2f}"
        return
    if str(run.folder) in jobs:
        job_id, state = jobs[str(run.folder)]
        run.state = (
            "running" if state in RUNNING_STATES else "queued" if state == "PENDING" else state.lower()
        )
        run.detail = f"job {job_id}"
        return
    for name in ("console.txt", "log.txt"):
        if (run.folder / name).is_file():
            run.state, run.detail = "failed", last_error_line(run.folder / name)
            return


def render(runs: list[Run], out: Path) -> str:
    """The table, one row per run, then one line of counts."""

    def where(folder: Path) -> str:
        try:
            return str(folder.relative_to(out))
        except ValueError:
            return str(folder)

    rows = [("state", "result / job / error", "run", "folder")]
    rows += [(r.state, r.detail, r.what, where(r.folder)) for r in runs]
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ------")
    counts = {s: sum(r.state == s for r in runs) for s in ("done", "running", "queued", "failed", "missing")}
    other = len(runs) - sum(counts.values())
    summary = f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    if other:
        summary += f", {other} in another Slurm state"
    return "\n".join(line.rstrip() for line in lines) + "\n" + summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sweep_status.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="the sweep's output root (its OUT)")
    parser.add_argument(
        "--sweep", action="append", choices=SWEEPS, help="the sweep(s) to list (repeatable; default base2new)"
    )
    for flag, var in SETTINGS.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", help=f"as {var} of the scripts (default: ${var})")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    for flag, var in SETTINGS.items():
        if getattr(args, flag) is not None:
            env[var] = getattr(args, flag)
    out = args.out.resolve()
    runs: dict[Path, Run] = {}
    for sweep in args.sweep or ["base2new"]:
        for run in planned_runs(sweep, out, env):
            runs.setdefault(run.folder, run)  # a boosting run shared by two sweeps is listed once
    jobs = live_jobs()
    for run in runs.values():
        classify(run, jobs)
    print(render(list(runs.values()), out))
    return 1 if any(r.state == "failed" for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
