"""Dassl-style trainers: registered models, the epoch loop, checkpoints, resume and evaluation.

Subclasses implement `build_model` (and register the trainable modules with `register_model`),
`forward_backward(batch) -> dict of floats`, and optionally `model_inference`. Output layout, checkpoint
names and printed lines follow Dassl, so CoOp-family tools keep working.
"""

import datetime
import hashlib
import json
import math
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

import caspl
from caspl.engine.anomaly import NonFiniteLossGuard
from caspl.engine.distributed import (
    DistContext,
    ShardedEpochSampler,
    ShardSampler,
    batch_size_of,
    rebuild_loader,
)
from caspl.engine.fingerprint import config_fingerprint, fingerprint_differences
from caspl.engine.run_folder import RESULTS_FILE, read_results
from caspl.evaluation import build_evaluator
from caspl.optim import build_lr_scheduler, build_optimizer
from caspl.utils.checkpoint import atomic_save, atomic_write_text, safe_load
from caspl.utils.meters import AverageMeter, MetricMeter
from caspl.utils.seed import get_rng_state, set_rng_state

CHECKPOINT_POINTER = "checkpoint"  # Dassl: a text file naming the latest checkpoint of a model


class CheckpointMismatchError(ValueError):
    """A checkpoint folder holds another trainer's run or a run with other model-defining settings."""


