"""Peak live tensor memory of a block, counted op by op (exact on any device, meta included).

A TorchDispatchMode sees every op below autograd (forward, backward, checkpoint recomputation) and its
output tensors. Each new storage (an output whose storage no input shares) is counted once until it is freed (a weak reference per storage, checked
before each op's outputs are added), so the peak is the largest total of tensor storages made inside the
block and alive at the same time. Not counted: storages that existed before the block (weights, buffers,
inputs) and a kernel's private scratch space. Unlike RSS it does not depend on the C allocator's caching
or on other threads, so it can be asserted in tests and computed for ViT-B/16 shapes on the meta device
without running the arithmetic.
"""

from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _key(t: torch.Tensor) -> int:
    """The StorageImpl's address: unique while the storage lives (meta tensors too)."""
    return t.untyped_storage()._cdata


class LiveTensorMemory(TorchDispatchMode):
    """`with LiveTensorMemory() as mem: ...` then `mem.peak_bytes` (and `mem.current_bytes` at the end)."""

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current_bytes = 0
        self.peak_bytes = 0

    def _sweep(self) -> None:
        dead = [key for key, (ref, _) in self._live.items() if ref.expired()]
        for key in dead:
            self.current_bytes -= self._live.pop(key)[1]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self._sweep()
        # An output sharing an input's storage (a view, an in-place op) allocates nothing.
        inputs = {_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self._live and key not in inputs:
                    n = storage.nbytes()
                    self._live[key] = (StorageWeakRef(storage), n)
                    self.current_bytes += n
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        return out

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20
