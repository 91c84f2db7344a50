"""LAUNCHER=slurm against a real Slurm: a one-node cluster on this machine (tests/slurm/start.sh), a tiny
CasPL base-to-new sweep on Synthetic (boost -> train base -> test new) submitted as Slurm jobs.

Checked: the results equal the local launcher's; each job started after the run it needs had written its
results.json (boost_prompts.pt included); a resubmission while the jobs are queued and after they finished
submits nothing; a job killed with scancel shows as failed in tools/sweep_status.py (exit 1) and the next
submission redoes it. When Slurm cannot start, the test fails with the daemons' logs.
"""

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNS = {  # run -> its folder under OUT, in the sweep's order (each needs the one before)
    "boost": "boost/synthetic/demo_tiny/seed1",
    "train": "base2new/train_base/synthetic/shots_16/CasPL_PromptSRC/demo_tiny/seed1",
    "test": "base2new/test_new/synthetic/shots_16/CasPL_PromptSRC/demo_tiny/seed1",
}
TIMEOUT_S = 600  # a ceiling for the waits on a heavily loaded machine, not the expected time

pytestmark = pytest.mark.slow


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """SLURM_CONF of a running one-node cluster; stopped after the module."""
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_TEST_PORT": str(_free_port_pair())}
    res = subprocess.run(
        ["bash", str(REPO / "tests/slurm/start.sh"), str(state)], env=env, capture_output=True, text=True
    )
    if res.returncode != 0:
        subprocess.run(["bash", str(REPO / "tests/slurm/stop.sh"), str(state)], capture_output=True)
        pytest.fail(f"Slurm did not start (tests/slurm/start.sh):\n{res.stdout}\n{res.stderr}", pytrace=False)
    yield str(state / "slurm.conf")
    # Jobs still queued or running (a failed test) end with the cluster: their processes too.
    env["SLURM_CONF"] = str(state / "slurm.conf")
    subprocess.run(["scancel", "--user", getpass.getuser()], env=env, capture_output=True)
    _wait_for(lambda: not _jobs(env), 30)
    subprocess.run(["bash", str(REPO / "tests/slurm/stop.sh"), str(state)], capture_output=True)


