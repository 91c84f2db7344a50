"""tools/sweep_status.py: the plan of the sweep scripts, each run's state from its folder and squeue."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CFG = "vit_b16_ep50"  # CasPL_CoOp's base-to-new config (the authors')


def _status(out: Path, path: str, *flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG", "SHOTS", "OPTS", "SLURM_CONF")}
    env.update(PATH=path, TRAINER="CasPL_CoOp", DATASETS="dtd eurosat", SEEDS="1")
    return subprocess.run(
        [sys.executable, str(REPO / "tools/sweep_status.py"), str(out), *flags],
        env=env, capture_output=True, text=True, cwd=out.parent,
    )  # fmt: skip


def _rows(stdout: str) -> dict[str, list[str]]:
    rows = [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines()[2:-1]]
    return {cells[-1]: cells[:-1] for cells in rows}


def test_status_table_of_every_planned_run(tmp_path):
    out = tmp_path / "out"
    run = {
        "train_dtd": f"base2new/train_base/dtd/shots_16/CasPL_CoOp/{CFG}/seed1",
        "test_dtd": f"base2new/test_new/dtd/shots_16/CasPL_CoOp/{CFG}/seed1",
        "train_eurosat": f"base2new/train_base/eurosat/shots_16/CasPL_CoOp/{CFG}/seed1",
        "test_eurosat": f"base2new/test_new/eurosat/shots_16/CasPL_CoOp/{CFG}/seed1",
    }
    for key in ("train_dtd", "test_dtd", "train_eurosat"):
        (out / run[key]).mkdir(parents=True)
    (out / run["train_dtd"] / "results.json").write_text(json.dumps({"metrics": {"accuracy": 71.2345}}))
    (out / run["test_dtd"] / "console.txt").write_text(
        "== Slurm job 5 on node1 started\nTraceback (most recent call last):\n  File x\n"
        "ValueError: NUM_SHOTS must be positive\nbye\n"
    )
    (out / run["train_eurosat"] / "console.txt").write_text(
        "== Slurm job 7 on node1 started\nepoch [1/5]\nslurmstepd: error: *** JOB 7 ON node1 CANCELLED AT 2026 ***\n"
    )
    # A fake squeue: the eurosat test run is queued as job 9, the eurosat boosting run runs as job 4.
    boost_eurosat = _boost_folder(out, "eurosat")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"
    squeue.write_text(
        f"#!/bin/sh\necho '9|PENDING|{out / run['test_eurosat']}'\necho '4|RUNNING|{boost_eurosat}'\n"
        "echo '3|RUNNING|/somewhere/else'\n"
    )
    squeue.chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    res = _status(out, path)
    assert res.returncode == 1, res.stdout + res.stderr  # a run failed
    rows = _rows(res.stdout)
    assert rows[run["train_dtd"]][:2] == ["done", "71.23"]
    assert rows[run["test_dtd"]][:2] == ["failed", "ValueError: NUM_SHOTS must be positive"]
    assert rows[run["train_eurosat"]][0] == "failed" and "CANCELLED" in rows[run["train_eurosat"]][1]
    assert rows[run["test_eurosat"]][:2] == ["queued", "job 9"]
    assert rows[str(boost_eurosat.relative_to(out))][:2] == ["running", "job 4"]
    assert rows[str(_boost_folder(out, "dtd").relative_to(out))] == ["missing", "boost dtd seed1"]
    assert res.stdout.splitlines()[-1] == "6 runs: 1 done, 1 running, 1 queued, 2 failed, 1 missing"

    # Once the failed runs are finished, nothing failed: exit 0. Flags override the environment.
    for key in ("test_dtd", "train_eurosat"):
        (out / run[key] / "results.json").write_text(json.dumps({"metrics": {"accuracy": 50.0}}))
    res = _status(out, path)
    assert res.returncode == 0
    assert res.stdout.splitlines()[-1] == "6 runs: 3 done, 1 running, 1 queued, 0 failed, 1 missing"
    res = _status(out, path, "--trainer", "CoOp", "--datasets", "dtd")
    assert res.returncode == 0
    assert (
        res.stdout.splitlines()[-1] == "2 runs: 0 done, 0 running, 0 queued, 0 failed, 2 missing"
    )  # CoOp's own


def _boost_folder(out: Path, dataset: str) -> Path:
    """The boosting run folder the base-to-new plan has for the dataset (its config name is the plan's)."""
    plan = subprocess.run(
        ["bash", "scripts/base2new.sh"], cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "CASPL_PLAN_TSV": "1", "OUT": str(out), "TRAINER": "CasPL_CoOp", "DATASETS": dataset,
             "SEEDS": "1"},
    )  # fmt: skip
    return Path(plan.stdout.splitlines()[0].split("\t")[1])


def test_status_names_the_sweep_script_error(tmp_path):
    res = _status(tmp_path / "out", os.environ["PATH"], "--sweep", "fewshot", "--trainer", "CasPL_Boost")
    assert res.returncode != 0 and "scripts/fewshot.sh could not plan its runs" in res.stderr
    assert "phase 1 only" in res.stderr
