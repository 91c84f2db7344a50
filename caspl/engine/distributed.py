"""Data-parallel training under torchrun: process group, per-epoch sharded shuffling, exact sharded eval.

One process (no torchrun) is the special case world_size == 1 of the same code path, so a run with N
processes and per-process batch B/N follows the same sample order as one process with batch B.
"""

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Sampler


@dataclass
class DistContext:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, use_cuda: bool = True) -> "DistContext":
        """Join the process group torchrun describes in the environment (gloo on CPU, nccl on GPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            cuda = use_cuda and torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        return cls(rank, world, local_rank)

    def device(self, use_cuda: bool) -> torch.device:
        if use_cuda and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Mean of the gradients over processes (what DDP does, without wrapping the model)."""
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, value: float) -> float:
        """The mean of a scalar over processes."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.item() / self.world_size

    def gather(self, tensor: Tensor) -> list[Tensor]:
        """Every process's tensor (CPU), in rank order; shapes may differ between processes."""
        if not self.enabled:
            return [tensor.cpu()]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, tensor.cpu())
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


class ShardedEpochSampler(Sampler[int]):
    """Shuffles with a generator seeded by (seed, epoch), cuts global batches, gives each rank its slice.

    With world_size W and per-process batch b, global batch i is the same b*W samples as batch i of a
    single process with batch b*W, so data-parallel runs follow the single-process sample order.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:  # fmt: skip
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.shuffle, self.drop_last = rank, world_size, shuffle, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def _indices(self) -> list[int]:
        order, gb = self._global_order(), self.batch_size * self.world_size
        n_batches = self.n // gb if self.drop_last else -(-self.n // gb)
        mine: list[int] = []
        for i in range(n_batches):
            chunk = order[i * gb : (i + 1) * gb]
            if len(chunk) < self.world_size:  # a tail too short to give every rank a sample: dropped
                break
            per = -(-len(chunk) // self.world_size)
            mine.extend(chunk[self.rank * per : (self.rank + 1) * per])
        return mine

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


class ShardSampler(Sampler[int]):
    """Evaluation: rank r takes samples r, r+W, ... (every sample exactly once across ranks)."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def rebuild_loader(
    loader: DataLoader, sampler: Sampler[int], batch_size: int, drop_last: bool = False
) -> DataLoader:
    """The same dataset/collate/worker settings as `loader`, with another sampler and batch size."""
    workers = loader.num_workers
    return DataLoader(
        loader.dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=drop_last,
        persistent_workers=loader.persistent_workers if workers > 0 else False,
        prefetch_factor=loader.prefetch_factor if workers > 0 else None,
        worker_init_fn=loader.worker_init_fn,
    )
