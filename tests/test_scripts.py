"""The sweep scripts: DRY_RUN plans, skip-finished re-runs after a kill, stop on failure, config checks.

The scripts run from a copy of scripts/ in a temporary repository with empty config files, and PYTHON is a
fake train.py that records its arguments and writes what a run leaves behind, so a sweep takes
milliseconds.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ELEVEN = "imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
B2N_CFG = "vit_b16_c2_ep20_batch4_8+8ctx_l12"  # the authors' CasPL_PromptSRC (base-to-new)
XD_CFG = "vit_b16_c2_ep20_batch4_8+8ctx_cross_datasets_l3"  # theirs for cross-dataset / DG
BOOST_CFG = "vit_b16_l14_ep20_8+8ctx_l12"  # the authors' phase 1, the default BOOST_CONFIG
XD_BOOST_CFG = "vit_b16_l14_ep20_batch128_4+4ctx_l3"  # theirs for a 3-layer cross-dataset phase 2
CASPL_B2N = "vit_b16_c2_ep20_batch4_8+8ctx_l12"  # the authors' CasPL_PromptSRC configs
CASPL_XD = "vit_b16_c2_ep20_batch4_8+8ctx_cross_datasets_l3"
CASPL_FEWSHOT = "vit_b16_c2_ep50_batch4_8+8ctx_few_shot_l12"
TINY = 'MODEL.BACKBONE.NAME tiny-vit INPUT.SIZE "(32, 32)"'

FAKE_TRAIN = r"""#!/usr/bin/env bash
# Fake `python train.py ...`: record the call, then leave what a finished run leaves.
echo "$*" >> "$FAKE_CALLS"
printf '%q ' "$@" >> "$FAKE_CALLS.argv" && echo >> "$FAKE_CALLS.argv"  # exact words, for shlex.split
n=$(wc -l < "$FAKE_CALLS")
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --output-dir) out="${args[$((i + 1))]}" ;;
        --trainer) trainer="${args[$((i + 1))]}" ;;
    esac
done
mkdir -p "$out"
echo "started" > "$out/log.txt"
echo "${CUDA_VISIBLE_DEVICES:-none}" >> "$FAKE_CALLS.gpu"
# What a run needs must be finished before it starts (parallel sweeps order runs by these).
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --model-dir) [ -f "${args[$((i + 1))]}/results.json" ] || { echo "model not trained"; exit 5; } ;;
        TRAINER.CASPL.BOOST_PROMPTS) [ -f "${args[$((i + 1))]}" ] || { echo "no boost prompts"; exit 5; } ;;
    esac
done
if [ "${FAKE_KILL_AT:-0}" = "$n" ]; then kill -9 0; fi  # the whole sweep dies mid-run
if [ "${FAKE_FAIL_AT:-0}" = "$n" ]; then echo "Traceback: boom"; exit 3; fi
if [ -n "${FAKE_FAIL_MATCH:-}" ] && [[ "$out" == *"$FAKE_FAIL_MATCH"* ]]; then echo "boom"; exit 3; fi
echo "start $out" >> "$FAKE_CALLS.events"
echo "$$" >> "$FAKE_CALLS.pids"
# Like torchrun with its workers: a child process, stopped with the run when the run gets SIGTERM.
sleep "${FAKE_SLEEP:-0}" &
child=$!
trap 'kill $child; wait $child; exit 143' TERM
echo "$child" >> "$FAKE_CALLS.pids"  # after the trap: a test signals once both pids are written
wait $child
if [ "$trainer" = CasPL_Boost ]; then echo tensors > "$out/boost_prompts.pt"; fi
echo '{"metrics": {"accuracy": 50.0}}' > "$out/results.json"
echo "end $out" >> "$FAKE_CALLS.events"
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository copy with the scripts, every dataset config and the trainer configs the tests use."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts")
    shutil.copytree(REPO / "trainers", root / "trainers")  # the sweep reads the registered trainer names
    (tmp_path / "data").mkdir()
    datasets = ELEVEN.split() + ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r", "synthetic"]
    for name in datasets:
        (root / "configs/datasets").mkdir(parents=True, exist_ok=True)
        (root / f"configs/datasets/{name}.yaml").write_text("DATASET:\n  NAME: X\n")
    trainer_cfgs = {
        "CasPL_Boost": [BOOST_CFG, XD_BOOST_CFG],
        "CasPL_PromptSRC": [CASPL_B2N, CASPL_XD, CASPL_FEWSHOT],
        "CasPL_CoOp": ["vit_b16_ep50"],
        "CoOp": ["vit_b16_ctxv1", "vit_b16", "vit_b16_ep50_ctxv1"],
    }
    for trainer, names in trainer_cfgs.items():
        (root / f"configs/trainers/{trainer}").mkdir(parents=True)
        for name in names:
            (root / f"configs/trainers/{trainer}/{name}.yaml").write_text("OPTIM:\n  MAX_EPOCH: 1\n")
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_TRAIN)
    fake.chmod(0o755)
    return root


