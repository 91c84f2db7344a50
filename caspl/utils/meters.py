"""Running averages for the training log."""

from collections import defaultdict
from typing import Any

import torch


class AverageMeter:
    """Current value and running average of one quantity."""

    def __init__(self) -> None:
        self.val = self.avg = self.sum = 0.0
        self.count = 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = float(val)
        self.sum += self.val * n
        self.count += n
        self.avg = self.sum / self.count


class LazyMeter:
    """Last value and running sum of a scalar that may be a device tensor: read (and synced) only when shown."""

    def __init__(self) -> None:
        self.val: Any = 0.0
        self.sum: Any = 0.0
        self.count = 0

    def update(self, val: Any) -> None:
        self.val = val.detach() if isinstance(val, torch.Tensor) else float(val)
        self.sum = self.sum + self.val
        self.count += 1

    def current(self) -> float:
        return float(self.val)

    def average(self) -> float:
        return float(self.sum) / max(self.count, 1)


class MetricMeter:
    """Named LazyMeters printed as `name val (avg)`."""

    def __init__(self, delimiter: str = " ") -> None:
        self.meters: dict[str, LazyMeter] = defaultdict(LazyMeter)
        self.delimiter = delimiter

    def update(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            self.meters[k].update(v)

    def state(self) -> torch.Tensor:
        """[n_meters, 2] float64 (current, average) on the meters' device, without a host sync; under
        torchrun the trainer all-reduces it so every printed number is the mean over processes."""
        rows = []
        device = None
        for m in self.meters.values():
            for v in (m.val, m.sum):
                if isinstance(v, torch.Tensor):
                    device = v.device
        for m in self.meters.values():
            cur = torch.as_tensor(m.val, dtype=torch.float64, device=device).reshape(())
            total = torch.as_tensor(m.sum, dtype=torch.float64, device=device).reshape(())
            rows.append(torch.stack([cur, total / max(m.count, 1)]))
        return torch.stack(rows) if rows else torch.zeros((0, 2), dtype=torch.float64, device=device)

    def format(self, state: torch.Tensor | None = None) -> str:
        """`name current (average)` for each meter, from `state()` or an all-reduced copy of it."""
        values = (self.state() if state is None else state).tolist()
        return self.delimiter.join(f"{k} {cur:.4f} ({avg:.4f})" for k, (cur, avg) in zip(self.meters, values))

    def __str__(self) -> str:
        return self.format()
