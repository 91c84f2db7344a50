"""`make demo` end to end (scripts/demo.sh, real runs, ~2-3 min on 2 CPU cores) in the micro world: zero-shot
student and teacher -> boosting -> CoOp, PromptSRC and their CasPL versions on the base classes ->
evaluated on base and new -> the table, quiet (one line per run)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tools.tables import harmonic_mean

pytestmark = pytest.mark.slow  # minutes: real runs

REPO = Path(__file__).resolve().parents[1]
RUN = "micro_world/shots_16/{trainer}/{config}/seed1"
# (trainer, config) of every base-to-new sweep of the demo and the row label of its method in the table
RUNS = (
    ("ZeroshotCLIP", "demo_micro_student", "CLIP [demo_micro_student]"),
    ("ZeroshotCLIP", "demo_micro_teacher", "CLIP [demo_micro_teacher]"),
    ("CasPL_ZS", "demo_micro", "CLIP+CasPL"),
    ("CoOp", "demo_micro", "CoOp"),
    ("CasPL_CoOp", "demo_micro", "CoOp+CasPL"),
    ("PromptSRC", "demo_micro", "PromptSRC"),
    ("CasPL_PromptSRC", "demo_micro", "PromptSRC+CasPL"),
)


def _demo(cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TRAINER", "CONFIG", "SEEDS", "GPU", "OPTS", "VERBOSE", "DEMO_PARALLEL")
    }
    clean.update(PYTHON=sys.executable, **env)
    return subprocess.run(
        ["bash", str(REPO / "scripts/demo.sh")], cwd=cwd, env=clean, capture_output=True, text=True
    )


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """Method label -> [Base, New, HM] of the per-dataset table the demo prints."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] == "micro_world":
            rows[cells[1]] = cells[2:5]
    return rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo run from outside the repository, with a relative OUT (taken from the caller's folder)."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    res = _demo(cwd, OUT="demo_out", DATA=str(cwd / "data"), DEMO_PARALLEL="1")  # two sweeps side by side
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return cwd / "demo_out", res.stdout


@pytest.mark.slow
def test_demo_prints_the_base_to_new_table_of_its_runs(demo):
    out, stdout = demo
    print(stdout[-2500:])
    rows = _table_rows(stdout)
    for trainer, config, label in RUNS:
        acc = {}
        for role, folder in (("base", "train_base"), ("new", "test_new")):
            run = RUN.format(trainer=trainer, config=config)
            record = json.loads((out / "base2new" / folder / run / "results.json").read_text())
            assert record["trainer"] == trainer and record["subsample"] == role
            acc[role] = record["metrics"]["accuracy"]
        expected = [
            f"{acc['base']:.2f}",
            f"{acc['new']:.2f}",
            f"{harmonic_mean(acc['base'], acc['new']):.2f}",
        ]
        assert rows[label] == expected, trainer
    # One progress line per run; the boosting run is made once and shared by the three CasPL trainers.
    assert len(re.findall(r" ok in \d", stdout)) == 15 and stdout.count("done already") == 2
    # Two sweeps side by side: their lines interleave, but each run's line is whole.
    assert all(re.match(r"\[\d/\d\] ", line) for line in stdout.splitlines() if " ok in " in line)
    assert (out / "base2new_table.md").read_text() in stdout
    # Quiet: no config dump or progress bar on the terminal, but each run's log keeps its full config.
    assert len(stdout.splitlines()) < 120 and "OPTIM:" not in stdout
    log = out / "base2new/train_base" / RUN.format(trainer="CoOp", config="demo_micro") / "log.txt"
    assert "OPTIM:" in log.read_text()


@pytest.mark.slow
def test_demo_boosts_then_cascades_the_boosting_prompts(demo):
    out, stdout = demo
    boost_dir = out / "boost/micro_world/demo_micro/seed1"
    payload = torch.load(boost_dir / "boost_prompts.pt", weights_only=True)  # plain tensors + metadata
    meta = payload["meta"]
    assert meta["student"]["backbone"] == "micro-student" and meta["teacher"]["name"] == "micro-teacher"
    assert len(payload["text"]) == len(payload["vision"]) == 3  # depth 3 of the student's 4 layers
    record = json.loads((boost_dir / "results.json").read_text())
    before, after = record["kd_heldout_before"], record["kd_heldout_after"]
    assert after < before / 2  # boosting brought the student towards the teacher (README: about 3x)
    assert f"held-out KL to the teacher {before:.4f} -> {after:.4f}" in stdout
    for trainer in ("CasPL_CoOp", "CasPL_PromptSRC"):
        for folder in ("train_base", "test_new"):
            run = RUN.format(trainer=trainer, config="demo_micro")
            log = (out / "base2new" / folder / run / "log.txt").read_text()
            assert f"Cascading boosting prompts from {boost_dir / 'boost_prompts.pt'}" in log
            assert re.search(r"\* accuracy: [\d.]+%", log)


@pytest.mark.slow
def test_demo_rerun_skips_every_finished_run(demo):
    out, stdout = demo
    res = _demo(out.parent, OUT=str(out), DATA=str(out.parent / "data"), DEMO_PARALLEL="0")
    assert res.returncode == 0, res.stderr
    assert " ok in " not in res.stdout and res.stdout.count("done already") == 17
    assert _table_rows(res.stdout) == _table_rows(stdout)


def _session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields after "(comm)": state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.slow
def test_ctrl_c_stops_the_sweeps_side_by_side_and_their_runs(tmp_path):
    """Background sweeps ignore SIGINT: the demo passes Ctrl-C on to them, and nothing is left running."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("TRAINER", "CONFIG", "SEEDS", "VERBOSE")}
    env.update(PYTHON=sys.executable, OUT=str(tmp_path / "out"), DEMO_PARALLEL="1")
    proc = subprocess.Popen(
        ["bash", str(REPO / "scripts/demo.sh")], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a terminal's Ctrl-C is not ignored
    )  # fmt: skip
    runs = tmp_path / "out/base2new/train_base/micro_world/shots_16/ZeroshotCLIP"
    deadline = time.monotonic() + 120
    while len(list(runs.glob("*/seed1/console.txt"))) < 2:  # both sweeps have a run under way
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    time.sleep(0.5)  # each sweep is waiting for its run (which needs seconds of imports before it can end)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "demo stopped by SIGINT" in err and err.count("SIGTERM: stopping the 1 run(s) under way") == 2, err
    assert "demo step 2/4" not in out  # nothing new started
    deadline = time.monotonic() + 10
    while _session_processes(proc.pid):
        assert time.monotonic() < deadline, _session_processes(proc.pid)
        time.sleep(0.1)
    assert not list(tmp_path.glob("out/base2new/*/micro_world/shots_16/ZeroshotCLIP/*/seed1/results.json"))
