"""Reliability of runs (issue 11, engine side): every item reproduced, kill points simulated
deterministically (a write made to fail), never by sleeping."""

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from caspl.engine.run_folder import LOCK_NAME, RunFolderLocked, RunLock
from caspl.utils.checkpoint import atomic_save, atomic_write_text
from tests.conftest import REPO

ENGINE_OPTS = ["OPTIM.NAME", "sgd", "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1",
               "TRAINER.IVLP.PREC", "fp32", "DATASET.NUM_SHOTS", "2", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2",
               "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2"]  # fmt: skip


def _lock_holder(folder: Path) -> subprocess.Popen:
    """Another process holding the run lock of `folder` (it prints its pid once it holds it)."""
    code = (
        "import sys\nfrom caspl.engine.run_folder import RunLock\n"
        f"with RunLock({str(folder)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


# ---------------------------------------------------------------------------- 17: outputs respect the umask
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_save({"w": torch.ones(2)}, tmp_path / "a.pth")
        atomic_write_text("x\n", tmp_path / "b.txt")
        with open(tmp_path / "plain.txt", "w") as f:  # what an ordinary open() gives under this umask
            f.write("x")
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~umask
    for name in ("a.pth", "b.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


# ---------------------------------------------------------------------------- 2: one writer per output folder
def test_second_writer_stops_at_once_naming_folder_and_owner(run_train, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.txt").write_text("the live run's log\n")
    holder = _lock_holder(out)
    try:
        with pytest.raises(RunFolderLocked) as err:
            run_train(out, "IVLP", *ENGINE_OPTS)
        msg = str(err.value)
        assert str(out) in msg and f"pid {holder.pid}" in msg
        # Stopped before touching anything: the live run's log is not rotated, nothing else written.
        assert (out / "log.txt").read_text() == "the live run's log\n"
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "log.txt"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # Its owner gone (lock released on exit), the folder is free again and the lock file removed.
    assert not (out / LOCK_NAME).exists()
    run_train(out, "IVLP", *ENGINE_OPTS)
    assert not (out / LOCK_NAME).exists(), "released at the end of the run"


def test_stale_lock_of_a_killed_run_is_taken_over(run_train, tmp_path):
    out = tmp_path / "run"
    holder = _lock_holder(out)
    owner = json.loads((out / LOCK_NAME).read_text())
    assert owner["pid"] == holder.pid and owner["host"]
    holder.send_signal(signal.SIGKILL)  # no chance to clean up: the lock file stays behind
    holder.wait(timeout=30)
    assert (out / LOCK_NAME).exists()
    run_train(out, "IVLP", *ENGINE_OPTS)
    log = (out / "log.txt").read_text()
    assert f"Took over the stale lock of {out} left by pid {holder.pid}" in log


def _fail_inside_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the run fail after the folder is locked and log.txt opened (an unknown trainer name is an
    argument error now, answered before either)."""

    def boom(cfg):
        raise RuntimeError(f"building {cfg.TRAINER.NAME} failed (test)")

    monkeypatch.setattr("caspl.engine.build_trainer", boom)


def test_lock_is_released_when_a_run_fails(run_train, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _fail_inside_the_run(monkeypatch)
    with pytest.raises(RuntimeError, match="failed \\(test\\)"):
        run_train(out, "IVLP", *ENGINE_OPTS)
    assert not (out / LOCK_NAME).exists()
    with RunLock(out):  # and can be taken again at once
        with pytest.raises(RunFolderLocked, match="in use by another run"):
            RunLock(out).acquire()


# ---------------------------------------------------------------------------- 13: temp files of killed writes
def test_temp_files_of_dead_writers_are_cleaned_at_start(run_train, tmp_path):
    out = tmp_path / "run"
    # A writer killed mid-write (os._exit: no cleanup) leaves its temp file, as SIGKILL would.
    code = (
        "import os, sys\nfrom pathlib import Path\nfrom caspl.utils.checkpoint import _temp_file\n"
        "fd, tmp = _temp_file(Path(sys.argv[1]))\nos.write(fd, b'half a checkpoint')\nprint(tmp, flush=True)\n"
        "os._exit(9)\n"
    )
    target = out / "prompt_learner" / "model.pth.tar-1"
    done = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=REPO, capture_output=True, text=True, check=False
    )
    stale = Path(done.stdout.strip())
    assert done.returncode == 9 and stale.is_file() and stale.name.startswith(".model.pth.tar-1.")
    # A live writer's temp file (this process) must survive.
    from caspl.utils.checkpoint import _temp_file

    fd, live = _temp_file(out / "results.json")
    os.close(fd)
    run_train(out, "IVLP", *ENGINE_OPTS)
    assert not stale.exists()
    assert Path(live).exists()
    assert f"Removed {stale} (a temp file left by a killed write)" in (out / "log.txt").read_text()


# ---------------------------------------------------------------------------- 1: multi-model checkpoints
SRC_OPTS = ["OPTIM.NAME", "sgd", "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_FREQ", "1",
            "TRAINER.PROMPTSRC.PREC", "fp32", "DATASET.NUM_SHOTS", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2",
            "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2", "TRAINER.PROMPTSRC.GPA_MEAN", "2",
            "TRAINER.PROMPTSRC.GPA_STD", "1"]  # fmt: skip


class SimulatedKill(BaseException):
    """Stands for SIGKILL at a chosen write (BaseException: nothing on the way catches it)."""


def fail_write_of(monkeypatch, module: str, target: str) -> None:
    """Make `module`'s atomic_save die on the file whose path ends with `target` (the kill point)."""
    import importlib

    mod = importlib.import_module(module)
    real = mod.atomic_save

    def save(obj, path):
        if str(path).endswith(target):
            raise SimulatedKill(target)
        real(obj, path)

    monkeypatch.setattr(mod, "atomic_save", save)


def _state(out: Path, model: str, epoch: int) -> dict:
    from caspl.utils.checkpoint import safe_load

    return safe_load(out / model / f"model.pth.tar-{epoch}")["state_dict"]


def test_killed_between_two_models_writes_resumes_from_the_newest_complete_epoch(
    run_train, tmp_path, monkeypatch
):
    full = run_train(tmp_path / "full", "PromptSRC", *SRC_OPTS)
    out = tmp_path / "killed"
    # Killed after prompt_learner's epoch-2 checkpoint, before gpa's.
    fail_write_of(monkeypatch, "caspl.engine.trainer", "gpa/model.pth.tar-2")
    with pytest.raises(SimulatedKill):
        run_train(out, "PromptSRC", *SRC_OPTS)
    monkeypatch.undo()
    assert (out / "prompt_learner" / "model.pth.tar-2").is_file()
    assert not (out / "gpa" / "model.pth.tar-2").exists()
    resumed = run_train(out, "PromptSRC", *SRC_OPTS)
    for model in ("prompt_learner", "gpa"):
        a, b = _state(tmp_path / "full", model, 3), _state(out, model, 3)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{model}.{k}")
    assert resumed["metrics"] == full["metrics"]
    log = (out / "log.txt").read_text()
    assert "will resume training from epoch 1" in log
    assert "Resuming from epoch 1, the newest epoch every model has" in log


# ---------------------------------------------------------------------------- 3: resume checks what it resumes
def _one_epoch(opts: list[str]) -> list[str]:
    return [*opts, "OPTIM.MAX_EPOCH", "1"]


def test_checkpoints_of_another_trainer_or_setting_are_refused(run_train, tmp_path):
    from caspl.engine.trainer import CheckpointMismatchError

    ivlp, src = tmp_path / "ivlp", tmp_path / "src"
    run_train(ivlp, "IVLP", *_one_epoch(ENGINE_OPTS))
    src_opts = _one_epoch(SRC_OPTS)
    run_train(src, "PromptSRC", *src_opts)
    src_results = (src / "results.json").read_text()
    src_ckpt = (src / "prompt_learner" / "model.pth.tar-1").read_bytes()

    # Another trainer's evaluation of a PromptSRC run (same-shaped prompt_learner): refused, keys listed.
    with pytest.raises(
        CheckpointMismatchError, match=r"TRAINER\.NAME: checkpoint 'PromptSRC', this run 'IVLP'"
    ):
        run_train(tmp_path / "e1", "IVLP", *ENGINE_OPTS, extra_argv=("--eval-only", "--model-dir", str(src)))
    assert not (tmp_path / "e1" / "results.json").exists()
    # The reverse case names the trainer instead of suggesting --load-epoch.
    with pytest.raises(CheckpointMismatchError) as err:
        run_train(
            tmp_path / "e2", "PromptSRC", *src_opts, extra_argv=("--eval-only", "--model-dir", str(ivlp))
        )
    assert "'IVLP' run" in str(err.value) and "--load-epoch" not in str(err.value)
    # Resuming (or overwriting) another trainer's run folder: refused; its files are untouched.
    (src / "results.json").unlink()  # not finished: training would resume there
    with pytest.raises(CheckpointMismatchError, match="Refusing to resume"):
        run_train(src, "IVLP", *_one_epoch(ENGINE_OPTS))
    assert (src / "prompt_learner" / "model.pth.tar-1").read_bytes() == src_ckpt
    (src / "results.json").write_text(src_results)

    # Same trainer, another seed: resume refuses and lists the key.
    (ivlp / "results.json").rename(tmp_path / "ivlp_results.json")
    with pytest.raises(CheckpointMismatchError, match=r"SEED: checkpoint 1, this run 2"):
        run_train(ivlp, "IVLP", *ENGINE_OPTS, "SEED", "2")
    (tmp_path / "ivlp_results.json").rename(ivlp / "results.json")
    # A model-defining key with the same tensor shapes (the init words) is refused at evaluation ...
    ctx = ("TRAINER.IVLP.CTX_INIT", "a photo")
    with pytest.raises(CheckpointMismatchError, match=r"TRAINER\.IVLP\.CTX_INIT: checkpoint 'a photo of a'"):
        run_train(
            tmp_path / "e3", "IVLP", *ENGINE_OPTS, *ctx, extra_argv=("--eval-only", "--model-dir", str(ivlp))
        )
    # ... while evaluating on the new classes (the base-to-new protocol) is what --model-dir is for.
    new = run_train(
        tmp_path / "e4", "IVLP", *ENGINE_OPTS, "DATASET.SUBSAMPLE_CLASSES", "new",
        extra_argv=("--eval-only", "--model-dir", str(ivlp)),
    )  # fmt: skip
    assert new["subsample"] == "new"
    # The explicit override loads it anyway, with a warning in the log.
    run_train(
        tmp_path / "e5", "IVLP", *ENGINE_OPTS, *ctx,
        extra_argv=("--eval-only", "--model-dir", str(ivlp), "--allow-config-mismatch"),
    )  # fmt: skip
    assert "Loading it anyway (--allow-config-mismatch)" in (tmp_path / "e5" / "log.txt").read_text()


# ---------------------------------------------------------------------------- 4: non-finite values
def _boost_file_with_nan(path: Path, clip_model) -> None:
    from caspl.config import get_cfg_default
    from trainers.caspl import make_boost_groups, save_boost_prompts

    boost = get_cfg_default().TRAINER.CASPL.BOOST.clone()
    boost.defrost()
    boost.PROMPT_DEPTH_TEXT = boost.PROMPT_DEPTH_VISION = 2
    groups = make_boost_groups(clip_model, boost)
    with torch.no_grad():
        groups.vision.tokens[1][0, 3] = float("nan")
    meta = {"student": {"backbone": "tiny-vit", "text_width": 64, "vision_width": 64}}
    save_boost_prompts(path, groups, meta)


def test_boost_prompts_with_nan_are_refused_naming_file_and_tensor(run_train, tmp_path, tiny_clip):
    boost = tmp_path / "boost_prompts.pt"
    _boost_file_with_nan(boost, tiny_clip)
    out = tmp_path / "zs"
    with pytest.raises(ValueError, match=rf"{boost}: tensor 'vision\[1\]' holds 1 non-finite value"):
        run_train(out, "CasPL_ZS", "TRAINER.CASPL.PREC", "fp32", "TRAINER.CASPL.BOOST_PROMPTS", str(boost))
    assert not (out / "results.json").exists()


def test_checkpoint_with_nan_is_refused_at_evaluation(run_train, tmp_path):
    out = tmp_path / "ivlp"
    run_train(out, "IVLP", *_one_epoch(ENGINE_OPTS))
    path = out / "prompt_learner" / "model.pth.tar-1"
    ckpt = torch.load(path, weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.startswith("vision"))
    ckpt["state_dict"][key].view(-1)[0] = float("inf")
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=rf"{path}: tensor 'state_dict\.{key}' holds 1 non-finite"):
        run_train(tmp_path / "ev", "IVLP", *ENGINE_OPTS, extra_argv=("--eval-only", "--model-dir", str(out)))


def test_non_finite_training_loss_stops_the_run_naming_step_and_terms(run_train, tmp_path, monkeypatch):
    from caspl.engine.anomaly import NonFiniteLossError
    from caspl.engine.clip_trainer import CLIPPromptTrainer

    real, calls = CLIPPromptTrainer.compute_loss, []

    def diverging(self, images, labels):
        loss, extra, logits = real(self, images, labels)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 5 else loss), extra, logits

    monkeypatch.setattr(CLIPPromptTrainer, "compute_loss", diverging)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"at epoch 2/2, batch 2/3: loss=nan, acc=\d"):
        run_train(out, "IVLP", *ENGINE_OPTS)
    assert not (out / "results.json").exists()
    assert (out / "prompt_learner" / "model.pth.tar-1").is_file()  # the last good checkpoint is kept
    assert not (out / "prompt_learner" / "model.pth.tar-2").exists()


