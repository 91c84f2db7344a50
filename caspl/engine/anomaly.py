"""Stop a run whose training loss is NaN/inf, naming the step and the loss terms.

On CPU every step is checked at once (reading a CPU tensor costs no device sync). On a GPU the check
stays on the device: each step folds "is this the first non-finite step?" into two small device tensors
(the step index and the loss terms of that step), and the host reads them only in `check()`, which the
loop calls at print frequency and at each epoch's end, so the hot loop never waits for the device.
"""

import math
from typing import Any

import torch
from torch import Tensor


class NonFiniteLossError(FloatingPointError):
    """The training loss (or one of its terms) became NaN or inf."""


def _message(step: int, terms: dict[str, float], describe_step: Any) -> str:
    values = ", ".join(f"{k}={v:.6g}" for k, v in terms.items())
    return (
        f"non-finite training loss at {describe_step(step)}: {values}. Training diverged; the checkpoints "
        "saved so far are kept (lower OPTIM.LR, check PREC, or inspect the data of that step)"
    )


class NonFiniteLossGuard:
    """Watches the values a trainer's forward_backward returns (the loss and its terms)."""

    def __init__(self, describe_step: Any = lambda step: f"step {step}", defer: bool | None = None) -> None:
        self.describe_step = describe_step
        self.defer = defer  # None: defer when the values live on a GPU (True: always, for tests)
        self._names: tuple[str, ...] | None = None
        self._first_step: Tensor | None = None  # device: -1, or the first non-finite step
        self._first_terms: Tensor | None = None  # device: the terms at that step

    def observe(self, step: int, terms: dict[str, Any]) -> None:
        """Record this step's values; raise at once when they are on the CPU (no device to wait for)."""
        host = {k: float(v) for k, v in terms.items() if not isinstance(v, Tensor)}
        device = {k: v for k, v in terms.items() if isinstance(v, Tensor)}
        on_cpu = all(v.device.type == "cpu" for v in device.values())
        if not self.defer and (on_cpu or self.defer is False):
            values = {
                k: float(v) if not isinstance(v, Tensor) else float(v.detach()) for k, v in terms.items()
            }
            if not all(math.isfinite(v) for v in values.values()):
                raise NonFiniteLossError(_message(step, values, self.describe_step))
            return
        if not all(math.isfinite(v) for v in host.values()):  # host floats: known without a sync
            self.check()  # an earlier device step may have gone bad first
            values = {**{k: float("nan") for k in device}, **host}
            raise NonFiniteLossError(_message(step, values, self.describe_step))
        names = tuple(device)
        vec = torch.stack([v.detach().float().reshape(()) for v in device.values()])
        bad = ~torch.isfinite(vec).all()
        if self._first_step is None or self._names != names:
            self.check()  # the terms changed (new epoch of another phase): settle the old record first
            self._names = names
            self._first_step = torch.full((), -1, dtype=torch.long, device=vec.device)
            self._first_terms = torch.zeros_like(vec)
        take = bad & (self._first_step < 0)
        self._first_step = torch.where(take, step, self._first_step)
        self._first_terms = torch.where(take, vec, self._first_terms)

    def check(self) -> None:
        """Raise if any step since the last check was non-finite (one host-device sync on a GPU)."""
        if self._first_step is None:
            return
        first, names, terms = int(self._first_step), self._names, self._first_terms
        self._first_step = self._first_terms = self._names = None
        if first >= 0:
            values = dict(zip(names or (), terms.tolist() if terms is not None else []))
            raise NonFiniteLossError(_message(first, values, self.describe_step))