def sweep(repo: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    """Run scripts/<script> from the repository root with the given environment."""
    full = {k: v for k, v in os.environ.items() if k not in ("GPU", "OPTS", "CONFIG", "DATASETS", "SEEDS")}
    full.update(
        PYTHON=str(repo.parent / "fake_python"),
        FAKE_CALLS=str(repo.parent / "calls.txt"),
        OUT=str(repo.parent / "out"),
        DATA=str(repo.parent / "data"),
    )
    full.update(env)
    # A session of its own: the fake's `kill -9 0` ends the sweep, not pytest.
    return subprocess.run(
        ["bash", f"scripts/{script}"],
        cwd=repo,
        env=full,
        capture_output=True,
        text=True,
        start_new_session=True,
    )


def planned(stdout: str) -> list[tuple[str, str, list[str]]]:
    """(what, output dir, argv) of each run a DRY_RUN prints."""
    lines = stdout.splitlines()
    runs = []
    for i, line in enumerate(lines):
        match = re.match(r"^\[(\d+)/(\d+)\] (.+) -> (\S+)$", line)
        if match:
            runs.append((match.group(3), match.group(4), shlex.split(lines[i + 1])))
    return runs


def calls(repo: Path) -> list[str]:
    path = repo.parent / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_base2new_dry_run_lists_boost_train_and_test_commands(repo):
    res = sweep(
        repo,
        "base2new.sh",
        DRY_RUN="1",
        DATASETS="dtd eurosat",
        SEEDS="1 2",
        OPTS=TINY,
        GPU="3",
        BOOST_SEEDS="each",
    )
    assert res.returncode == 0, res.stderr
    runs = planned(res.stdout)
    out, data = repo.parent / "out", repo.parent / "data"
    assert len(runs) == 12 and "[12/12]" in res.stdout
    whats = [r[0] for r in runs]
    assert whats[:3] == [
        "boost dtd seed1", "train base dtd seed1 CasPL_PromptSRC", "test new dtd seed1 CasPL_PromptSRC",
    ]  # fmt: skip
    boost_dir = out / f"boost/eurosat/{BOOST_CFG}/seed2"
    train_dir = out / f"base2new/train_base/eurosat/shots_16/CasPL_PromptSRC/{CASPL_B2N}/seed2"
    test_dir = out / f"base2new/test_new/eurosat/shots_16/CasPL_PromptSRC/{CASPL_B2N}/seed2"
    by_dir = {Path(r[1]): r[2] for r in runs}
    common = ["--root", str(data), "--seed", "2"]
    ds_cfg = ["--dataset-config-file", "configs/datasets/eurosat.yaml"]
    tiny = ["MODEL.BACKBONE.NAME", "tiny-vit", "INPUT.SIZE", "(32, 32)"]
    fake = str(repo.parent / "fake_python")
    assert by_dir[boost_dir] == [
        "CUDA_VISIBLE_DEVICES=3", fake, "train.py", *common, "--trainer", "CasPL_Boost", *ds_cfg,
        "--config-file", f"configs/trainers/CasPL_Boost/{BOOST_CFG}.yaml", "--output-dir", str(boost_dir), *tiny,
    ]  # fmt: skip
    cascade = ["TRAINER.CASPL.BOOST_PROMPTS", str(boost_dir / "boost_prompts.pt")]
    head = ["CUDA_VISIBLE_DEVICES=3", fake, "train.py", *common, "--trainer", "CasPL_PromptSRC", *ds_cfg]
    cfg = ["--config-file", f"configs/trainers/CasPL_PromptSRC/{CASPL_B2N}.yaml"]
    assert by_dir[train_dir] == [
        *head, *cfg, "--output-dir", str(train_dir),
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base", *cascade, *tiny,
    ]  # fmt: skip
    assert by_dir[test_dir] == [
        *head, *cfg, "--output-dir", str(test_dir), "--eval-only", "--model-dir", str(train_dir),
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new", *cascade, *tiny,
    ]  # fmt: skip
    assert not out.exists() and calls(repo) == []  # a dry run runs and creates nothing


def test_baseline_trainer_has_no_boosting_phase(repo):
    res = sweep(repo, "base2new.sh", DRY_RUN="1", TRAINER="CoOp", SEEDS="1")
    runs = planned(res.stdout)
    assert len(runs) == 22  # the 11 datasets by default, train + test each
    assert [r[1].split("/out/")[1].split("/")[2] for r in runs[:2]] == ["imagenet", "imagenet"]
    assert all("CasPL_Boost" not in r[2] and "TRAINER.CASPL.BOOST_PROMPTS" not in r[2] for r in runs)
    assert all("configs/trainers/CoOp/vit_b16_ctxv1.yaml" in r[2] for r in runs)
    # CoCoOp's protocol for CoOp: ImageNet trains 50 epochs (its vit_b16_ep50_ctxv1), the others 200.
    epochs = {r[1].split("/out/")[1].split("/")[2]: _opt(r[2], "OPTIM.MAX_EPOCH") for r in runs[::2]}
    assert epochs.pop("imagenet") == "50" and set(epochs.values()) == {None}


def _opt(argv: list[str], key: str) -> str | None:
    """The value of a trailing KEY VALUE option (the last one wins, as in yacs)."""
    values = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == key]
    return values[-1] if values else None