def _env(out: Path, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GPU", "JOBS", "CONFIG", "OPTS", "BOOST_OPTS")}
    env.update(
        TRAINER="CasPL_PromptSRC",
        CONFIG="configs/trainers/CasPL_PromptSRC/demo_tiny.yaml",
        BOOST_CONFIG="configs/trainers/CasPL_Boost/demo_tiny.yaml",
        DATASETS="synthetic",
        SEEDS="1",
        DATA=str(data),
        OUT=str(out),
        OPTS="OPTIM.MAX_EPOCH 1",  # seconds per run: the test is about the jobs, not the training
        PYTHON=sys.executable,
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


def _sweep(env: dict[str, str]) -> subprocess.CompletedProcess:
    res = subprocess.run(["bash", "scripts/base2new.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _status(env: dict[str, str], out: Path) -> tuple[int, dict[str, tuple[str, str]]]:
    """Exit code of tools/sweep_status.py and run folder -> (state, detail) of its table."""
    res = subprocess.run(
        [sys.executable, "tools/sweep_status.py", str(out)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert res.returncode in (0, 1), res.stdout + res.stderr
    rows = {}
    for line in res.stdout.splitlines()[2:-1]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[-1]] = (cells[0], cells[1] if len(cells) == 4 else "")
    return res.returncode, rows


def _jobs(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Run folder -> (job id, state) of the queued / running jobs."""
    res = subprocess.run(
        ["squeue", "-h", "-o", "%i|%T|%k"], env=env, capture_output=True, text=True, check=True
    )
    return {line.split("|")[2]: tuple(line.split("|")[:2]) for line in res.stdout.splitlines()}


def _wait_for(condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.3)
    return True


def _wait(condition, what: str, deadline: float, logs: Path) -> None:
    while not condition():
        if time.monotonic() > deadline:
            tails = [f"---- {p}\n{p.read_text()[-1500:]}" for p in sorted(logs.rglob("console.txt"))]
            pytest.fail(f"timed out waiting for {what}\n" + "\n".join(tails))
        time.sleep(0.3)


def _job_start(run_dir: Path) -> float:
    """The start time the job script wrote at the top of its console.txt (epoch seconds)."""
    first = (run_dir / "console.txt").read_text().splitlines()[0]
    stamp = re.search(r"started (\S+)Z$", first).group(1)[:26]  # microseconds: what fromisoformat reads
    return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()


def test_slurm_sweep_matches_local_honours_dependencies_dedupes_and_redoes_killed_jobs(
    cluster, tmp_path, data_root
):
    deadline = time.monotonic() + TIMEOUT_S
    local_out, out = tmp_path / "local", tmp_path / "slurm"
    # The local launcher's reference runs, side by side with the Slurm jobs (the node has the CPUs).
    local = subprocess.Popen(
        ["bash", "scripts/base2new.sh"], cwd=REPO, env=_env(local_out, data_root), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        env = _env(out, data_root, LAUNCHER="slurm", SLURM_GPUS_PER_JOB="0", SLURM_CONF=cluster)
        first = _sweep(env)
        assert first.stdout.count("submitted as job") == 3 and "(after job" in first.stdout
        queued = _jobs(env)
        assert set(queued) == {str(out / d) for d in RUNS.values()}

        # Resubmitting while the jobs are queued or running submits nothing.
        again = _sweep(env)
        assert "0 jobs submitted, 3 queued or running already" in again.stdout
        assert {k: v[0] for k, v in _jobs(env).items()} == {k: v[0] for k, v in queued.items()}

        # Kill the training job once it runs: failed in the status table (its dependent is cancelled by Slurm).
        train_dir = str(out / RUNS["train"])
        _wait(
            lambda: _jobs(env).get(train_dir, ("", ""))[1] == "RUNNING",
            "the training job to run",
            deadline,
            out,
        )
        _wait(
            lambda: (out / RUNS["train"] / "console.txt").is_file(),
            "the training job's console",
            deadline,
            out,
        )
        subprocess.run(["scancel", queued[train_dir][0]], env=env, check=True)
        _wait(lambda: not _jobs(env), "the cancelled jobs to leave the queue", deadline, out)
        rc, rows = _status(env, out)
        assert rc == 1
        assert rows[RUNS["boost"]][0] == "done" and rows[RUNS["test"]] == ("missing", "")
        assert rows[RUNS["train"]][0] == "failed" and "CANCELLED" in rows[RUNS["train"]][1]

        # The next submission redoes the killed run and its dependent, not the finished boosting run.
        redo = _sweep(env)
        assert "boost synthetic seed1: done already" in redo.stdout
        assert redo.stdout.count("submitted as job") == 2
        _wait(lambda: not _jobs(env), "the resubmitted jobs", deadline, out)
        rc, rows = _status(env, out)
        assert rc == 0 and [s for s, _ in rows.values()] == ["done"] * 3, rows
        final = _sweep(env)
        assert "0 jobs submitted, 0 queued or running already, 3 done" in final.stdout and not _jobs(env)

        # Dependencies held: each job started after the run it needs had written results.json (written last;
        # boost_prompts.pt before it).
        for before, after in (("boost", "train"), ("train", "test")):
            ready = (out / RUNS[before] / "results.json").stat().st_mtime
            assert _job_start(out / RUNS[after]) >= ready, (before, after)
        assert (out / RUNS["boost"] / "boost_prompts.pt").stat().st_mtime <= _job_start(out / RUNS["train"])

        # The same results as the local launcher.
        assert local.wait(timeout=max(1, deadline - time.monotonic())) == 0, local.stdout.read()
        for name, folder in RUNS.items():
            ours = json.loads((out / folder / "results.json").read_text())
            reference = json.loads((local_out / folder / "results.json").read_text())
            assert ours["metrics"] == reference["metrics"], name
            assert ours["metrics"]["accuracy"] >= 0 and ours["trainer"] == reference["trainer"]
    finally:
        if local.poll() is None:  # a failed test: stop the local sweep and its run (it forwards SIGTERM)
            local.terminate()
            local.wait(timeout=60)


def test_start_script_fails_with_the_daemon_log_when_slurm_cannot_start(tmp_path):
    """A port already taken: slurmctld cannot listen; start.sh exits 1 and shows the daemons' logs."""
    if shutil.which("slurmctld") is None and not Path("/usr/sbin/slurmctld").exists():
        pytest.fail("Slurm is not installed (Debian: apt-get install slurm-wlm munge)")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        env = {**os.environ, "SLURM_TEST_PORT": str(busy.getsockname()[1]), "SLURM_TEST_TIMEOUT": "5"}
        res = subprocess.run(
            ["bash", str(REPO / "tests/slurm/start.sh"), str(tmp_path / "s")], env=env, capture_output=True,
            text=True,
        )  # fmt: skip
        subprocess.run(["bash", str(REPO / "tests/slurm/stop.sh"), str(tmp_path / "s")], capture_output=True)
    assert res.returncode == 1
    assert "slurmctld.log" in res.stderr and "ERROR:" in res.stderr