def load_model_state(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """load_state_dict that names the offending tensor and both shapes, and the file it came from."""
    own = module.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(
                f"{source}: tensor {key!r} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the model (another backbone or prompt setting?)"
            )
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected:
        raise KeyError(
            f"{source}: keys not in the model: {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    missing = [k for k in missing if k in dict(module.named_parameters())]
    if missing:
        raise KeyError(f"{source}: trainable tensors missing from the checkpoint: {missing[:5]}")


def saved_epochs(folder: Path) -> set[int]:
    """The epochs of the model.pth.tar-<epoch> files in one model's folder."""
    suffixes = (p.name.rpartition("-")[2] for p in folder.glob("model.pth.tar-*"))
    return {int(s) for s in suffixes if s.isdigit()}


def first_checkpoint(directory: str | Path) -> Path | None:
    """Any model checkpoint directly under the model folders of `directory` (whatever their names)."""
    found = sorted(Path(directory).glob("*/model*.pth.tar*")) if directory else []
    return found[0] if found else None


def config_hash(cfg: Any) -> str:
    """A short, stable hash of a config (results.json ties numbers to the exact settings)."""
    return hashlib.sha1(cfg.dump(sort_keys=True).encode()).hexdigest()[:12]


class TrainerBase:
    """Registered models with their optimizers and schedulers, saved and restored together."""

    def __init__(self) -> None:
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Any] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()

    def register_model(self, name: str, model: nn.Module, optim: Any = None, sched: Any = None) -> None:
        """Register a module whose state is checkpointed under <output>/<name>/."""
        if name in self._models:
            raise KeyError(f"model {name!r} is already registered")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: str | list[str] | None = None) -> list[str]:
        if names is None:
            return list(self._models)
        names = [names] if isinstance(names, str) else names
        for n in names:
            if n not in self._models:
                raise KeyError(f"model {n!r} is not registered; registered: {list(self._models)}")
        return names

    # Attributes (plain numbers or None) that a resumed run must get back, e.g. a metric measured once
    # before the first epoch; saved in every checkpoint as "run_state".
    resumable_attrs: tuple[str, ...] = ()

    def checkpoint_identity(self) -> dict[str, Any]:
        """What every checkpoint records about the run that wrote it (SimpleTrainer: trainer + config)."""
        return {}

    def save_model(
        self, epoch: int, directory: str, is_best: bool = False, val_result: float | None = None
    ) -> None:
        """Write model.pth.tar-<epoch> (or model-best.pth.tar) for every registered model.

        Under torchrun rank 0 writes and every process waits for it, so a later read on any rank (the best
        model at the end, a resume) finds the file complete.
        """
        if self.dist.is_main:
            self._write_checkpoints(epoch, directory, is_best, val_result)
        self.dist.barrier()

    def _write_checkpoints(self, epoch: int, directory: str, is_best: bool, val_result: float | None) -> None:
        fname = "model-best.pth.tar" if is_best else f"model.pth.tar-{epoch}"
        # Every model's file first, then the pointers: a kill in between leaves an epoch that some model
        # lacks, which resume skips (it takes the newest epoch every model has).
        for name in self.get_model_names():
            ckpt = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch,
                "optimizer": self._optims[name].state_dict() if self._optims[name] else None,
                "scheduler": self._scheds[name].state_dict() if self._scheds[name] else None,
                "val_result": val_result,
                "rng": get_rng_state(),
                "run_state": {attr: getattr(self, attr, None) for attr in self.resumable_attrs},
                **self.checkpoint_identity(),
            }
            atomic_save(ckpt, Path(directory) / name / fname)
        if not is_best:
            for name in self.get_model_names():
                atomic_write_text(fname + "\n", Path(directory) / name / CHECKPOINT_POINTER)

    def saved_epochs(self, directory: str | Path) -> dict[str, set[int]]:
        """The epochs with a model.pth.tar-<epoch> file, per registered model."""
        return {name: saved_epochs(Path(directory) / name) for name in self.get_model_names()}

    def newest_complete_epoch(self, directory: str | Path) -> int | None:
        """The newest epoch saved for every registered model (a checkpoint is one unit), None if none."""
        per_model = list(self.saved_epochs(directory).values())
        common = set.intersection(*per_model) if per_model else set()
        return max(common) if common else None

    def check_checkpoint_source(self, directory: str | Path, resume: bool) -> None:
        """Hook: refuse a folder whose checkpoints another kind of run wrote (SimpleTrainer)."""

    def resume_model_if_exist(self, directory: str) -> int:
        """Restore the newest epoch every model has under `directory` (models, optimizers, schedulers, RNG);
        0 if none. An epoch that only some models reached (a kill between their writes) is not used."""
        if first_checkpoint(directory) is not None:
            self.check_checkpoint_source(directory, resume=True)
        per_model = self.saved_epochs(directory)
        if not any(per_model.values()):
            return 0  # nothing trains (zero-shot) or nothing saved yet
        epoch = self.newest_complete_epoch(directory)
        newest = {name: max(e) if e else None for name, e in per_model.items()}
        if epoch is None:
            print(
                f"No epoch of {directory} has a checkpoint for every model (newest per model: {newest}): "
                "an interrupted first save; training starts from scratch"
            )
            return 0
        print(f"Found checkpoint at {directory} (will resume training from epoch {epoch})")
        if any(n != epoch for n in newest.values()):
            print(
                f"Resuming from epoch {epoch}, the newest epoch every model has; later ones are incomplete "
                f"(newest per model: {newest})"
            )
        rng = None
        for name in self.get_model_names():
            path = Path(directory) / name / f"model.pth.tar-{epoch}"
            ckpt = safe_load(path)
            load_model_state(self._models[name], ckpt["state_dict"], str(path))
            if self._optims[name] is not None and ckpt.get("optimizer") is not None:
                self._optims[name].load_state_dict(ckpt["optimizer"])
            if self._scheds[name] is not None and ckpt.get("scheduler") is not None:
                self._scheds[name].load_state_dict(ckpt["scheduler"])
            rng, run_state = ckpt.get("rng"), ckpt.get("run_state") or {}
            print(f"Loaded {path} (epoch {ckpt['epoch']})")
        for attr in self.resumable_attrs:
            if attr in run_state:  # absent from checkpoints older than the attribute: left as it is
                setattr(self, attr, run_state[attr])
        if rng is not None:
            set_rng_state(rng)
        self.restore_best_result(directory)
        self.evaluated_epoch = epoch
        return epoch

    def best_checkpoints(self, directory: str | Path) -> dict[str, dict[str, Any]]:
        """{model: {"epoch", "val_result"}} of each model-best.pth.tar present under `directory`."""
        found = {}
        for name in self.get_model_names():
            path = Path(directory) / name / "model-best.pth.tar"
            if path.is_file():
                ckpt = safe_load(path)
                found[name] = {"epoch": ckpt.get("epoch"), "val_result": ckpt.get("val_result")}
        return found

    def restore_best_result(self, directory: str | Path) -> None:
        """The best validation result so far, from model-best.pth.tar: a resumed run then replaces those
        files only with a better model, as the uninterrupted run would. When the models' best files
        disagree (a kill between their writes), the lowest result is kept, so the epoch whose write was
        cut short, which beat it, rewrites them all when it is redone."""
        best = self.best_checkpoints(directory)
        vals = [b["val_result"] for b in best.values() if b["val_result"] is not None]
        if not vals:
            return
        epochs = {b["epoch"] for b in best.values()}
        if len(epochs) > 1 or len(best) < len(self.get_model_names()):
            print(f"The model-best.pth.tar files disagree ({best}): an interrupted write; keeping the lowest")
        self.best_result = float(min(vals))
        print(f"Best val result so far: {self.best_result:.4f} ({Path(directory)})")

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load weights for evaluation: model.pth.tar-<epoch>; without epoch, model-best.pth.tar, else the
        newest epoch every model has."""
        if not directory:  # Dassl skips loading without a model dir (CoOp's zero-shot scripts rely on it)
            if not self.get_model_names():
                print(
                    f"{type(self).__name__} has no trained weights: evaluating it as built (no --model-dir)"
                )
                return
            raise ValueError(
                f"{type(self).__name__} learns {', '.join(self.get_model_names())}: without --model-dir there is "
                "nothing trained to evaluate. Pass --model-dir <the output folder of its training run>"
            )
        if first_checkpoint(directory) is not None:
            self.check_checkpoint_source(directory, resume=False)
        names = self.get_model_names()
        best = self.best_checkpoints(directory) if epoch is None else {}
        if epoch is None and best:
            if len(best) < len(names) or len({b["epoch"] for b in best.values()}) > 1:
                raise ValueError(
                    f"{directory}: the models' model-best.pth.tar files disagree ({best}; models {names}): "
                    "an interrupted write. Resume the run to complete it, or pass --load-epoch"
                )
            fname = "model-best.pth.tar"
        elif epoch is None:  # no best model (no validation): the newest complete epoch
            newest = self.newest_complete_epoch(directory)
            fname = f"model.pth.tar-{newest}" if newest is not None else "model-best.pth.tar"
        else:
            fname = f"model.pth.tar-{epoch}"
        for name in names:
            path = Path(directory) / name / fname
            if not path.is_file():
                avail = (
                    sorted(p.name for p in path.parent.glob("model*.pth.tar*"))
                    if path.parent.is_dir()
                    else []
                )
                raise FileNotFoundError(
                    f"no checkpoint at {path} (available: {avail or 'none'}); pass --load-epoch with one of them"
                )
            ckpt = safe_load(path)
            load_model_state(self._models[name], ckpt["state_dict"], str(path))
            self.evaluated_epoch = ckpt["epoch"]
            print(f"Loading weights to {name} from {path} (epoch = {ckpt['epoch']})")

    def set_model_mode(self, mode: str = "train", names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def update_lr(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def get_current_lr(self, names: str | list[str] | None = None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"] if self._optims[name] else 0.0

    def model_zero_grad(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad(set_to_none=True)

    def sync_gradients(self, names: str | list[str] | None = None) -> None:
        """Average gradients over processes, weighted by each one's batch size (no-op in a single process)."""
        dist_ctx = getattr(self, "dist", None)
        if dist_ctx is not None and dist_ctx.enabled:
            weight = getattr(self, "local_batch_size", None)
            for name in self.get_model_names(names):
                dist_ctx.average_gradients(self._models[name].parameters(), weight)

    def model_backward_and_update(self, loss: Tensor, names: str | list[str] | None = None) -> None:
        self.model_zero_grad(names)
        loss.backward()
        self.sync_gradients(names)
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()