def test_deferred_loss_check_reports_the_first_bad_step_only_when_checked():
    """The GPU path (exercised on CPU with defer=True): nothing is read before check()."""
    from caspl.engine.anomaly import NonFiniteLossError, NonFiniteLossGuard

    guard = NonFiniteLossGuard(lambda s: f"iteration {s}", defer=True)
    rand = torch.rand(4) + 0.5
    guard.observe(0, {"loss": rand[0], "loss_ce": rand[1]})
    guard.observe(1, {"loss": torch.tensor(float("inf")), "loss_ce": rand[2]})
    guard.observe(2, {"loss": torch.tensor(float("nan")), "loss_ce": rand[3]})  # later: not the one named
    with pytest.raises(NonFiniteLossError, match=rf"iteration 1: loss=inf, loss_ce={rand[2].item():.6g}\."):
        guard.check()
    guard.observe(3, {"loss": rand[0], "loss_ce": rand[1]})
    guard.check()  # reset after a check: a clean window passes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_loss_guard_never_syncs_with_the_gpu_between_checks():
    from caspl.engine.anomaly import NonFiniteLossError, NonFiniteLossGuard

    guard = NonFiniteLossGuard()
    values = torch.rand(50, 2, device="cuda") + 0.5
    values[20, 1] = float("nan")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host-device sync raises
    try:
        for step in range(50):
            guard.observe(step, {"loss": values[step, 0], "loss_kl": values[step, 1]})
    finally:
        torch.cuda.set_sync_debug_mode("default")
    with pytest.raises(NonFiniteLossError, match="step 20: .*loss_kl=nan"):
        guard.check()


