"""Per-epoch lr schedules from cfg.OPTIM: cosine / single_step / multi_step with Dassl's warmup.

The schedule is written in closed form (lr as a function of the epoch index), which gives the same
per-epoch learning rates as Dassl's chained torch schedulers wrapped in its warmup schedulers, and makes
resume trivial: the whole state is the epoch counter plus the settings.

Learning rate used during epoch e (0-based; the engine steps the scheduler once after each epoch):
- warmup (e < WARMUP_EPOCH): constant -> WARMUP_CONS_LR; linear -> WARMUP_MIN_LR at e = 0, else
  base_lr * e / WARMUP_EPOCH (Dassl's formula).
- afterwards base_lr * g(t) / g(t0), g being the main schedule's multiplier at its own epoch t:
  WARMUP_RECOUNT=True restarts its count after warmup (t = e - WARMUP_EPOCH, t0 = 0); False keeps
  counting from the start (t = e, t0 = WARMUP_EPOCH), so the schedule resumes at base_lr and follows
  the remaining part of the curve, as Dassl's chained schedulers do.
"""

import math
from bisect import bisect_right
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

AVAI_SCHEDS = ("single_step", "multi_step", "cosine")
AVAI_WARMUPS = ("constant", "linear")


def _as_int_list(value: Any, key: str) -> list[int]:
    values = list(value) if isinstance(value, list | tuple) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"OPTIM.{key} must be integers (epochs), got {value!r}")
    return values


class EpochLRScheduler(LRScheduler):
    """Dassl's lr schedules (+ warmup) as one closed-form scheduler, stepped once per epoch."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        kind: str,
        max_epoch: int,
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        warmup_epoch: int = 0,
        warmup_type: str = "linear",
        warmup_lr: float = 1e-5,
        warmup_recount: bool = True,
    ) -> None:
        if kind not in AVAI_SCHEDS:
            raise ValueError(f"unknown OPTIM.LR_SCHEDULER {kind!r}; valid: {', '.join(AVAI_SCHEDS)}")
        if warmup_epoch > 0 and warmup_type not in AVAI_WARMUPS:
            raise ValueError(f"unknown OPTIM.WARMUP_TYPE {warmup_type!r}; valid: {', '.join(AVAI_WARMUPS)}")
        if kind == "cosine" and max_epoch <= 0:
            raise ValueError(f"OPTIM.MAX_EPOCH must be > 0 for the cosine schedule, got {max_epoch}")
        # plain python values only: the state dict must load with torch.load(weights_only=True)
        self.kind = kind
        self.max_epoch = int(max_epoch)
        self.milestones = sorted(int(m) for m in (milestones or []))
        self.gamma = float(gamma)
        self.warmup_epoch = max(int(warmup_epoch), 0)
        self.warmup_type = warmup_type
        self.warmup_lr = float(warmup_lr)
        self.warmup_recount = bool(warmup_recount)
        super().__init__(optimizer)

    def _multiplier(self, t: int) -> float:
        """The main schedule's factor on base_lr at its own epoch t."""
        if self.kind == "cosine":  # CosineAnnealingLR with eta_min = 0, T_max = MAX_EPOCH
            return 0.5 * (1.0 + math.cos(math.pi * t / self.max_epoch))
        if self.kind == "single_step":  # StepLR: one decay every milestones[0] epochs
            return self.gamma ** (t // self.milestones[0])
        return self.gamma ** bisect_right(self.milestones, t)  # MultiStepLR

    def lr_at(self, epoch: int) -> list[float]:
        """Learning rates of every param group during `epoch` (0-based)."""
        w = self.warmup_epoch
        if epoch < w:
            if self.warmup_type == "constant":
                return [self.warmup_lr for _ in self.base_lrs]
            if epoch == 0:
                return [self.warmup_lr for _ in self.base_lrs]
            return [base * epoch / w for base in self.base_lrs]
        t, t0 = (epoch - w, 0) if self.warmup_recount else (epoch, w)
        g0 = self._multiplier(t0)
        # g0 is 1 except without recount, where it is the curve's value at the end of warmup
        scale = self._multiplier(t) / g0 if g0 > 0 else self._multiplier(t)
        return [base * scale for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        """Learning rates for the current epoch counter (called by step())."""
        return self.lr_at(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float]:
        return self.lr_at(self.last_epoch)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the epoch counter and settings, and put the matching lr back into the optimizer."""
        super().load_state_dict(state_dict)
        # the optimizer's own state dict also carries lr, but do not depend on it being loaded too
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(self.last_epoch), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> EpochLRScheduler:
    """The per-epoch lr scheduler of cfg.OPTIM (LR_SCHEDULER, STEPSIZE, GAMMA, MAX_EPOCH, WARMUP_*)."""
    kind = optim_cfg.LR_SCHEDULER
    if kind not in AVAI_SCHEDS:
        raise ValueError(f"unknown OPTIM.LR_SCHEDULER {kind!r}; valid: {', '.join(AVAI_SCHEDS)}")
    max_epoch = int(optim_cfg.MAX_EPOCH)
    milestones: list[int] = []
    if kind == "single_step":
        step = _as_int_list(optim_cfg.STEPSIZE, "STEPSIZE")[-1]  # Dassl takes the last of a list
        milestones = [step if step > 0 else max(max_epoch, 1)]  # <= 0: never decay within training
    elif kind == "multi_step":
        if not isinstance(optim_cfg.STEPSIZE, list | tuple):
            raise TypeError(
                f"OPTIM.STEPSIZE must be a list of epochs for multi_step, got {optim_cfg.STEPSIZE!r}"
            )
        milestones = _as_int_list(optim_cfg.STEPSIZE, "STEPSIZE")
    return EpochLRScheduler(
        optimizer,
        kind,
        max_epoch,
        milestones=milestones,
        gamma=optim_cfg.GAMMA,
        warmup_epoch=optim_cfg.WARMUP_EPOCH,
        warmup_type=optim_cfg.WARMUP_TYPE,
        warmup_lr=optim_cfg.WARMUP_CONS_LR
        if optim_cfg.WARMUP_TYPE == "constant"
        else optim_cfg.WARMUP_MIN_LR,
        warmup_recount=optim_cfg.WARMUP_RECOUNT,
    )
