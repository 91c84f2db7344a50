"""Data-parallel training under torchrun (gloo on CPU): the sharded samplers, the collectives, and whole
runs with 2 processes that end where one process with the same global batch ends.

Tolerance: prompts agree to atol 1e-5 (CasPL_Boost's larger tokens, |t| up to ~7: atol 1e-5 + rtol 1e-5);
the gradient all-reduce sums in another order than one process's batch mean, so runs differ by float
rounding only (observed: <= 5e-7 for IVLP, <= 5e-6 for CasPL_Boost). Evaluation counts agree exactly.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from caspl.engine.distributed import DistContext, ShardedEpochSampler, ShardSampler
from caspl.utils.checkpoint import safe_load
from caspl.utils.meters import MetricMeter
from tests.conftest import REPO, train_argv

PROMPT_ATOL = 1e-5

IVLP_OPTS = [
    "TRAINER.IVLP.N_CTX_TEXT", "2", "TRAINER.IVLP.N_CTX_VISION", "2",
    "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2", "TRAINER.IVLP.PREC", "fp32",
    "OPTIM.NAME", "sgd", "OPTIM.LR", "0.01", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR_SCHEDULER", "cosine",
    "DATASET.NUM_SHOTS", "4", "TRAIN.CHECKPOINT_FREQ", "1", "TRAIN.PRINT_FREQ", "2",
    "TEST.FINAL_MODEL", "best_val", "TEST.PER_CLASS_RESULT", "True", "TEST.COMPUTE_CMAT", "True",
]  # fmt: skip

BOOST_OPTS = [
    "TRAINER.CASPL.PREC", "fp32", "TRAINER.CASPL.TEACHER.NAME", "small-vit",
    "TRAINER.CASPL.BOOST.N_CTX_TEXT", "2", "TRAINER.CASPL.BOOST.N_CTX_VISION", "2",
    "TRAINER.CASPL.BOOST.PROMPT_DEPTH_TEXT", "2", "TRAINER.CASPL.BOOST.PROMPT_DEPTH_VISION", "2",
    "TRAINER.CASPL.BOOST.CTX_INIT", "a photo",
    "OPTIM.NAME", "sgd", "OPTIM.LR", "0.1", "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2",
    "DATALOADER.TRAIN_X.BATCH_SIZE", "16",
]  # fmt: skip


# ---------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("drop_last", [False, True])
def test_sharded_sampler_follows_single_process_batches(drop_last):
    """Global batch k of W ranks (batch b each) = batch k of one process with batch b*W; equal batch counts."""
    for n in range(0, 23):
        for b in (1, 2, 3):
            for w in (1, 2, 3):
                ranks = [ShardedEpochSampler(n, b, 7, r, w, drop_last=drop_last) for r in range(w)]
                single = list(ShardedEpochSampler(n, b * w, 7, drop_last=drop_last))
                parts = [list(s) for s in ranks]
                assert [len(s) for s in ranks] == [len(p) for p in parts]
                n_batches = {-(-len(p) // b) for p in parts}
                assert len(n_batches) == 1, (n, b, w, parts)  # no rank waits in a collective alone
                flat = [i for p in parts for i in p]
                assert len(flat) == len(set(flat))
                for k in range(n_batches.pop()):
                    union = sorted(i for p in parts for i in p[k * b : (k + 1) * b])
                    assert union == sorted(single[k * b * w : (k + 1) * b * w]), (n, b, w, k)


def test_sharded_sampler_reshuffles_per_epoch_deterministically():
    a, b = ShardedEpochSampler(40, 4, 1), ShardedEpochSampler(40, 4, 1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and sorted(a) == list(range(40))
    b.set_epoch(4)
    assert list(a) != list(b)


def test_shard_sampler_covers_every_sample_once():
    for n in (0, 1, 5, 96, 97):
        for w in (1, 2, 3):
            seen = [i for r in range(w) for i in ShardSampler(n, r, w)]
            assert sorted(seen) == list(range(n))


def test_metric_meter_state_is_current_and_average():
    m = MetricMeter()
    m.update({"loss": torch.tensor(2.0), "acc": 50.0})
    m.update({"loss": torch.tensor(1.0), "acc": 100.0})
    assert m.state().tolist() == [[1.0, 1.5], [100.0, 75.0]]
    assert str(m) == "loss 1.0000 (1.5000) acc 100.0000 (75.0000)"
    assert m.format(torch.tensor([[3.0, 4.0], [5.0, 6.0]])) == "loss 3.0000 (4.0000) acc 5.0000 (6.0000)"


# ---------------------------------------------------------------------------- collectives (2 gloo processes)
def _collectives_worker(rank: int, world: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        ctx = DistContext(rank, world, rank)
        # Weighted gradient mean over unequal shards (3 + 2 samples) = the full-batch gradient.
        x = torch.arange(15, dtype=torch.float32).reshape(5, 3) / 10
        p = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))
        mine = x[:3] if rank == 0 else x[3:]
        ((mine @ p) ** 2).mean().backward()
        ctx.average_gradients([p], weight=len(mine))
        full = torch.nn.Parameter(p.detach().clone())
        ((x @ full) ** 2).mean().backward()
        torch.testing.assert_close(p.grad, full.grad, rtol=1e-6, atol=1e-7)
        # Sharded outputs back in dataset order, unequal and empty shards included.
        for n in (5, 1):
            logits = torch.arange(n * 4, dtype=torch.float32).reshape(n, 4)
            part = logits[rank::world]
            got = ctx.gather_shards(part if len(part) else torch.empty(0))
            assert torch.equal(got, logits), (n, got)
        labels = torch.arange(5)
        assert torch.equal(ctx.gather_shards(labels[rank::world]), labels)
        # Scalars, objects, seeds, replicas.
        assert ctx.sum(rank + 1.0, 1) == [3.0, 2.0]
        assert ctx.mean(float(rank)) == 0.5
        assert ctx.broadcast_object({"rank": rank}) == {"rank": 0}
        seeds: list = [None] * world
        dist.all_gather_object(seeds, ctx.shared_seed(-1))
        assert seeds[0] == seeds[1] and ctx.shared_seed(5) == 5
        module = torch.nn.Linear(3, 2)
        torch.nn.init.constant_(module.weight, float(rank))
        ctx.broadcast_module(module)
        assert torch.all(module.weight == 0.0)
        # Rank 0 first: it writes a file the others then read.
        ctx.run_in_order(lambda: Path(out).open("a").write(f"{rank}\n"))
        assert Path(out).read_text().split()[0] == "0"
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_collectives_on_gloo(tmp_path):
    mp.spawn(
        _collectives_worker,
        args=(2, str(tmp_path / "store"), str(tmp_path / "order.txt")),
        nprocs=2,
        join=True,
    )
    assert sorted((tmp_path / "order.txt").read_text().split()) == ["0", "1"]


# ---------------------------------------------------------------------------- whole runs under torchrun
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv: list[str], nproc: int) -> str:
    """train.py in a subprocess (torchrun with `nproc` > 1, plain python otherwise); returns its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CASPL_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    if nproc > 1:
        launcher = [
            "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        ]  # fmt: skip
    else:
        launcher = []
    cmd = [sys.executable, *launcher, str(REPO / "train.py"), *argv]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (
        f"{' '.join(cmd)}\n--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-6000:]}"
    )
    return res.stdout


def _files(out: Path) -> list[str]:
    """What a run wrote, relative to its output folder (tensorboard event names carry pid and time)."""
    return sorted(
        "tensorboard/<events>" if p.parent.name == "tensorboard" else str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file()
    )


def _result_lines(text: str) -> list[str]:
    """The evaluator's count lines (totals, corrects, per-class lines)."""
    return [ln for ln in text.splitlines() if re.match(r"\* (total|correct|class):", ln)]


def _loss_lines(log: str) -> list[str]:
    """The printed training metrics without the timing fields."""
    return [re.sub(r"time \S+ \(\S+\) data \S+ \(\S+\) | eta \S+$", "", ln) for ln in log.splitlines()
            if ln.startswith("epoch [")]  # fmt: skip


def _assert_state_close(a: dict, b: dict, atol: float, rtol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def ivlp_runs(tmp_path_factory, data_root):
    """IVLP with the same config (global batch 8) in 1 process and in 2 torchrun processes (gloo)."""
    base = tmp_path_factory.mktemp("ddp_ivlp")
    outs, stdouts = {}, {}
    for nproc in (1, 2):  # the 1-process run first: it also generates the Synthetic data
        outs[nproc] = base / f"np{nproc}"
        stdouts[nproc] = _launch(train_argv(data_root, outs[nproc], "IVLP", *IVLP_OPTS), nproc)
    return outs, stdouts


@pytest.mark.slow
def test_torchrun_matches_one_process(ivlp_runs):
    outs, stdouts = ivlp_runs
    one, two = outs[1], outs[2]
    for epoch in (1, 2):
        a = safe_load(one / "prompt_learner" / f"model.pth.tar-{epoch}")["state_dict"]
        b = safe_load(two / "prompt_learner" / f"model.pth.tar-{epoch}")["state_dict"]
        _assert_state_close(a, b, PROMPT_ATOL)
    first = safe_load(one / "prompt_learner" / "model.pth.tar-1")["state_dict"]["text.tokens.0"]
    assert not torch.allclose(first, a["text.tokens.0"], atol=1e-4), "the prompts did not move"
    log1, log2 = (one / "log.txt").read_text(), (two / "log.txt").read_text()
    # Same evaluation counts (val each epoch + final test), every test sample scored exactly once.
    n_test = int(re.search(r"^# test\s+(\d+)", log1, re.M).group(1))
    assert f"* total: {n_test}" in log2
    assert _result_lines(log1) == _result_lines(log2) and _result_lines(log1)
    r1 = json.loads((one / "results.json").read_text())
    r2 = json.loads((two / "results.json").read_text())
    assert r1["metrics"] == r2["metrics"]
    assert json.loads((one / "cmat.json").read_text()) == json.loads((two / "cmat.json").read_text())
    # The printed loss/acc are all-reduced: the same numbers as the single process prints.
    assert len(_loss_lines(log2)) == len(_loss_lines(log1)) > 2
    for l1, l2 in zip(_loss_lines(log1), _loss_lines(log2)):
        v1 = [float(v) for v in re.findall(r"-?\d+\.\d+", l1)]
        v2 = [float(v) for v in re.findall(r"-?\d+\.\d+", l2)]
        assert v1 == pytest.approx(v2, abs=2e-4), (l1, l2)


@pytest.mark.slow
def test_torchrun_only_rank0_writes(ivlp_runs):
    outs, stdouts = ivlp_runs
    files = _files(outs[2])
    assert files == _files(outs[1])  # no second log, results.json, checkpoint or event file
    assert files.count("results.json") == 1 and files.count("log.txt") == 1
    assert files.count("tensorboard/<events>") == 1
    assert not [f for f in files if f.endswith(".tmp") or "rank" in f]
    # Rank 1 prints nothing: each evaluation's lines appear once in the combined stdout.
    assert stdouts[2].count("* total:") == stdouts[1].count("* total:") > 0
    assert stdouts[2].count("Setting fixed seed") == 1


@pytest.mark.slow
def test_torchrun_resume_matches_uninterrupted(ivlp_runs, tmp_path, data_root):
    """An interrupted 2-process run resumed under torchrun (every rank loads rank 0's checkpoint)."""
    full = ivlp_runs[0][2]
    crashed = tmp_path / "crashed"
    shutil.copytree(full, crashed)
    (crashed / "prompt_learner" / "model.pth.tar-2").unlink()
    (crashed / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")
    (crashed / "results.json").unlink()
    _launch(train_argv(data_root, crashed, "IVLP", *IVLP_OPTS), 2)
    assert "Found checkpoint" in (crashed / "log.txt").read_text()
    assert len(list(crashed.glob("log.txt-*"))) == 1  # the previous log kept once, by rank 0
    a = safe_load(full / "prompt_learner" / "model.pth.tar-2")["state_dict"]
    b = safe_load(crashed / "prompt_learner" / "model.pth.tar-2")["state_dict"]
    _assert_state_close(a, b, 1e-6)


@pytest.mark.slow
def test_torchrun_caspl_boost_matches_one_process(tmp_path, data_root):
    """Phase 1 with the frozen teacher replicated per rank: one boost_prompts.pt, equal to one process's."""
    outs = {}
    for nproc in (1, 2):
        outs[nproc] = tmp_path / f"np{nproc}"
        _launch(train_argv(data_root, outs[nproc], "CasPL_Boost", *BOOST_OPTS), nproc)
    assert _files(outs[2]) == _files(outs[1])
    assert _files(outs[2]).count("boost_prompts.pt") == 1
    a, b = (safe_load(outs[n] / "boost_prompts.pt") for n in (1, 2))
    for tower in ("text", "vision"):
        for x, y in zip(a[tower], b[tower], strict=True):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=PROMPT_ATOL)
    r1, r2 = (json.loads((outs[n] / "results.json").read_text()) for n in (1, 2))
    assert r1["metrics"] == r2["metrics"]
    # The held-out KL is summed over every rank's shard, not rank 0's alone.
    for key in ("kd_heldout_before", "kd_heldout_after"):
        assert r2[key] == pytest.approx(r1[key], rel=1e-5)
    log1, log2 = ((outs[n] / "log.txt").read_text() for n in (1, 2))
    assert _result_lines(log1) == _result_lines(log2)


# ---------------------------------------------------------------------------- TRAIN.COMPILE
@pytest.mark.slow
def test_compile_flag_compiles_forward_and_keeps_checkpoints(data_root, tmp_path, monkeypatch):
    """TRAIN.COMPILE compiles the model in place: same state_dict keys, same step as eager.

    Uses torch.compile's "eager" backend (dynamo tracing without code generation): inductor's C++ build
    takes minutes on a small CPU; the wiring under test is the same.
    """
    dynamo = pytest.importorskip("torch._dynamo")
    if not dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this platform")
    from tests.test_methods_train import build

    original = torch.nn.Module.compile
    calls = []

    def eager_compile(self, *args, **kwargs):
        calls.append(kwargs.get("mode"))
        return original(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    opts = IVLP_OPTS[:10] + ["DATASET.NUM_SHOTS", "1"]
    plain = build(data_root, tmp_path / "plain", "IVLP", *opts)
    compiled = build(data_root, tmp_path / "compiled", "IVLP", *opts, "TRAIN.COMPILE", "True")
    assert calls == [None] and plain.model._compiled_call_impl is None
    assert compiled.model._compiled_call_impl is not None
    assert compiled.model.state_dict().keys() == plain.model.state_dict().keys()
    batch = next(iter(plain.train_loader_x))
    loss_plain = plain.forward_backward(batch)["loss"]
    loss_compiled = compiled.forward_backward(batch)["loss"]
    torch.testing.assert_close(loss_compiled, loss_plain, rtol=1e-5, atol=1e-6)
    _assert_state_close(
        compiled.model.prompt_learner.state_dict(), plain.model.prompt_learner.state_dict(), 1e-6
    )
    compiled.save_model(1, str(tmp_path / "compiled"))
    saved = safe_load(tmp_path / "compiled" / "prompt_learner" / "model.pth.tar-1")["state_dict"]
    assert saved.keys() == plain.model.prompt_learner.state_dict().keys()