def test_coop_fewshot_follows_coop_epoch_rules_unless_config_is_given(repo, tmp_path):
    res = sweep(repo, "fewshot.sh", DRY_RUN="1", TRAINER="CoOp", SEEDS="1", DATASETS="imagenet dtd")
    runs = {r[0]: r[2] for r in planned(res.stdout)}
    assert all("configs/trainers/CoOp/vit_b16.yaml" in argv for argv in runs.values())
    got = {what.split(" seed")[0]: _opt(argv, "OPTIM.MAX_EPOCH") for what, argv in runs.items()}
    assert got == {
        **{f"{k}-shot imagenet": "50" for k in (1, 2, 4, 8, 16)},
        "1-shot dtd": "50", "2-shot dtd": "100", "4-shot dtd": "100", "8-shot dtd": None, "16-shot dtd": None,
    }  # fmt: skip
    custom = tmp_path / "mine.yaml"
    custom.write_text("OPTIM:\n  MAX_EPOCH: 3\n")
    res = sweep(
        repo, "fewshot.sh", DRY_RUN="1", TRAINER="CoOp", SEEDS="1", DATASETS="dtd", CONFIG=str(custom)
    )
    assert all(_opt(r[2], "OPTIM.MAX_EPOCH") is None for r in planned(res.stdout))


def test_xd_and_dg_share_the_source_model_and_boost_on_the_source(repo):
    xd = planned(sweep(repo, "xd.sh", DRY_RUN="1", SEEDS="1").stdout)
    dg = planned(sweep(repo, "dg.sh", DRY_RUN="1", SEEDS="1").stdout)
    assert len(xd) == 1 + 1 + 10 and len(dg) == 1 + 1 + 4
    assert xd[:2] == dg[:2]  # the same boosting run and the same source training
    assert xd[0][0] == "boost imagenet seed1"
    train_dir = xd[1][1]
    assert train_dir.endswith(f"xd/train/imagenet/shots_16/CasPL_PromptSRC/{CASPL_XD}/seed1")
    assert xd[1][2][-6:-2] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "all"]
    targets = [Path(r[1]).parts[-5] for r in dg[2:]]
    assert targets == ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
    for *_, argv in dg[2:]:
        assert argv[argv.index("--model-dir") + 1] == train_dir and "--eval-only" in argv
        assert argv[argv.index("TRAINER.CASPL.BOOST_PROMPTS") + 1].endswith(
            f"boost/imagenet/{XD_BOOST_CFG}/seed1/boost_prompts.pt"
        )
    assert {Path(r[1]).parts[-5] for r in xd[2:]} == set(ELEVEN.split()[1:])


def test_fewshot_dry_run_shots_and_all_classes(repo):
    runs = planned(
        sweep(
            repo, "fewshot.sh", DRY_RUN="1", DATASETS="dtd", SEEDS="1 2", SHOTS="1 16", BOOST_SEEDS="each"
        ).stdout
    )
    assert [r[0] for r in runs] == [
        "boost dtd seed1", "1-shot dtd seed1 CasPL_PromptSRC", "16-shot dtd seed1 CasPL_PromptSRC",
        "boost dtd seed2", "1-shot dtd seed2 CasPL_PromptSRC", "16-shot dtd seed2 CasPL_PromptSRC",
    ]  # fmt: skip
    argv = runs[2][2]
    assert argv[argv.index("DATASET.NUM_SHOTS") + 1] == "16"
    assert argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 1] == "all"
    assert runs[2][1].endswith(f"fewshot/dtd/shots_16/CasPL_PromptSRC/{CASPL_FEWSHOT}/seed1")


