"""Optimizers and per-epoch lr schedulers built from cfg.OPTIM (Dassl's names and semantics)."""

from caspl.optim.lr_scheduler import AVAI_SCHEDS, EpochLRScheduler, build_lr_scheduler
from caspl.optim.optimizer import AVAI_OPTIMS, build_optimizer

__all__ = ["AVAI_OPTIMS", "AVAI_SCHEDS", "EpochLRScheduler", "build_lr_scheduler", "build_optimizer"]