class SimpleTrainer(TrainerBase):
    """Config-driven trainer: data, model, optimizer, evaluation, logging, results.json.

    Under torchrun (WORLD_SIZE > 1) the same class trains data-parallel: DATALOADER.TRAIN_X.BATCH_SIZE is
    the global batch (each process takes BATCH_SIZE / world size of it), gradients are averaged after each
    backward, evaluation is sharded and gathered exactly, and only rank 0 writes files.
    """

    # Set to torch.channels_last by trainers whose model profits from it (convolutional backbones on GPU).
    memory_format = torch.preserve_format

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.check_cfg(cfg)
        self.dist = DistContext.from_env(cfg.USE_CUDA, cfg.DIST.TIMEOUT_MIN)
        self.device = self.dist.device(cfg.USE_CUDA)
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.best_result = -math.inf
        self.evaluated_epoch: int | None = None  # the epoch of the weights in the model now
        self.trained_epochs: int | None = None  # epochs this process trained (None: train() never ran)
        self.time_start = time.time()
        self._writer = None
        # The shuffling seed: SEED, or under SEED < 0 a random one that every process shares.
        self.sampler_seed = self.dist.shared_seed(cfg.SEED)
        # Rank 0 first: dataset splits and downloaded weights are written once, then read by the others.
        self.dist.run_in_order(self.build_data_loader)
        self.dist.run_in_order(self.build_model)
        for name in self.get_model_names():  # every replica starts from rank 0's weights (as DDP does)
            self.dist.broadcast_module(self._models[name])
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)

    def check_cfg(self, cfg: Any) -> None:
        """Subclasses reject settings they cannot honour."""

    # train.py --allow-config-mismatch: load another run's checkpoints anyway (with a warning).
    allow_config_mismatch = False
    # Config nodes besides TRAINER.<cfg_node> that define this trainer's model (e.g. CasPL's cascade).
    extra_fingerprint_nodes: tuple[str, ...] = ()

    def checkpoint_identity(self) -> dict[str, Any]:
        node = getattr(self, "cfg_node", "")
        nodes = ((f"TRAINER.{node}",) if node else ()) + tuple(self.extra_fingerprint_nodes)
        return {"trainer": self.cfg.TRAINER.NAME, "fingerprint": config_fingerprint(self.cfg, nodes)}

    def check_checkpoint_source(self, directory: str | Path, resume: bool) -> None:
        """Refuse checkpoints of another trainer or with other model-defining settings (resume also
        compares dataset, subsample, shots and seed), listing the keys that differ."""
        path = first_checkpoint(directory)
        if path is None:
            return
        saved = safe_load(path)
        if saved.get("fingerprint") is None:
            print(f"Note: {path} was written before checkpoints recorded their config: not checked")
            return
        diffs = fingerprint_differences(
            saved["fingerprint"], self.checkpoint_identity()["fingerprint"], resume
        )
        if not diffs:
            return
        msg = (
            f"{directory} holds a {saved.get('trainer')!r} run whose settings differ from this "
            f"{self.cfg.TRAINER.NAME!r} run:\n  " + "\n  ".join(diffs)
        )
        if self.allow_config_mismatch:
            print(f"Warning: {msg}\nLoading it anyway (--allow-config-mismatch)")
            return
        if resume:
            hint = "Refusing to resume (or overwrite) it: choose another --output-dir"
        else:
            hint = "Refusing to evaluate it: pass the --model-dir of a run trained with these settings"
        raise CheckpointMismatchError(f"{msg}\n{hint}, or pass --allow-config-mismatch to load it anyway")

    def build_data_loader(self) -> None:
        from caspl.data import DataManager  # noqa: PLC0415 (data stack imported only by trainers that use it)

        dm = DataManager(self.cfg)
        self.dm = dm
        self.train_loader_x = self.prepare_train_loader(dm.train_loader_x)
        self.val_loader = self.prepare_eval_loader(dm.val_loader)
        self.test_loader = self.prepare_eval_loader(dm.test_loader)
        self.num_classes = dm.num_classes
        self.lab2cname = dm.lab2cname
        self.classnames = dm.classnames

    def prepare_train_loader(self, loader: Any) -> Any:
        """Shuffle per (seed, epoch) and shard global batches over processes (one process: world size 1)."""
        batch = loader.batch_size
        if batch % self.dist.world_size:
            raise ValueError(
                f"DATALOADER.TRAIN_X.BATCH_SIZE {batch} must divide by the number of processes {self.dist.world_size}"
            )
        sampler = ShardedEpochSampler(
            len(loader.dataset),
            batch // self.dist.world_size,
            getattr(self, "sampler_seed", max(self.cfg.SEED, 0)),
            self.dist.rank,
            self.dist.world_size,
            shuffle=self.cfg.DATALOADER.TRAIN_X.SAMPLER != "SequentialSampler",
            drop_last=loader.drop_last,
        )
        return rebuild_loader(loader, sampler, batch // self.dist.world_size)

    def prepare_eval_loader(self, loader: Any) -> Any:
        """Under torchrun each process evaluates every world_size-th sample; results are gathered."""
        if loader is None or not self.dist.enabled:
            return loader
        sampler = ShardSampler(len(loader.dataset), self.dist.rank, self.dist.world_size)
        return rebuild_loader(loader, sampler, loader.batch_size)

    def build_model(self) -> None:
        raise NotImplementedError

    def build_optim_sched(self, module: nn.Module) -> tuple[Any, Any]:
        """An optimizer over the trainable parameters of `module` and its lr schedule, from cfg.OPTIM."""
        optim = build_optimizer(module, self.cfg.OPTIM)
        return optim, build_lr_scheduler(optim, self.cfg.OPTIM)

    # ------------------------------------------------------------------ loop
    def train(self) -> None:
        self.trained_epochs = 0
        self.before_train()
        for epoch in range(self.start_epoch, self.max_epoch):
            self.epoch = epoch
            self.run_epoch()
            self.after_epoch()
            self.evaluated_epoch, self.trained_epochs = epoch + 1, self.trained_epochs + 1
        self.after_train()

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.output_dir
        self.start_epoch = self.resume_model_if_exist(directory)
        self.time_start = time.time()

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0
        if (
            not self.cfg.TEST.NO_TEST
            and self.cfg.TEST.FINAL_MODEL == "best_val"
            and self.val_loader is not None
        ):
            result = self.test(split="val")
            if result > self.best_result:
                self.best_result = result
                self.save_model(self.epoch + 1, self.output_dir, is_best=True, val_result=result)
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch + 1, self.output_dir)

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val" and self.val_loader is not None:
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
        self.final_evaluation()  # results.json: the last file a run writes (also under TEST.NO_TEST)

    def run_epoch(self) -> None:
        """One pass over the train loader. Under torchrun the printed (and tensorboard) loss/metrics are
        the means over processes; nothing waits for the device except at print frequency."""
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time, data_time = AverageMeter(), AverageMeter()
        loader = self.train_loader_x
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(self.epoch)
        self.num_batches = len(loader)
        guard = NonFiniteLossGuard(self.describe_step)
        end = time.time()
        bar = tqdm(
            loader,
            desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
            leave=False,
            dynamic_ncols=True,
            disable=not self.dist.is_main,
        )
        for batch_idx, batch in enumerate(bar):
            self.batch_idx = batch_idx
            data_time.update(time.time() - end)
            self.local_batch_size = batch_size_of(batch)  # weights this process's gradient in the mean
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            it = self.epoch * self.num_batches + self.batch_idx
            guard.observe(it, loss_summary)  # a GPU's values are read only at guard.check()
            losses.update(loss_summary)  # tensors stay on the device: no sync until printed
            end = time.time()
            last = self.batch_idx + 1 == self.num_batches
            if (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0 or last:
                guard.check()
                stats = self.dist.all_reduce_mean(losses.state())  # [n_meters, 2]: current, average
                remaining = (
                    (self.max_epoch - self.epoch - 1) * self.num_batches
                    + self.num_batches
                    - self.batch_idx
                    - 1
                )
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * remaining)))
                print(
                    f"epoch [{self.epoch + 1}/{self.max_epoch}] batch [{self.batch_idx + 1}/{self.num_batches}] "
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) data {data_time.val:.3f} ({data_time.avg:.3f}) "
                    f"{losses.format(stats)} lr {self.get_current_lr():.4e} eta {eta}"
                )
                for name, (current, _) in zip(losses.meters, stats.tolist()):
                    self.write_scalar("train/" + name, current, it)
                self.write_scalar("train/lr", self.get_current_lr(), it)
        guard.check()
        self.update_lr()

    def describe_step(self, iteration: int) -> str:
        """Where a 0-based training iteration falls: epoch and batch (1-based, as printed)."""
        n = max(getattr(self, "num_batches", 1), 1)
        return f"epoch {iteration // n + 1}/{self.max_epoch}, batch {iteration % n + 1}/{n}"

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """One optimisation step; returns scalars to log (floats or 0-dim tensors)."""
        raise NotImplementedError

    def parse_batch_train(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        return self.to_device_images(batch["img"]), batch["label"].to(self.device, non_blocking=True)

    def parse_batch_test(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        return self.to_device_images(batch["img"]), batch["label"].to(self.device, non_blocking=True)

    def to_device_images(self, images: Tensor) -> Tensor:
        """Images on the device (asynchronously from pinned memory) in the model's memory format."""
        return images.to(self.device, non_blocking=True, memory_format=self.memory_format)

    def model_inference(self, images: Tensor) -> Tensor:
        return self.model(images)

    def before_evaluation(self) -> None:
        """Hook: compute image-independent things (e.g. text features) once per evaluation."""

    def after_evaluation(self) -> None:
        """Hook: drop what before_evaluation cached."""

    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        """Evaluate on `split` (TEST.SPLIT by default); prints Dassl's result lines, returns the first metric."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        loader = self.val_loader if split == "val" and self.val_loader is not None else self.test_loader
        print(f"Evaluate on the *{split}* set")
        self.before_evaluation()
        outputs, targets = [], []
        bar = tqdm(
            loader, desc=f"eval {split}", leave=False, dynamic_ncols=True, disable=not self.dist.is_main
        )
        try:
            for batch in bar:
                images, labels = self.parse_batch_test(batch)
                if self.dist.enabled:  # kept on the device; evaluated once all shards are gathered
                    outputs.append(self.model_inference(images).float())
                    targets.append(labels)
                else:
                    self.evaluator.process(self.model_inference(images), labels)
        finally:
            self.after_evaluation()
        if self.dist.enabled:
            self.last_results = self._evaluate_gathered(outputs, targets)
        else:
            self.last_results = self.evaluator.evaluate()
        for k, v in self.last_results.items():
            if isinstance(v, int | float):
                self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(self.last_results.values())[0]

    def _evaluate_gathered(self, outputs: list[Tensor], targets: list[Tensor]) -> dict[str, Any]:
        """Every shard gathered in dataset order (each sample exactly once), scored by rank 0 (which alone
        prints and writes, e.g. cmat.json); every process gets rank 0's results."""
        empty = torch.empty(0, device=self.device)
        out = self.dist.gather_shards(torch.cat(outputs) if outputs else empty)
        gt = self.dist.gather_shards(torch.cat(targets) if targets else empty.long())
        results = None
        if self.dist.is_main:
            self.evaluator.process(out, gt)
            results = self.evaluator.evaluate()
        return self.dist.broadcast_object(results)

    def final_evaluation(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Test (unless TEST.NO_TEST), then write results.json: the last file of every kind of run, written
        atomically, so "results.json exists" is what "this run finished" means."""
        metrics = {}
        if not self.cfg.TEST.NO_TEST:
            self.test()
            metrics = {k: v for k, v in self.last_results.items() if isinstance(v, int | float)}
        epoch = self.evaluated_epoch
        if epoch is None:  # trainers with their own train() (e.g. the linear probe): what they trained
            epoch = self.epoch + 1 if self.max_epoch else 0
        record = {
            "trainer": self.cfg.TRAINER.NAME,
            "dataset": self.cfg.DATASET.NAME,
            "subsample": self.cfg.DATASET.SUBSAMPLE_CLASSES,
            "shots": self.cfg.DATASET.NUM_SHOTS,
            "seed": self.cfg.SEED,
            "backbone": self.cfg.MODEL.BACKBONE.NAME,
            "split": self.cfg.TEST.SPLIT,
            "metrics": metrics,
            "epoch": epoch,
            "config_hash": config_hash(self.cfg),
            "wall_time_s": round(time.time() - self.time_start, 3),
            "version": caspl.__version__,
            **(extra or {}),
        }
        path = Path(self.output_dir) / RESULTS_FILE
        previous = read_results(path)
        if previous is not None:  # asked to evaluate a finished run again (train.py --re-evaluate)
            record["re_evaluated"] = True
            if self.trained_epochs == 0 and "wall_time_s" in previous:  # keep the training's time
                record["eval_wall_time_s"] = record["wall_time_s"]
                record["wall_time_s"] = previous["wall_time_s"]
        self.close_writer()  # tensorboard's files complete before results.json says "finished"
        print(f"Elapsed: {datetime.timedelta(seconds=round(time.time() - self.time_start))}")
        if self.dist.is_main:
            atomic_write_text(json.dumps(record, indent=2) + "\n", path)
        return record

    # ------------------------------------------------------------------ tensorboard
    def write_scalar(self, tag: str, value: float, step: int) -> None:
        if not self.dist.is_main:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (slow import, only when used)

            self._writer = SummaryWriter(log_dir=str(Path(self.output_dir) / "tensorboard"))
        self._writer.add_scalar(tag, value, step)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# Dassl's name for a trainer with one labelled loader.
TrainerX = SimpleTrainer