def test_sweep_killed_midway_then_rerun_redoes_nothing_finished(repo):
    env = {"DATASETS": "dtd eurosat", "SEEDS": "1 2", "OPTS": TINY, "BOOST_SEEDS": "each"}
    killed = sweep(repo, "base2new.sh", FAKE_KILL_AT="5", **env)
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    first = calls(repo)
    assert len(first) == 5
    done = first[:4]
    res = sweep(repo, "base2new.sh", **env)
    assert res.returncode == 0, res.stderr
    second = calls(repo)[5:]
    assert len(second) == 12 - 4  # the killed run and the 7 never started; none of the 4 finished ones
    assert second[0] == first[4] and not set(done) & set(second)
    assert res.stdout.count("done already") == 4
    assert re.search(
        r"^\[12/12\] test new eurosat seed2 CasPL_PromptSRC -> .* ok in \d+:\d\d:\d\d \| elapsed",
        res.stdout,
        re.M,
    )
    # Everything is finished now: a third run calls nothing and says so per run.
    again = sweep(repo, "base2new.sh", **env)
    assert len(calls(repo)) == 5 + 8 and again.stdout.count("done already") == 12


def test_boosting_run_is_shared_by_cascaded_trainers(repo):
    assert sweep(repo, "base2new.sh", DATASETS="dtd", SEEDS="1").returncode == 0
    n = len(calls(repo))
    res = sweep(repo, "base2new.sh", DATASETS="dtd", SEEDS="1", TRAINER="CasPL_CoOp")
    assert res.returncode == 0, res.stderr
    new_calls = calls(repo)[n:]
    assert len(new_calls) == 2 and not any("CasPL_Boost" in c for c in new_calls)
    assert re.search(r"\[1/3\] boost dtd seed1: done already .*/seed1/results.json", res.stdout)


def test_boosting_run_without_results_json_is_not_finished(repo):
    """A boosting run killed after writing boost_prompts.pt, before results.json, is run again."""
    boost_dir = repo.parent / f"out/boost/dtd/{BOOST_CFG}/seed1"
    boost_dir.mkdir(parents=True)
    (boost_dir / "boost_prompts.pt").write_text("tensors")
    res = sweep(repo, "base2new.sh", DATASETS="dtd", SEEDS="1")
    assert res.returncode == 0, res.stderr
    assert "done already" not in res.stdout
    assert [c.split("--trainer ")[1].split()[0] for c in calls(repo)] == ["CasPL_Boost"] + [
        "CasPL_PromptSRC"
    ] * 2
    assert (boost_dir / "results.json").is_file()


def test_parallel_jobs_one_gpu_each_after_what_they_need(repo):
    res = sweep(
        repo,
        "base2new.sh",
        DATASETS="dtd",
        SEEDS="1 2",
        JOBS="2",
        GPU="4,5",
        FAKE_SLEEP="0.5",
        BOOST_SEEDS="each",
    )
    assert res.returncode == 0, res.stdout + res.stderr  # the fake exits 5 when a dependency is unfinished
    assert len(calls(repo)) == 6 and res.stdout.count(": ok in ") == 6
    assert len(list((repo.parent / "out").rglob("results.json"))) == 6
    assert set((repo.parent / "calls.txt.gpu").read_text().split()) == {"4", "5"}
    running, peak = 0, 0
    for line in (repo.parent / "calls.txt.events").read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    assert peak == 2  # never more than JOBS at once, and the slots were used together
    again = sweep(repo, "base2new.sh", DATASETS="dtd", SEEDS="1 2", JOBS="2", GPU="4,5", BOOST_SEEDS="each")
    assert len(calls(repo)) == 6 and again.stdout.count("done already") == 6


def test_parallel_failure_starts_nothing_new_and_names_the_log(repo):
    env = {"DATASETS": "dtd eurosat", "SEEDS": "1", "JOBS": "2", "GPU": "0,1", "FAKE_SLEEP": "1.5"}
    res = sweep(repo, "base2new.sh", FAKE_FAIL_MATCH="/boost/dtd/", **env)
    assert res.returncode == 1
    assert "boost dtd seed1 -> " in res.stdout and "FAILED (exit 3)" in res.stdout
    assert f"log: {repo.parent}/out/boost/dtd/{BOOST_CFG}/seed1/log.txt" in res.stderr
    # The eurosat boosting run was under way and finished; nothing new started after the failure.
    assert sorted(c.split("--trainer ")[1].split()[0] for c in calls(repo)) == ["CasPL_Boost", "CasPL_Boost"]
    assert (repo.parent / f"out/boost/eurosat/{BOOST_CFG}/seed1/boost_prompts.pt").is_file()


def test_failing_run_stops_the_sweep_and_names_its_log(repo):
    res = sweep(repo, "fewshot.sh", DATASETS="dtd", SEEDS="1", SHOTS="1 2 4", FAKE_FAIL_AT="2")
    assert res.returncode == 1
    assert len(calls(repo)) == 2  # nothing after the failure
    run_dir = repo.parent / f"out/fewshot/dtd/shots_1/CasPL_PromptSRC/{CASPL_FEWSHOT}/seed1"
    assert f"log: {run_dir}/log.txt" in res.stderr
    assert "Traceback: boom" in res.stderr  # the tail of the run's console output
    assert "[2/4] 1-shot dtd seed1 CasPL_PromptSRC" in res.stdout and "FAILED (exit 3)" in res.stdout


