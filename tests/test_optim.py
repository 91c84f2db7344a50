"""Optimizers and per-epoch lr schedules built from cfg.OPTIM (Dassl semantics)."""

import io
import math

import pytest
import torch
from torch import nn

from caspl.config import get_cfg_default
from caspl.optim import AVAI_OPTIMS, build_lr_scheduler, build_optimizer


def _optim_cfg(**kw):
    cfg = get_cfg_default()
    for k, v in kw.items():
        setattr(cfg.OPTIM, k, v)
    return cfg.OPTIM


def _lrs(optim_cfg, epochs: int, groups: int = 1) -> list[list[float]]:
    """lr of every group for each epoch, stepping the scheduler once per epoch like the engine."""
    params = [nn.Parameter(torch.zeros(1)) for _ in range(groups)]
    opt = build_optimizer(None, optim_cfg, param_groups=[{"params": [p]} for p in params])
    sched = build_lr_scheduler(opt, optim_cfg)
    out = []
    for _ in range(epochs):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def _cos(base: float, t: int, total: int) -> float:
    return base * (1 + math.cos(math.pi * t / total)) / 2


def test_cosine_with_constant_warmup_matches_hand_sequence():
    # PromptSRC's setting: 5 epochs, 1 warmup epoch at a constant 1e-5, then cosine restarted (recount)
    o = _optim_cfg(
        NAME="sgd", LR=0.0025, MAX_EPOCH=5, LR_SCHEDULER="cosine",
        WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5, WARMUP_RECOUNT=True,
    )  # fmt: skip
    expected = [1e-5, 0.0025, _cos(0.0025, 1, 5), _cos(0.0025, 2, 5), _cos(0.0025, 3, 5)]
    got = [lr[0] for lr in _lrs(o, 5)]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cosine_without_warmup_equals_torch_cosine_annealing():
    o = _optim_cfg(LR=0.1, MAX_EPOCH=7, LR_SCHEDULER="cosine", WARMUP_EPOCH=-1)
    p = nn.Parameter(torch.zeros(1))
    ref_opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, 7)
    expected = []
    for _ in range(7):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert [lr[0] for lr in _lrs(o, 7)] == pytest.approx(expected, rel=1e-12)


def test_linear_warmup_follows_dassl_formula():
    # epoch 0 at WARMUP_MIN_LR, then LR * e / WARMUP_EPOCH, then the schedule from LR
    o = _optim_cfg(
        LR=0.01, MAX_EPOCH=6, LR_SCHEDULER="cosine",
        WARMUP_EPOCH=3, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-4, WARMUP_RECOUNT=True,
    )  # fmt: skip
    expected = [1e-4, 0.01 / 3, 0.02 / 3, 0.01, _cos(0.01, 1, 6), _cos(0.01, 2, 6)]
    assert [lr[0] for lr in _lrs(o, 6)] == pytest.approx(expected, rel=1e-12)


def test_warmup_without_recount_continues_the_curve_from_base_lr():
    # RECOUNT=False: the main schedule keeps the global epoch count; it restarts at LR and is rescaled
    o = _optim_cfg(
        LR=0.01, MAX_EPOCH=5, LR_SCHEDULER="cosine",
        WARMUP_EPOCH=2, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5, WARMUP_RECOUNT=False,
    )  # fmt: skip
    g = [(1 + math.cos(math.pi * t / 5)) for t in range(5)]
    expected = [1e-5, 1e-5, 0.01, 0.01 * g[3] / g[2], 0.01 * g[4] / g[2]]
    assert [lr[0] for lr in _lrs(o, 5)] == pytest.approx(expected, rel=1e-12)