# ---------------------------------------------------------------------------- 8: results.json is written last
def test_results_json_is_the_last_file_of_every_kind_of_run(run_train, tmp_path):
    out = tmp_path / "run"
    run_train(out, "IVLP", *ENGINE_OPTS, "TRAIN.PRINT_FREQ", "1")  # tensorboard scalars too
    files = [p for p in out.rglob("*") if p.is_file() and p.name not in ("log.txt", "results.json")]
    assert any("tfevents" in p.name for p in files)
    last = (out / "results.json").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= last for p in files), "written after results.json"
    # A run that does not test still finishes with results.json (no metrics), so a sweep marks it done.
    res = run_train(tmp_path / "no_test", "IVLP", *_one_epoch(ENGINE_OPTS), "TEST.NO_TEST", "True")
    assert res["metrics"] == {} and res["epoch"] == 1


# ---------------------------------------------------------------------------- 9: a finished run is left alone
def test_finished_run_is_left_alone_unless_asked_to_re_evaluate(run_train, tmp_path, capsys):
    out = tmp_path / "run"
    first = run_train(out, "IVLP", *ENGINE_OPTS)
    results, log = (out / "results.json").read_text(), (out / "log.txt").read_text()
    capsys.readouterr()
    again = run_train(out, "IVLP", *ENGINE_OPTS)
    assert "holds a finished run" in capsys.readouterr().out
    assert (out / "results.json").read_text() == results and again == first
    assert (out / "log.txt").read_text() == log and not list(out.glob("log.txt-*"))
    # Asked to: evaluated again, with the epoch of the weights and the training's wall time kept.
    re = run_train(out, "IVLP", *ENGINE_OPTS, extra_argv=("--re-evaluate",))
    assert re["re_evaluated"] is True and re["epoch"] == 2
    assert re["metrics"] == first["metrics"] and re["wall_time_s"] == first["wall_time_s"]