def test_missing_config_stops_before_any_run(repo):
    res = sweep(repo, "base2new.sh", TRAINER="MaPLe", DATASETS="dtd", SEEDS="1")
    assert res.returncode == 2 and calls(repo) == []
    assert "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml" in res.stderr
    dry = sweep(repo, "base2new.sh", TRAINER="MaPLe", DATASETS="dtd", SEEDS="1", DRY_RUN="1")
    assert dry.returncode == 0 and "WARNING" in dry.stderr and len(planned(dry.stdout)) == 2


def test_config_may_be_a_yaml_path(repo, tmp_path):
    custom = tmp_path / "my_setting.yaml"
    custom.write_text("OPTIM:\n  MAX_EPOCH: 1\n")
    res = sweep(repo, "fewshot.sh", TRAINER="CoOp", CONFIG=str(custom), DATASETS="dtd", SEEDS="1", SHOTS="4")
    assert res.returncode == 0, res.stderr
    (call,) = calls(repo)
    assert f"--config-file {custom} " in call and "/shots_4/CoOp/my_setting/seed1" in call


@pytest.mark.parametrize("script", ["base2new.sh", "xd.sh", "dg.sh", "fewshot.sh"])
def test_help_documents_the_environment(repo, script):
    res = subprocess.run(["bash", f"scripts/{script}", "--help"], cwd=repo, capture_output=True, text=True)
    assert res.returncode == 0
    for var in ("TRAINER", "DATASETS", "SEEDS", "DATA", "CONFIG", "BOOST_CONFIG", "SHOTS", "GPU", "OUT", "OPTS",
                "PYTHON", "DRY_RUN"):  # fmt: skip
        assert re.search(rf"^  {var}\b", res.stdout, re.M), var
    assert calls(repo) == []


def test_torchrun_launcher_spans_the_gpus(repo):
    res = sweep(
        repo, "fewshot.sh", DRY_RUN="1", LAUNCHER="torchrun", GPU="0,1", DATASETS="dtd", SEEDS="1", SHOTS="1"
    )
    argv = planned(res.stdout)[1][2]
    assert argv[:6] == [
        "CUDA_VISIBLE_DEVICES=0,1", str(repo.parent / "fake_python"), "-m", "torch.distributed.run",
        "--standalone", "--nproc_per_node=2",
    ]  # fmt: skip
    assert argv[6] == "train.py"


