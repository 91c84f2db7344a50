"""`make demo` end to end (scripts/demo.sh, real runs, ~1-2 min on 2 CPU cores): boosting on Synthetic ->
PromptSRC and CasPL_PromptSRC trained on the base classes -> evaluated on base and new -> the table."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tools.tables import harmonic_mean, method_label

REPO = Path(__file__).resolve().parents[1]
RUN = "synthetic/shots_16/{trainer}/demo_tiny/seed1"
TRAINERS = ("ZeroshotCLIP", "CasPL_ZS", "PromptSRC", "CasPL_PromptSRC")


def _demo(cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TRAINER", "CONFIG", "SEEDS", "GPU", "OPTS")}
    clean.update(PYTHON=sys.executable, **env)
    return subprocess.run(
        ["bash", str(REPO / "scripts/demo.sh")], cwd=cwd, env=clean, capture_output=True, text=True
    )


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """Method label -> [Base, New, HM] of the per-dataset table the demo prints."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] == "Synthetic":
            rows[cells[1]] = cells[2:5]
    return rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo run from outside the repository, with a relative OUT (taken from the caller's folder)."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    res = _demo(cwd, OUT="demo_out", DATA=str(cwd / "data"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return cwd / "demo_out", res.stdout


@pytest.mark.slow
def test_demo_prints_the_base_to_new_table_of_its_runs(demo):
    out, stdout = demo
    print(stdout[-2500:])
    rows = _table_rows(stdout)
    for trainer in TRAINERS:
        acc = {}
        for role, folder in (("base", "train_base"), ("new", "test_new")):
            record = json.loads(
                (out / "base2new" / folder / RUN.format(trainer=trainer) / "results.json").read_text()
            )
            assert record["trainer"] == trainer and record["subsample"] == role
            acc[role] = record["metrics"]["accuracy"]
        expected = [
            f"{acc['base']:.2f}",
            f"{acc['new']:.2f}",
            f"{harmonic_mean(acc['base'], acc['new']):.2f}",
        ]
        assert rows[method_label(trainer)] == expected, trainer
    assert {"PromptSRC", "PromptSRC+CasPL"} <= set(rows)
    # One progress line per run; the boosting run is made once and shared by CasPL_ZS and CasPL_PromptSRC.
    assert len(re.findall(r"\.\.\. ok in \d", stdout)) == 9 and stdout.count("done already") == 1
    assert (out / "base2new_table.md").read_text() in stdout


@pytest.mark.slow
def test_demo_boosts_then_cascades_the_boosting_prompts(demo):
    from caspl.vlm.tiny import TINY_SPECS

    out, stdout = demo
    boost_dir = out / "boost/synthetic/demo_tiny/seed1"
    payload = torch.load(boost_dir / "boost_prompts.pt", weights_only=True)  # plain tensors + metadata
    meta = payload["meta"]
    assert meta["student"]["backbone"] == "tiny-vit" and meta["teacher"]["name"] == "small-vit"
    spec = TINY_SPECS["tiny-vit"]
    assert 0 < len(payload["text"]) <= spec.transformer_layers
    assert 0 < len(payload["vision"]) <= spec.vision_layers
    record = json.loads((boost_dir / "results.json").read_text())
    before, after = record["kd_heldout_before"], record["kd_heldout_after"]
    assert after < before  # boosting moved the student towards the teacher
    assert f"held-out KL to the teacher {before:.4f} -> {after:.4f}" in stdout
    for folder in ("train_base", "test_new"):
        log = (out / "base2new" / folder / RUN.format(trainer="CasPL_PromptSRC") / "log.txt").read_text()
        assert f"Cascading boosting prompts from {boost_dir / 'boost_prompts.pt'}" in log
        assert re.search(r"\* accuracy: [\d.]+%", log)


@pytest.mark.slow
def test_demo_rerun_skips_every_finished_run(demo):
    out, stdout = demo
    res = _demo(out.parent, OUT=str(out), DATA=str(out.parent / "data"))
    assert res.returncode == 0, res.stderr
    assert " ok in " not in res.stdout and res.stdout.count("done already") == 10
    assert _table_rows(res.stdout) == _table_rows(stdout)
