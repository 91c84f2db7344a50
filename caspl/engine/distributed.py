"""Data-parallel training under torchrun: process group, per-epoch sharded shuffling, exact sharded eval.

One process (no torchrun) is the special case world_size == 1 of the same code path, so a run with N
processes and per-process batch B/N follows the same sample order as one process with batch B, and
(with deterministic transforms) ends with the same prompts up to float rounding.

Every collective here is called by every rank in the same order; the trainer guarantees that by running
the same code path on every rank (same number of batches per epoch, same evaluation schedule).
"""

import datetime
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler
from yacs.config import CfgNode as CN

from caspl.config import register_config

T = TypeVar("T")

DEFAULT_TIMEOUT_MIN = 10.0


@register_config
def add_dist_cfg(cfg: CN) -> None:
    """DIST: process-group settings under torchrun."""
    cfg.DIST = CN()
    # How long joining the process group, or any collective, waits for every rank before the run stops
    # with an error naming the ranks that did not answer. Minutes, not hours: a stalled rank must not
    # hold a job silently. Raise it for a first run whose rank 0 downloads weights or builds splits.
    cfg.DIST.TIMEOUT_MIN = DEFAULT_TIMEOUT_MIN


class DistTimeoutError(RuntimeError):
    """A collective (or joining the group) waited DIST.TIMEOUT_MIN for ranks that never answered."""


def _is_timeout(error: BaseException) -> bool:
    text = str(error).lower()
    return "timed out" in text or "timeout" in text


# Whether this module created the default process group (then `cleanup` destroys it).
_OWNS_GROUP = False


@dataclass
class DistContext:
    """This process's place in the job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_min: float = DEFAULT_TIMEOUT_MIN
    _calls: int = 0  # collectives called so far (the same sequence on every rank)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, use_cuda: bool = True, timeout_min: float = DEFAULT_TIMEOUT_MIN) -> "DistContext":
        """Join the process group torchrun describes in the environment (gloo on CPU, nccl on GPU); joining
        and every collective wait at most `timeout_min` minutes (DIST.TIMEOUT_MIN)."""
        global _OWNS_GROUP
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(timeout_min=timeout_min)
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            cuda = use_cuda and torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(local_rank)
            try:
                dist.init_process_group(
                    backend="nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=timeout_min)
                )
            except RuntimeError as e:
                if not _is_timeout(e):
                    raise
                raise DistTimeoutError(
                    f"rank {rank}: joining the process group of {world} processes timed out after "
                    f"{timeout_min:g} min (DIST.TIMEOUT_MIN): a rank did not start or stalled ({e})"
                ) from e
            _OWNS_GROUP = True
        return cls(rank, world, local_rank, timeout_min)

    # ------------------------------------------------------------------ timeouts
    def _call(self, what: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run collective `fn`; a timeout becomes an error naming the ranks that did not answer."""
        self._calls += 1
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:
            if not _is_timeout(e):
                raise
            missing = self.unresponsive_ranks(self._calls)
            who = f"rank(s) {', '.join(map(str, missing))}" if missing else "a rank (could not tell which)"
            raise DistTimeoutError(
                f"rank {self.rank}: {what} timed out after {self.timeout_min:g} min (DIST.TIMEOUT_MIN): {who} "
                "did not answer (stalled, stopped or dead). The run stops; its last checkpoint is kept."
            ) from e

    def unresponsive_ranks(self, call: int) -> list[int]:
        """After a collective timed out: every rank that can still answer says so through the job's
        key-value store; those silent after a grace period are the ones the collective waited for."""
        try:
            store = dist.distributed_c10d._get_default_store()
        except Exception:  # no store reachable: cannot tell
            return []
        prefix = f"caspl/timeout/{call}"
        store.set(f"{prefix}/{self.rank}", "1")
        grace = min(30.0, max(1.0, self.timeout_min * 60 / 10))
        deadline = time.monotonic() + grace
        missing = list(range(self.world_size))
        while missing and time.monotonic() < deadline:
            missing = [r for r in missing if not store.check([f"{prefix}/{r}"])]
            if missing:
                time.sleep(0.1)
        return missing

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
        self._call("gradient all_reduce", dist.all_reduce, comm, op=dist.ReduceOp.SUM)
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
            self._call("broadcast", dist.broadcast, buf, src=0)
            if buf.data_ptr() != t.data_ptr():
                t.copy_(buf)

    # ------------------------------------------------------------------ scalars and objects
    def all_reduce_mean(self, tensor: Tensor) -> Tensor:
        """The element-wise mean of `tensor` over processes (a new tensor on tensor's device)."""
        if not self.enabled:
            return tensor
        t = tensor.detach().to(self._comm_device, dtype=torch.float64)
        self._call("all_reduce", dist.all_reduce, t, op=dist.ReduceOp.SUM)
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
        self._call("all_reduce", dist.all_reduce, t, op=dist.ReduceOp.SUM)
        return t.cpu().tolist()

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` on every process (picklable objects)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        self._call("broadcast_object_list", dist.broadcast_object_list, box, src=0, device=self._comm_device)
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
        self._call("all_gather_object", dist.all_gather_object, out, tensor.cpu())
        return out

    def gather_shards(self, tensor: Tensor) -> Tensor:
        """The full dataset-order tensor from each rank's ShardSampler part (rank r holds rows r, r+W, ...).

        One all_gather of tensors padded to the longest part (fast on nccl and gloo); every process gets
        the result. A rank with no rows (fewer samples than processes) may pass an empty tensor of any shape.
        """
        if not self.enabled:
            return tensor
        metas: list[Any] = [None] * self.world_size
        meta = (tensor.shape[0], tuple(tensor.shape[1:]), tensor.dtype)
        self._call("all_gather_object", dist.all_gather_object, metas, meta)
        lengths = [m[0] for m in metas]
        filled = [m for m in metas if m[0] > 0] or metas
        trailing, dtype = filled[0][1], filled[0][2]
        longest = max(lengths)
        local = tensor.to(self._comm_device, dtype=dtype).reshape(tensor.shape[0], *trailing)
        padded = local.new_zeros((longest, *trailing))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        self._call("all_gather", dist.all_gather, parts, padded)
        out = padded.new_empty((sum(lengths), *trailing))
        for r, (part, n) in enumerate(zip(parts, lengths)):
            out[r :: self.world_size] = part[:n]
        return out.to(tensor.device)

    # ------------------------------------------------------------------ ordering
    def barrier(self) -> None:
        if not self.enabled:
            return
        if dist.get_backend() == "nccl":
            self._call("barrier", dist.barrier, device_ids=[torch.cuda.current_device()])
        else:
            self._call("barrier", dist.barrier)

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
