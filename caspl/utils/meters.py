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

    def __str__(self) -> str:
        return self.delimiter.join(
            f"{k} {m.current():.4f} ({m.average():.4f})" for k, m in self.meters.items()
        )