TINY_OPTS = (
    'MODEL.BACKBONE.NAME tiny-vit INPUT.SIZE "(32, 32)" DATALOADER.NUM_WORKERS 0 USE_CUDA False '
    "DATALOADER.TRAIN_X.BATCH_SIZE 8 DATALOADER.TEST.BATCH_SIZE 64 TRAIN.PRINT_FREQ 1000"
)


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO / "trainers/coop.py").is_file() or not (REPO / "datasets/synthetic.py").is_file(),
    reason="needs the CoOp trainer and the Synthetic dataset",
)
def test_end_to_end_base2new_sweep_on_synthetic_then_tables(tmp_path, data_root):
    """Real runs: 2 trainers x 2 seeds x (train on base, test on new); tables.py and parse_test_res agree."""
    import json
    import sys

    import parse_test_res
    from tools import tables

    out = tmp_path / "out"
    configs = {
        "ZeroshotCLIP": "MODEL:\n  BACKBONE:\n    NAME: tiny-vit\n",
        "CoOp": "OPTIM:\n  NAME: sgd\n  LR: 0.002\n  MAX_EPOCH: 1\nTRAINER:\n  COOP:\n    N_CTX: 4\n",
    }
    for trainer, text in configs.items():
        cfg = tmp_path / f"tiny_{trainer.lower()}.yaml"
        cfg.write_text(text)
        env = {k: v for k, v in os.environ.items() if k not in ("GPU", "CONFIG", "BOOST_CONFIG")}
        env.update(
            TRAINER=trainer,
            CONFIG=str(cfg),
            DATASETS="synthetic",
            SEEDS="1 2",
            SHOTS="4",
            DATA=str(data_root),
            OUT=str(out),
            OPTS=TINY_OPTS,
            PYTHON=sys.executable,
            JOBS="2",
            OMP_NUM_THREADS="1",
        )  # fmt: skip  (two runs side by side: the runs are mostly python start-up)
        res = subprocess.run(
            ["bash", "scripts/base2new.sh"], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.count(": ok in ") == 4
    acc: dict[tuple[str, str], list[float]] = {}
    for path in out.rglob("results.json"):
        record = json.loads(path.read_text())
        role = "base" if "train_base" in path.parts else "new"
        assert record["subsample"] == role and record["dataset"] and record["trainer"] in configs
        acc.setdefault((record["trainer"], role), []).append(record["metrics"]["accuracy"])
    assert sorted(len(v) for v in acc.values()) == [2, 2, 2, 2]

    results = tables.Results(tables.collect(out))
    text = tables.render(tables.base2new_tables(results)[0], "markdown")
    table_lines = [r for r in text.splitlines() if r.startswith("|")][2:]  # below the header and its rule
    rows = {r.split("|")[2].strip(): [c.strip() for c in r.strip("|").split("|")] for r in table_lines}
    for trainer, label in (("ZeroshotCLIP", "CLIP"), ("CoOp", "CoOp")):
        base = sum(acc[(trainer, "base")]) / 2
        new = sum(acc[(trainer, "new")]) / 2
        expected_hm = 2 * base * new / (base + new)
        means = [c.split(" ±")[0] for c in rows[label][2:5]]  # cells are "mean ± std" over the 2 seeds
        assert [*means, rows[label][5]] == [f"{base:.2f}", f"{new:.2f}", f"{expected_hm:.2f}", "2/2"]

    # parse_test_res reads the engine's log.txt files to the same seed mean (the logs print 1 decimal).
    means = parse_test_res.parse_directory(
        out / "base2new/train_base/synthetic/shots_4/CoOp/tiny_coop", parse_test_res.TRAIN_END
    )
    assert abs(means["accuracy"] - sum(acc[("CoOp", "base")]) / 2) <= 0.05


@pytest.mark.parametrize("dry_run", ["1", "0"])
def test_opts_are_split_into_words_never_evaluated(repo, dry_run):
    marker = repo.parent / "pwned"
    opts = f"A \"(32, 32)\" B 'x y' C $(touch {marker}) D `touch {marker}` E $HOME"
    res = sweep(
        repo, "fewshot.sh", DRY_RUN=dry_run, TRAINER="CoOp", DATASETS="dtd", SEEDS="1", SHOTS="1", OPTS=opts
    )
    assert res.returncode == 0, res.stderr
    assert not marker.exists()  # neither `$(...)` nor backticks ran, in a dry run or a real one
    argv = (
        planned(res.stdout)[0][2]
        if dry_run == "1"
        else shlex.split((repo.parent / "calls.txt.argv").read_text())
    )
    tail = [
        "A",
        "(32, 32)",
        "B",
        "x y",
        "C",
        "$(touch",
        f"{marker})",
        "D",
        "`touch",
        f"{marker}`",
        "E",
        "$HOME",
    ]
    assert argv[-len(tail) :] == tail


def test_unbalanced_quote_in_opts_is_an_error_naming_it(repo):
    res = sweep(repo, "fewshot.sh", TRAINER="CoOp", DATASETS="dtd", SEEDS="1", OPTS='INPUT.SIZE "(32, 32)')
    assert res.returncode == 2 and calls(repo) == []
    assert "OPTS cannot be split into words" in res.stderr and "INPUT.SIZE" in res.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def _default_sigint() -> None:
    """A terminal's Ctrl-C reaches a sweep whose SIGINT is not ignored; bash cannot trap a signal ignored at
    its start, and pytest started as a background job (`make test &`) hands an ignored SIGINT down."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "jobs", "rc"), [(signal.SIGTERM, "1", 143), (signal.SIGINT, "2", 130)])
def test_signal_to_the_sweep_stops_its_runs_and_waits_for_them(repo, sig, jobs, rc):
    """`kill <sweep pid>` or Ctrl-C (SIGINT to the sweep's bash only): no run is left behind."""
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("GPU", "OPTS", "CONFIG", "DATASETS", "SEEDS")}
    env.update(
        PYTHON=str(repo.parent / "fake_python"), FAKE_CALLS=str(repo.parent / "calls.txt"),
        OUT=str(repo.parent / "out"), DATA=str(repo.parent / "data"), DATASETS="dtd eurosat", SEEDS="1",
        JOBS=jobs, FAKE_SLEEP="60",
    )  # fmt: skip
    proc = subprocess.Popen(
        ["bash", "scripts/base2new.sh"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, preexec_fn=_default_sigint,
    )  # fmt: skip
    pids_file = repo.parent / "calls.txt.pids"
    deadline = time.monotonic() + 30
    while len(pids_file.read_text().split()) < 2 * int(jobs) if pids_file.exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    # Signal the sweep once it blocks in `wait` (the kernel's do_wait): a trapped signal that lands between
    # bash's check for pending traps and that syscall only runs its trap when a child exits (a bash race; on
    # a loaded machine the runs can start before the sweep reaches its wait).
    wchan = Path(f"/proc/{proc.pid}/wchan")
    while wchan.exists() and wchan.read_text().strip() not in ("do_wait", "0", ""):
        assert time.monotonic() < deadline, wchan.read_text()
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == rc, out + err
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 2 * int(jobs) and not any(_alive(p) for p in pids)  # runs and their children
    assert f"SIG{sig.name[3:]}: stopping the {jobs} run(s) under way" in err
    assert "redone by the next sweep" in err
    assert not list((repo.parent / "out").rglob("results.json"))


def sbatch_jobs(stdout: str) -> list[tuple[str, list[str], str]]:
    """(what, sbatch command line, job script) of each job a DRY_RUN=1 LAUNCHER=slurm sweep prints."""
    jobs = re.findall(
        r"^\[\d+/\d+\] ([^\n]+) -> \S+\n(JOB_\d+=\$\(sbatch [^\n]*) <<'EOF'\n(.*?)\nEOF\n\)$",
        stdout,
        re.M | re.S,
    )
    return [(what, shlex.split(line, posix=False), script) for what, line, script in jobs]


def test_slurm_dry_run_prints_one_sbatch_script_per_run_with_its_dependency(repo, tmp_path):
    env = {
        "DRY_RUN": "1", "LAUNCHER": "slurm", "DATASETS": "dtd", "SEEDS": "1", "SLURM_PARTITION": "gpu",
        "SLURM_ACCOUNT": "lab", "SLURM_TIME": "4:00:00", "SLURM_GPUS_PER_JOB": "2",
        "SLURM_EXTRA": "--cpus-per-task=8 --mem=64G", "OPTS": TINY,
    }  # fmt: skip
    res = sweep(repo, "base2new.sh", **env)
    assert res.returncode == 0, res.stderr
    jobs = sbatch_jobs(res.stdout)
    assert [j[0] for j in jobs] == [
        "boost dtd seed1", "train base dtd seed1 CasPL_PromptSRC", "test new dtd seed1 CasPL_PromptSRC",
    ]  # fmt: skip
    deps = [[w for w in line if w.startswith("--dependency")] for _, line, _ in jobs]
    assert deps == [[], ["--dependency=afterok:$JOB_1"], ["--dependency=afterok:$JOB_2"]]
    out = repo.parent / "out"
    for (_what, line, script), folder in zip(
        jobs, [f"boost/dtd/{BOOST_CFG}/seed1", f"base2new/train_base/dtd/shots_16/CasPL_PromptSRC/{B2N_CFG}/seed1",
               f"base2new/test_new/dtd/shots_16/CasPL_PromptSRC/{B2N_CFG}/seed1"],
    ):  # fmt: skip
        assert line[-2:] == ["--cpus-per-task=8", "--mem=64G"]
        options = re.findall(r"^#SBATCH (\S+)$", script, re.M)
        assert options == [
            "--job-name=caspl-base2new", f"--comment={out / folder}", f"--output={out / folder}/console.txt",
            "--nodes=1", "--ntasks=1", "--kill-on-invalid-dep=yes", "--partition=gpu", "--account=lab",
            "--time=4:00:00", "--gres=gpu:2",
        ]  # fmt: skip
        run = shlex.split(script.splitlines()[-1])
        assert run[:6] == ["exec", str(repo.parent / "fake_python"), "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2"]  # fmt: skip
        assert run[run.index("--output-dir") + 1] == str(out / folder)
        assert f"if [ -f {out / folder}/results.json ]" in script  # a job finds its run finished: exits 0
    assert not out.exists() and calls(repo) == []


def test_slurm_launcher_refuses_gpu_and_needs_sbatch(repo, tmp_path):
    res = sweep(repo, "base2new.sh", LAUNCHER="slurm", GPU="0", DATASETS="dtd", SEEDS="1")
    assert res.returncode == 2 and "GPU is for local runs" in res.stderr
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    for tool in (
        "bash",
        "xargs",
        "printf",
        "dirname",
        "tr",
        "id",
        "mkdir",
        "cat",
        "ls",
        "sed",
        "sort",
        "grep",
        "awk",
    ):
        if shutil.which(tool):
            (empty_path / tool).symlink_to(shutil.which(tool))
    res = sweep(repo, "base2new.sh", LAUNCHER="slurm", DATASETS="dtd", SEEDS="1", PATH=str(empty_path))
    assert res.returncode == 2 and "needs sbatch and squeue on PATH" in res.stderr and calls(repo) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRAINER": "CasPL_PromptSCR"}, "unknown trainer 'CasPL_PromptSCR' (did you mean CasPL_PromptSRC?)"),
        ({"TRAINER": "coop"}, "unknown trainer 'coop' (did you mean CoOp?)"),
        ({"DATASETS": "dtd eurosatt"}, "unknown dataset 'eurosatt' (did you mean eurosat?)"),
        ({"DATASETS": "dtd", "DATA": "/nonexistent/data"}, "DATA=/nonexistent/data is not a folder"),
    ],
)
def test_bad_trainer_dataset_or_data_stop_the_sweep_before_any_run(repo, env, message):
    res = sweep(repo, "base2new.sh", SEEDS="1", **{"DATASETS": "dtd", **env})
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert calls(repo) == [] and "[1/" not in res.stdout