def test_multi_step_counts_milestones_after_warmup():
    o = _optim_cfg(
        LR=1.0, MAX_EPOCH=8, LR_SCHEDULER="multi_step", STEPSIZE=(2, 4), GAMMA=0.5,
        WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=0.01, WARMUP_RECOUNT=True,
    )  # fmt: skip
    # after 1 warmup epoch the milestone count restarts: decays at global epochs 1+2 and 1+4
    expected = [0.01, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert [lr[0] for lr in _lrs(o, 8)] == pytest.approx(expected)


def test_single_step_uses_last_stepsize_and_never_decays_when_non_positive():
    o = _optim_cfg(LR=1.0, MAX_EPOCH=6, LR_SCHEDULER="single_step", STEPSIZE=(5, 2), GAMMA=0.1)
    assert [lr[0] for lr in _lrs(o, 6)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    o = _optim_cfg(LR=1.0, MAX_EPOCH=4, LR_SCHEDULER="single_step", STEPSIZE=(-1,), GAMMA=0.1)
    assert [lr[0] for lr in _lrs(o, 4)] == [1.0] * 4


def test_schedule_scales_every_param_group_from_its_own_base_lr():
    o = _optim_cfg(LR=0.02, MAX_EPOCH=4, LR_SCHEDULER="cosine", WARMUP_EPOCH=-1)
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = build_optimizer(None, o, param_groups=[{"params": [a]}, {"params": [b], "lr": 0.2}])
    sched = build_lr_scheduler(opt, o)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([_cos(0.02, 1, 4), _cos(0.2, 1, 4)])


def test_state_dict_round_trip_resumes_identically():
    o = _optim_cfg(
        NAME="sgd", LR=0.0025, MAX_EPOCH=8, LR_SCHEDULER="cosine",
        WARMUP_EPOCH=2, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-5,
    )  # fmt: skip
    full = [lr[0] for lr in _lrs(o, 8)]

    p = nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], o)
    sched = build_lr_scheduler(opt, o)
    for _ in range(3):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # the scheduler state must be plain data

    # a fresh run (lr back at epoch 0) restores the scheduler alone and continues where the first stopped
    p2 = nn.Parameter(torch.zeros(1))
    opt2 = build_optimizer([p2], o)
    sched2 = build_lr_scheduler(opt2, o)
    assert opt2.param_groups[0]["lr"] == pytest.approx(full[0])
    sched2.load_state_dict(ckpt["scheduler"])
    resumed = []
    for _ in range(3, 8):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert resumed == pytest.approx(full[3:], rel=1e-12)


def test_frozen_parameters_are_not_given_to_the_optimizer():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    opt = build_optimizer(model, _optim_cfg(NAME="adamw"))
    params = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in params} == {id(p) for p in model[1].parameters()}
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model[0], _optim_cfg())


@pytest.mark.parametrize(
    "name, cls, extra",
    [
        ("sgd", torch.optim.SGD, {"momentum": 0.8, "dampening": 0.1, "nesterov": False}),
        ("adam", torch.optim.Adam, {"betas": (0.8, 0.9), "amsgrad": False}),
        ("amsgrad", torch.optim.Adam, {"amsgrad": True}),
        ("adamw", torch.optim.AdamW, {"betas": (0.8, 0.9)}),
        ("rmsprop", torch.optim.RMSprop, {"alpha": 0.5, "momentum": 0.8}),
    ],
)
def test_optimizer_names_and_hyper_parameters(name, cls, extra):
    o = _optim_cfg(
        NAME=name, LR=0.03, WEIGHT_DECAY=1e-3, MOMENTUM=0.8, SGD_DAMPNING=0.1,
        ADAM_BETA1=0.8, ADAM_BETA2=0.9, RMSPROP_ALPHA=0.5,
    )  # fmt: skip
    opt = build_optimizer(nn.Linear(2, 2), o)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.03 and group["weight_decay"] == 1e-3
    for k, v in extra.items():
        assert group[k] == v


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_optimizer(nn.Linear(2, 2), _optim_cfg(NAME="lion"))
    assert "lion" in str(err.value) and all(n in str(err.value) for n in AVAI_OPTIMS)


def test_unknown_scheduler_and_warmup_type_are_named():
    opt = build_optimizer(nn.Linear(2, 2), _optim_cfg())
    with pytest.raises(ValueError, match="'poly'.*cosine"):
        build_lr_scheduler(opt, _optim_cfg(LR_SCHEDULER="poly"))
    with pytest.raises(ValueError, match="'exp'.*constant"):
        build_lr_scheduler(opt, _optim_cfg(LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="exp"))


def test_staged_lr_gives_new_layers_the_full_lr():
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 2))
    o = _optim_cfg(NAME="sgd", LR=0.1, STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1)
    opt = build_optimizer(model, o)
    by_lr = {round(g["lr"], 12): {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_lr[0.1] == {id(p) for p in model.head.parameters()}
    assert by_lr[0.01] == {id(p) for p in model.backbone.parameters()}
    with pytest.raises(ValueError, match="neck"):
        build_optimizer(model, _optim_cfg(STAGED_LR=True, NEW_LAYERS=("neck",)))
