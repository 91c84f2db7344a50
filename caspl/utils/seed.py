"""Seeding and RNG state capture (for exact resume)."""

import random
from typing import Any

import numpy as np
import torch


def set_random_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices), as Dassl does before building a trainer."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def get_rng_state() -> dict[str, Any]:
    """Every RNG state a training epoch consumes, in a form torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        # This process's GPU only: reading every device's state would open a CUDA context on each GPU
        # from every torchrun process.
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what get_rng_state captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, list):  # checkpoints of earlier versions: every device's state
        device = torch.cuda.current_device() if torch.cuda.is_available() else -1
        cuda = cuda[device] if 0 <= device < len(cuda) else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)