def test_xd_checks_the_source_dataset(repo):
    res = sweep(repo, "xd.sh", SEEDS="1", SOURCE="imagnet", DRY_RUN="1")
    assert res.returncode == 2 and "unknown dataset 'imagnet' (did you mean imagenet?)" in res.stderr
    # A missing DATA folder is only a warning in a dry run (and Synthetic creates itself anyway).
    dry = sweep(repo, "base2new.sh", SEEDS="1", DATASETS="dtd", DATA="/nonexistent/data", DRY_RUN="1")
    assert dry.returncode == 0 and "WARNING: DATA=/nonexistent/data is not a folder" in dry.stderr
    synthetic = sweep(
        repo, "base2new.sh", SEEDS="1", DATASETS="synthetic", DATA="/nonexistent/data", DRY_RUN="1"
    )
    assert synthetic.returncode == 0 and "WARNING" not in synthetic.stderr


FAKE_SBATCH = r"""#!/usr/bin/env bash
# Fake sbatch: queue the job (id, PENDING, the script's --comment) where the fake squeue reads it.
id=$((100 + $(cat "$FAKE_QUEUE.sbatch" 2>/dev/null | wc -l)))
comment="$(sed -n 's/^#SBATCH --comment=//p' "${@: -1}")"
echo "$id|PENDING|$comment" >> "$FAKE_QUEUE"
echo "$id ${*:1:$#-1}" >> "$FAKE_QUEUE.sbatch"
echo "$id"
"""


