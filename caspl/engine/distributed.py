"""Data-parallel training under torchrun: process group, per-epoch sharded shuffling, exact sharded eval.

One process (no torchrun) is the special case world_size == 1 of the same code path, so a run with N
processes and per-process batch B/N follows the same sample order as one process with batch B, and
(with deterministic transforms) ends with the same prompts up to float rounding.

Every collective here is called by every rank in the same order; the trainer guarantees that by running
the same code path on every rank (same number of batches per epoch, same evaluation schedule).
"""

import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

T = TypeVar("T")

# Whether this module created the default process group (then `cleanup` destroys it).
_OWNS_GROUP = False


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
        global _OWNS_GROUP
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            cuda = use_cuda and torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend="nccl" if cuda else "gloo")
            _OWNS_GROUP = True
        return cls(rank, world, local_rank)

    def device(self, use_cuda: bool) -> torch.device:
        if use_cuda and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    @property
    def _comm_device(self) -> torch.device:
        """Where tensors must live for this backend's collectives (nccl: this rank's GPU)."""
        if self.enabled and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    # ------------------------------------------------------------------ gradients and parameters
    def average_gradients(self, params: Iterable[nn.Parameter], weight: float | None = None) -> None:
        """Gradients averaged over processes in one all-reduce (what DDP does, without wrapping the model).

        `weight` is this process's share of the global batch (its number of samples): the result is the
        weighted mean sum_r w_r g_r / sum_r w_r, which equals the gradient of the single-process
        batch-mean loss even when a last, short global batch gives the ranks unequal slices.
        Without `weight`, the plain mean.
        """
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        w = 1.0 if weight is None else float(weight)
        flat = torch.cat([g.detach().reshape(-1).float() for g in grads])
        if w != 1.0:
            flat.mul_(w)
        flat = torch.cat([flat, flat.new_full((1,), w)])
        comm = flat.to(self._comm_device)
        dist.all_reduce(comm, op=dist.ReduceOp.SUM)
        flat = comm.to(grads[0].device)
        flat = flat[:-1] / flat[-1]
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    @torch.no_grad()
    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every process (identical start, even unseeded)."""
        if not self.enabled:
            return
        for t in list(module.parameters()) + list(module.buffers()):
            buf = t.detach().to(self._comm_device).contiguous()
            dist.broadcast(buf, src=0)
            if buf.data_ptr() != t.data_ptr():
                t.copy_(buf)

    # ------------------------------------------------------------------ scalars and objects
    def all_reduce_mean(self, tensor: Tensor) -> Tensor:
        """The element-wise mean of `tensor` over processes (a new tensor on tensor's device)."""
        if not self.enabled:
            return tensor
        t = tensor.detach().to(self._comm_device, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return (t / self.world_size).to(tensor.device)

    def mean(self, value: float) -> float:
        """The mean of a scalar over processes."""
        if not self.enabled:
            return value
        return float(self.all_reduce_mean(torch.tensor([float(value)], dtype=torch.float64)).item())

    def sum(self, *values: float) -> list[float]:
        """Each scalar summed over processes (one all-reduce)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().tolist()

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` on every process (picklable objects)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device)
        return box[0]

    def shared_seed(self, seed: int) -> int:
        """`seed` when fixed (>= 0); else a random seed drawn by rank 0 and shared by every process."""
        if seed >= 0:
            return seed
        return self.broadcast_object(random.SystemRandom().randrange(2**31))

    def gather(self, tensor: Tensor) -> list[Tensor]:
        """Every process's tensor (CPU), in rank order; shapes may differ between processes."""
        if not self.enabled:
            return [tensor.cpu()]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, tensor.cpu())
        return out

    def gather_shards(self, tensor: Tensor) -> Tensor:
        """The full dataset-order tensor from each rank's ShardSampler part (rank r holds rows r, r+W, ...).

        One all_gather of tensors padded to the longest part (fast on nccl and gloo); every process gets
        the result. A rank with no rows (fewer samples than processes) may pass an empty tensor of any shape.
        """
        if not self.enabled:
            return tensor
        metas: list[Any] = [None] * self.world_size
        dist.all_gather_object(metas, (tensor.shape[0], tuple(tensor.shape[1:]), tensor.dtype))
        lengths = [m[0] for m in metas]
        filled = [m for m in metas if m[0] > 0] or metas
        trailing, dtype = filled[0][1], filled[0][2]
        longest = max(lengths)
        local = tensor.to(self._comm_device, dtype=dtype).reshape(tensor.shape[0], *trailing)
        padded = local.new_zeros((longest, *trailing))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        out = padded.new_empty((sum(lengths), *trailing))
        for r, (part, n) in enumerate(zip(parts, lengths)):
            out[r :: self.world_size] = part[:n]
        return out.to(tensor.device)

    # ------------------------------------------------------------------ ordering
    def barrier(self) -> None:
        if not self.enabled:
            return
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()

    def run_in_order(self, fn: Callable[[], T]) -> T:
        """Run `fn` (no collectives inside) on rank 0 first, then each node's first process, then the rest.

        For work that may write shared files (dataset splits, downloaded weights): rank 0 fills a shared
        file system before anyone reads it; a node with its own disk gets it filled once by its first process.
        """
        if not self.enabled:
            return fn()
        stages = (self.rank == 0, self.rank != 0 and self.local_rank == 0, self.local_rank != 0)
        result: Any = None
        for mine in stages:
            if mine:
                result = fn()
            self.barrier()
        return result


def cleanup() -> None:
    """Destroy the process group `DistContext.from_env` created (so torchrun's workers exit cleanly)."""
    global _OWNS_GROUP
    if _OWNS_GROUP and dist.is_initialized():
        dist.destroy_process_group()
    _OWNS_GROUP = False


def batch_size_of(batch: Any) -> int | None:
    """The number of samples in a loader batch (a dict with "img", or the first tensor found)."""
    if isinstance(batch, dict):
        if isinstance(batch.get("img"), Tensor):
            return int(batch["img"].shape[0])
        batch = list(batch.values())
    if isinstance(batch, list | tuple):
        for item in batch:
            if isinstance(item, Tensor) and item.dim() > 0:
                return int(item.shape[0])
    return None


class ShardedEpochSampler(Sampler[int]):
    """Shuffles with a generator seeded by (seed, epoch), cuts global batches, gives each rank its slice.

    With world_size W and per-process batch b, global batch i is the same b*W samples as batch i of a
    single process with batch b*W, so data-parallel runs follow the single-process sample order. Every
    rank gets the same number of batches: a last, short global batch of L samples (drop_last False) is
    split into W near-equal slices (L >= W), or dropped when shorter than W (a rank would get nothing).
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:  # fmt: skip
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
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
        order, gb, w = self._global_order(), self.batch_size * self.world_size, self.world_size
        n_batches = self.n // gb if self.drop_last else -(-self.n // gb)
        mine: list[int] = []
        for i in range(n_batches):
            chunk = order[i * gb : (i + 1) * gb]
            if len(chunk) < w:  # a tail too short to give every rank a sample: dropped
                break
            # full chunks: exactly batch_size each; a short tail: near-equal, non-empty slices
            lo, hi = self.rank * len(chunk) // w, (self.rank + 1) * len(chunk) // w
            mine.extend(chunk[lo:hi])
        return mine

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        gb = self.batch_size * self.world_size
        full, tail = divmod(self.n, gb)
        n = full * self.batch_size
        if tail and not self.drop_last and tail >= self.world_size:
            n += (self.rank + 1) * tail // self.world_size - self.rank * tail // self.world_size
        return n


class ShardSampler(Sampler[int]):
    """Evaluation: rank r takes samples r, r+W, ... (every sample exactly once across ranks)."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.n, self.rank, self.world_size = n, rank, world_size
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
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
    )