def test_eval_only_records_the_epoch_of_the_checkpoint_evaluated(run_train, tmp_path):
    out = tmp_path / "run"
    run_train(out, "IVLP", *ENGINE_OPTS)  # 2 epochs, a checkpoint each
    latest = run_train(
        tmp_path / "e", "IVLP", *ENGINE_OPTS, extra_argv=("--eval-only", "--model-dir", str(out))
    )
    assert latest["epoch"] == 2
    first = run_train(
        tmp_path / "e1",
        "IVLP",
        *ENGINE_OPTS,
        extra_argv=("--eval-only", "--model-dir", str(out), "--load-epoch", "1"),
    )
    assert first["epoch"] == 1


# ---------------------------------------------------------------------------- 7 + 8: CasPL_Boost across a kill
def test_boost_run_killed_before_results_json_finishes_with_its_metadata(run_train, tmp_path, monkeypatch):
    from caspl.utils.checkpoint import safe_load
    from tests.test_caspl import BOOST_OPTS

    opts = [*BOOST_OPTS, "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1"]
    out = tmp_path / "boost"
    import caspl.engine.trainer as engine

    real = engine.atomic_write_text

    def write(text, path):
        if Path(path).name == "results.json":
            raise SimulatedKill("results.json")
        real(text, path)

    monkeypatch.setattr(engine, "atomic_write_text", write)
    with pytest.raises(SimulatedKill):
        run_train(out, "CasPL_Boost", *opts)
    monkeypatch.undo()
    meta = safe_load(out / "boost_prompts.pt")["meta"]
    assert meta["kd_heldout_before"] is not None and meta["final_kd_loss"] is not None
    assert not (out / "results.json").exists()  # boost_prompts.pt alone does not mean "finished"
    res = run_train(out, "CasPL_Boost", *opts)  # resumes at the last epoch: nothing left to train
    assert "will resume training from epoch 2" in (out / "log.txt").read_text()
    assert res["kd_heldout_before"] == meta["kd_heldout_before"]
    assert res["kd_heldout_after"] == pytest.approx(meta["kd_heldout_after"], rel=1e-6)
    again = safe_load(out / "boost_prompts.pt")["meta"]
    assert again["final_kd_loss"] == meta["final_kd_loss"]
    assert again["kd_heldout_before"] == meta["kd_heldout_before"]
    assert (out / "results.json").stat().st_mtime_ns >= (out / "boost_prompts.pt").stat().st_mtime_ns