def test_slurm_submission_skips_queued_and_finished_runs_and_waits_for_queued_ones(repo, tmp_path):
    """xd.sh then dg.sh share the source model: its queued job is reused as the DG jobs' dependency."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "squeue").write_text('#!/bin/sh\ncat "$FAKE_QUEUE" 2>/dev/null || true\n')
    for tool in ("sbatch", "squeue"):
        (bin_dir / tool).chmod(0o755)
    queue = tmp_path / "queue"
    env = {
        "LAUNCHER": "slurm",
        "SEEDS": "1",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_QUEUE": str(queue),
    }
    xd = sweep(repo, "xd.sh", **env)
    assert xd.returncode == 0, xd.stderr
    assert xd.stdout.count("submitted as job") == 12 and calls(repo) == []  # nothing runs here
    submitted = [line.split() for line in (tmp_path / "queue.sbatch").read_text().splitlines()]
    assert submitted[0] == ["100", "--parsable"]  # the boosting run needs nothing
    assert submitted[1] == ["101", "--parsable", "--dependency=afterok:100"]  # the source model: boosting
    assert all(s[1:] == ["--parsable", "--dependency=afterok:101"] for s in submitted[2:])  # the targets

    dg = sweep(repo, "dg.sh", **env)
    assert dg.returncode == 0, dg.stderr
    assert "[1/6] boost imagenet seed1: pending already as job 100, not submitted again" in dg.stdout
    assert "[2/6] train imagenet seed1 CasPL_PromptSRC: pending already as job 101" in dg.stdout
    new = [line.split() for line in (tmp_path / "queue.sbatch").read_text().splitlines()[12:]]
    assert [s[0] for s in new] == ["112", "113", "114", "115"]
    assert all(s[1:] == ["--parsable", "--dependency=afterok:101"] for s in new)

    # Once the source model is finished and out of the queue, a new target needs no dependency; queued
    # targets are still not submitted again.
    lines = queue.read_text().splitlines()
    queue.write_text("\n".join(line for line in lines if not line.startswith(("100|", "101|"))) + "\n")
    train_dir = repo.parent / f"out/xd/train/imagenet/shots_16/CasPL_PromptSRC/{XD_CFG}/seed1"
    (train_dir / "results.json").write_text("{}")
    (repo.parent / f"out/boost/imagenet/{XD_BOOST_CFG}/seed1/results.json").write_text("{}")
    again = sweep(repo, "dg.sh", **{**env, "DATASETS": "imagenetv2 imagenet_r synthetic"})
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("done already") == 2 and again.stdout.count("pending already") == 2
    (last,) = [line.split() for line in (tmp_path / "queue.sbatch").read_text().splitlines()[16:]]
    assert last == ["116", "--parsable"]
    assert (
        "0 queued" not in again.stdout
        and "1 jobs submitted, 2 queued or running already, 2 done" in again.stdout
    )