def test_demo_summary_tolerates_missing_kd_values(tmp_path):
    """scripts/demo.sh's summary line reads results.json of a boost run; older or resumed runs may lack
    the held-out KL values."""
    script = (REPO / "scripts" / "demo.sh").read_text()
    code = script.split('"$PYTHON" -c \'', 1)[1].split("' \\", 1)[0]
    for record in ({"kd_heldout_before": None, "kd_heldout_after": 0.5}, {}):
        path = tmp_path / "results.json"
        path.write_text(json.dumps(record))
        done = subprocess.run([sys.executable, "-c", code, str(path), "1"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "held-out KL to the teacher n/a ->" in done.stdout


# ---------------------------------------------------------------------------- 10: everything said is logged
def test_warnings_results_and_errors_reach_log_txt(data_root, tmp_path):
    """A real process (pytest would capture the warnings itself): stderr's warnings, the evaluator's
    lines and the seed line are in log.txt; tqdm's progress bars are not."""
    from tests.conftest import train_argv

    out = tmp_path / "zs"
    argv = train_argv(data_root, out, "ZeroshotCLIP", "DATASET.NUM_SHOTS", "999")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "train.py", *argv], cwd=REPO, capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "999 shots requested but" in done.stderr  # still on the console
    log = (out / "log.txt").read_text()
    for said in ("999 shots requested but", "* total:", "* accuracy:", "Setting fixed seed: 1"):
        assert said in log, said
    assert "\r" not in log and "eval test:" not in log


def test_the_error_that_ends_a_run_is_in_its_log(run_train, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _fail_inside_the_run(monkeypatch)
    with pytest.raises(RuntimeError):
        run_train(out, "IVLP", *ENGINE_OPTS)
    log = (out / "log.txt").read_text()
    assert "Traceback" in log and "building IVLP failed (test)" in log.split("Traceback", 1)[1]


# ---------------------------------------------------------------------------- 11: collective timeouts
def _stalled_rank_worker(rank: int, world: int, store: str, out: str) -> None:
    import time

    import torch.distributed as dist

    from caspl.engine.distributed import DistContext, DistTimeoutError

    torch.set_num_threads(1)
    timeout_min = 0.03  # ~2 s
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world,
        timeout=__import__("datetime").timedelta(minutes=timeout_min),
    )  # fmt: skip
    ctx = DistContext(rank, world, rank, timeout_min)
    try:
        assert ctx.sum(1.0) == [2.0]  # both answer once
        if rank == 1:  # stalls (as under SIGSTOP) and never joins the next collective
            time.sleep(6)  # alive (its connections open) until rank 0 timed out and asked who answers
            return
        try:
            ctx.all_reduce_mean(torch.ones(3))
            Path(out).write_text("no error")
        except DistTimeoutError as e:
            Path(out).write_text(str(e))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes and a deliberate ~2 s timeout
def test_a_stalled_rank_is_named_when_a_collective_times_out(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "rank0.txt"
    mp.spawn(_stalled_rank_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    msg = out.read_text()
    assert msg.startswith(
        "rank 0: all_reduce timed out after 0.03 min (DIST.TIMEOUT_MIN): rank(s) 1 did not answer"
    )


def test_dist_timeout_is_a_config_key_in_minutes():
    import trainers  # noqa: F401  (every config node registered)
    from caspl.config import get_cfg_default

    assert get_cfg_default().DIST.TIMEOUT_MIN == 10.0
