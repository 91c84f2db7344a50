"""The measurements: (a) boosting step, (b) training steps, (c) evaluation, (d) inference latency, each
beside its (e) compute floor and (r) reference computation (the same step with CLIP's 77-token text tower,
what the published code runs), all timed in one interleaved run per trainer (A B A B ..., minima)."""

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caspl.bench.harness import (
    available_methods,
    build_trainer,
    class_names,
    few_frozen_templates,
    method_cfg,
    trainer_class,
)
from caspl.bench.measure import Measurement, measure, release_memory
from caspl.bench.report import Row, Target
from caspl.engine.precision import autocast
from caspl.vlm.build import input_resolution
from caspl.vlm.prompted import PromptedTextEncoder, TextTowerOptions, encode_texts
from caspl.vlm.templates import DEFAULT_TEMPLATE, fill

# Models whose image-independent text features the evaluation caches; the first registered one is used.
EVAL_METHODS = ("CasPL_PromptSRC", "CasPL_IVLP", "CasPL_MaPLe", "CasPL_CoOp", "CasPL_ZS")
OVERHEAD_LIMIT = 1.10  # training step <= 1.10 x its compute floor
EVAL_SPEEDUP_LIMIT = 5.0  # cached text features >= 5 x faster than per-batch recomputation
INFER_LIMIT = 1.10  # CasPL inference <= 1.10 x plain CLIP
BOOST_LIMIT = 1.2  # boosting step <= 1.2 x (teacher forward + student forward/backward)
# Speedups over the reference computation (the 77-token text tower), ViT-B/16 shapes, 1000 ImageNet names.
TRAIN_SPEEDUP = {"PromptSRC": 2.5, "CasPL_PromptSRC": 2.5}
BOOST_SPEEDUP = 2.0  # CasPL_Boost phase-1 step, 8+8 tokens, depth 12, ViT-L/14 teacher
CACHE_SPEEDUP = 3.0  # evaluation text-cache build
TARGET_BACKBONE, TARGET_TEACHER, TARGET_CLASSES = "ViT-B/16", "ViT-L/14", 1000
REFERENCE = TextTowerOptions(truncate=False, chunk=0, checkpoint=False)  # what the published code runs


def reference_options(ours: TextTowerOptions, checkpointed: bool) -> TextTowerOptions:
    """The reference computation of a text encoder running with `ours`: the 77-token, one-pass tower, or
    (`checkpointed`, for machines where its activations do not fit) the 77-token tower with our chunks and
    activation checkpointing, so that truncation is the only difference."""
    if not checkpointed:
        return REFERENCE
    return TextTowerOptions(truncate=False, chunk=ours.chunk, checkpoint=True)


class ReferenceTower:
    """Swaps every text encoder of a model for its reference version during `active()`."""

    def __init__(self, *roots: nn.Module, checkpointed: bool = False) -> None:
        self.sites = [
            (parent, name, child, child.with_options(reference_options(child.options, checkpointed)))
            for root in roots
            for parent in root.modules()
            for name, child in parent.named_children()
            if isinstance(child, PromptedTextEncoder)
        ]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        for parent, name, _, reference in self.sites:
            parent._modules[name] = reference
        try:
            yield
        finally:
            for parent, name, ours, _ in self.sites:
                parent._modules[name] = ours


@dataclass
class Settings:
    """What to measure and how."""

    backbone: str
    teacher: str
    batch: int
    eval_batch: int
    device: torch.device
    precision: str
    classes: list[int]
    train_classes: list[int]
    warmup: int
    repeats: int
    workdir: Path
    methods: list[str] | None = None  # None: every registered method
    eval_method: str | None = None
    kinds: str = "abcd"
    config_dir: Path | None = None
    verbose: bool = False
    seed: int = 0
    all_templates: bool = False  # PromptSRC's frozen targets from all 60 templates (build time only)
    cascades: bool = True  # (b): each method's CasPL version too
    # Text towers with activation checkpointing, ours and the reference alike (MODEL.TEXT_TOWER.CHECKPOINT):
    # the 77-token reference on 1000 classes needs ~31 GiB of activations without it.
    text_checkpoint: bool = False


@dataclass
class Suite:
    """Runs the sections in a memory-friendly order and keeps their rows, targets and notes."""

    s: Settings
    sections: dict[str, list[Row]] = field(default_factory=lambda: {k: [] for k in "abcd"})
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ helpers
    @property
    def ref_tower(self) -> str:
        return "77-token text tower" + (", checkpointed as ours" if self.s.text_checkpoint else "")

    @property
    def ref_name(self) -> str:
        return ("checkpointed " if self.s.text_checkpoint else "") + "77-token reference"

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Trainers print their parameter lists while building; keep that out of the table unless asked."""
        if self.s.verbose:
            yield
            return
        with contextlib.redirect_stdout(io.StringIO()):
            yield

    def batch(self, resolution: int, size: int, n_classes: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(self.s.seed)
        images = torch.randn(size, 3, resolution, resolution, generator=gen)
        labels = torch.randint(0, n_classes, (size,), generator=gen)
        return images.to(self.s.device), labels.to(self.s.device)

    def row(self, kind: str, name: str, m: Measurement, batch: int, precision: str, **kw: Any) -> Row:
        ms = m.min_s * 1000.0
        return Row(
            kind=kind,
            name=name,
            backbone=kw.pop("backbone", self.s.backbone),
            batch=batch,
            device=self.s.device.type,
            precision=precision,
            ms_per_step=ms,
            images_per_s=batch / m.min_s,
            spread=m.spread,
            peak_mem_mb=m.peak_mb,
            base_mem_mb=m.base_mb,
            repeats=len(m.seconds),
            times_ms=[round(t * 1000.0, 3) for t in m.seconds],
            **kw,
        )

    def run_measure(
        self, fns: dict[str, Callable[[], object]], reset: Callable[[], None] | None = None
    ) -> dict:
        return measure(fns, self.s.device, self.s.warmup, self.s.repeats, reset)

    def target(self, name: str, value: float, limit: float, scope: str, applies: bool, **kw: Any) -> None:
        self.targets.append(Target(name, value, limit, applies=applies, scope=scope, **kw))

    def on_target_shapes(self, n_classes: int | None = None, teacher: bool = False) -> bool:
        """Whether this run has the shapes the targets are defined for (ViT-B/16 on CPU in fp32)."""
        ok = self.s.backbone == TARGET_BACKBONE and self.s.precision == "fp32" and self.s.device.type == "cpu"
        if teacher:
            ok = ok and self.s.teacher == TARGET_TEACHER
        return ok and (n_classes is None or n_classes == TARGET_CLASSES)

    def build(self, name: str, n_classes: int) -> tuple[Any, list]:
        cfg, source = method_cfg(
            name, self.s.backbone, self.s.precision, self.s.workdir, self.s.teacher, self.s.config_dir
        )
        if self.s.text_checkpoint:
            cfg.MODEL.TEXT_TOWER.CHECKPOINT = True
        with self.quiet(), few_frozen_templates(not self.s.all_templates):
            trainer, built = build_trainer(cfg, class_names(n_classes), self.s.device)
        if source:
            self.notes.append(f"{name}: settings from {source}")
        return trainer, built

    # ------------------------------------------------------------------ (a) boosting
    def boosting(self, n: int) -> None:
        """One CasPL_Boost step vs its parts (teacher forward, student forward/backward) and vs the same
        step with the 77-token student text tower."""
        from trainers.caspl import kd_loss  # noqa: PLC0415

        trainer, built = self.build("CasPL_Boost", n)
        images, _ = self.batch(input_resolution(built[0]), self.s.batch, n)
        boost = trainer.cfg.TRAINER.CASPL.BOOST
        model, prec, device = trainer.model, trainer.prec, self.s.device
        teacher_logits = trainer.teacher(images).clone()  # out of inference mode for the floor's loss
        reference = ReferenceTower(model, checkpointed=self.s.text_checkpoint)

        def step() -> None:
            trainer.forward_backward({"img": images})

        def reference_step() -> None:
            with reference.active():
                step()

        def teacher() -> None:
            trainer.teacher(images)

        def student() -> None:
            with autocast(prec, device):
                logits = model(images)
                loss = boost.KD_WEIGHT * kd_loss(
                    logits, teacher_logits, boost.TEMPERATURE, boost.KD_REDUCTION
                )
            loss.backward()

        fns = {"step": step, "teacher": teacher, "student": student, "reference": reference_step}
        m = self.run_measure(fns, lambda: clear_grads(model))
        parts = m["teacher"].min_s + m["student"].min_s
        ratio = m["step"].min_s / parts
        speedup = m["reference"].min_s / m["step"].min_s
        pair = f"{self.s.backbone}<-{self.s.teacher}"
        shape = f"{boost.N_CTX_TEXT}+{boost.N_CTX_VISION} tokens, depth {boost.PROMPT_DEPTH_TEXT}"
        rows = self.sections["a"]
        common = {"backbone": pair, "classes": n}
        rows.append(
            self.row(
                "a",
                "CasPL_Boost step (phase-1 peak memory)",
                m["step"],
                self.s.batch,
                prec,
                ratio_to_floor=ratio,
                floor="teacher forward + student fwd/bwd",
                speedup=speedup,
                note=shape,
                **common,
            )
        )
        rows.append(
            self.row(
                "r",
                f"reference CasPL_Boost step ({self.ref_tower})",
                m["reference"],
                self.s.batch,
                prec,
                **common,
            )  # fmt: skip
        )
        rows.append(
            self.row("e", "floor: teacher forward", m["teacher"], self.s.batch, prec, backbone=self.s.teacher)
        )
        rows.append(
            self.row("e", "floor: student fwd/bwd (KD loss)", m["student"], self.s.batch, prec, classes=n)
        )
        on_shape = self.on_target_shapes(teacher=True)
        scope = f"{TARGET_BACKBONE}<-{TARGET_TEACHER} fp32 CPU"
        self.target(f"boosting step (x teacher fwd + student fwd/bwd), {pair}, {n} classes", ratio, BOOST_LIMIT,
                    scope, on_shape)  # fmt: skip
        self.target(
            f"boosting step speedup vs {self.ref_name}, {pair}, {shape}, {n} classes",
            speedup,
            BOOST_SPEEDUP,
            f"{scope}, {TARGET_CLASSES} classes",
            self.on_target_shapes(n, teacher=True),
            higher_is_better=True,
        )

    # ------------------------------------------------------------------ (b) training steps
    def training(self) -> None:
        """One forward_backward of each method and of its CasPL version, against the model's bare step and
        the 77-token reference, on each class count."""
        methods = self.s.methods if self.s.methods is not None else available_methods()
        missing = [m for m in self.s.methods or [] if trainer_class(m) is None]
        if missing:
            raise KeyError(f"--methods: not registered: {', '.join(missing)}")
        if not methods:
            self.notes.append("no prompt-learning method is registered yet: no training-step rows")
        for n in self.s.train_classes:
            for method in methods:
                plain_ms = None
                for name in (method, f"CasPL_{method}") if self.s.cascades else (method,):
                    if name.startswith("CasPL_CasPL_") or trainer_class(name) is None:
                        continue
                    row = self.training_step(name, n)
                    release_memory()  # the trainer is gone: hand its memory back before the next one
                    if plain_ms is None:
                        plain_ms = row.ms_per_step
                    else:
                        row.ratio, row.ratio_of = row.ms_per_step / plain_ms, f"vs {method}"

    def training_step(self, name: str, n: int) -> Row:
        trainer, built = self.build(name, n)
        images, labels = self.batch(input_resolution(built[0]), self.s.batch, n)
        model, prec, device = trainer.model, trainer.prec, self.s.device
        batch = {"img": images, "label": labels}
        reference_tower = ReferenceTower(model, checkpointed=self.s.text_checkpoint)

        def step() -> None:
            trainer.forward_backward(batch)

        def reference_step() -> None:
            with reference_tower.active():
                step()

        def floor() -> None:
            with autocast(prec, device):
                out = model(images)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                loss = F.cross_entropy(logits.float(), labels)
            loss.backward()

        fns: dict[str, Callable[[], object]] = {"step": step, "floor": floor, "ref_step": reference_step}
        # PromptSRC-style losses also run a frozen reference image pass: part of the method's compute.
        frozen = getattr(trainer, "reference_vision_tokens", None)
        if frozen is not None:

            def frozen_reference() -> None:
                with torch.no_grad(), autocast(prec, device):
                    model.image_encoder(images, frozen())

            fns["frozen"] = frozen_reference
        m = self.run_measure(fns, lambda: clear_grads(model))
        floor_m, floor_note = m["floor"], "model fwd + CE + bwd"
        if "frozen" in m:
            floor_m = combined(m["floor"], m["frozen"])
            floor_note += " + frozen reference image fwd"
        ratio = m["step"].min_s / floor_m.min_s
        speedup = m["ref_step"].min_s / m["step"].min_s
        row = self.row(
            "b",
            f"train {name}",
            m["step"],
            self.s.batch,
            prec,
            classes=n,
            ratio_to_floor=ratio,
            floor=f"floor {name}",
            speedup=speedup,
        )
        rows = self.sections["b"]
        rows.append(row)
        rows.append(self.row("e", f"floor {name}", floor_m, self.s.batch, prec, classes=n, note=floor_note))
        rows.append(
            self.row(
                "r", f"reference {name} ({self.ref_tower})", m["ref_step"], self.s.batch, prec, classes=n
            )
        )
        scope = f"{TARGET_BACKBONE} fp32 CPU"
        self.target(f"train step {name} (x floor), {n} classes", ratio, OVERHEAD_LIMIT, scope,
                    self.on_target_shapes())  # fmt: skip
        if name in TRAIN_SPEEDUP:
            self.target(
                f"train step {name} speedup vs {self.ref_name}, {n} classes",
                speedup,
                TRAIN_SPEEDUP[name],
                f"{scope}, {TARGET_CLASSES} ImageNet names",
                self.on_target_shapes(n),
                higher_is_better=True,
            )
        return row

    # ------------------------------------------------------------------ (c) evaluation, (d) inference
    def eval_method(self) -> str | None:
        if self.s.eval_method is not None:
            if trainer_class(self.s.eval_method) is None:
                raise KeyError(f"--eval-method {self.s.eval_method!r} is not registered")
            return self.s.eval_method
        return next((m for m in EVAL_METHODS if trainer_class(m) is not None), None)

    def evaluation_and_inference(self, kinds: str, n: int) -> None:
        """(c) cached vs per-batch text features, cache build vs the 77-token reference; (d) plain CLIP vs
        CLIP + boosting + adapting prompts."""
        name = self.eval_method()
        if name is None:
            self.notes.append("no cascaded trainer is registered: no evaluation/inference rows")
            return
        bs = self.s.eval_batch
        trainer, built = self.build(name, n)
        if trainer.model.text_depends_on_image:
            raise ValueError(f"{name}'s text features depend on the image: it has no text-feature cache")
        clip_model, device, prec = built[0], self.s.device, trainer.prec
        images, _ = self.batch(input_resolution(clip_model), bs, n)
        trainer.set_model_mode("eval")
        trainer.model.eval()
        with torch.no_grad():
            if "c" in kinds:
                self.evaluation(trainer, name, images, prec, n)
            if "d" in kinds:
                self.inference(trainer, name, clip_model, images, prec, device, n)

    def evaluation(self, trainer: Any, name: str, images: Tensor, prec: str, n: int) -> None:
        bs = images.shape[0]
        trainer.before_evaluation()
        reference = ReferenceTower(trainer.model, checkpointed=self.s.text_checkpoint)

        def cached() -> None:
            trainer.model_inference(images)

        def per_batch() -> None:  # the text tower on every batch: what the cache avoids
            with autocast(prec, self.s.device):
                trainer.model(images).float()

        def build_cache() -> None:
            trainer.before_evaluation()

        def build_cache_reference() -> None:
            with reference.active():
                trainer.before_evaluation()

        fns = {
            "cached": cached,
            "per_batch": per_batch,
            "build": build_cache,
            "build_ref": build_cache_reference,
        }
        m = self.run_measure(fns)
        trainer.after_evaluation()
        speedup = m["per_batch"].min_s / m["cached"].min_s
        build_speedup = m["build_ref"].min_s / m["build"].min_s
        rows = self.sections["c"]
        common = {"classes": n}
        rows.append(
            self.row(
                "c",
                f"eval {name}, cached text features",
                m["cached"],
                bs,
                prec,
                ratio=speedup,
                ratio_of="speedup vs per-batch",
                **common,
            )  # fmt: skip
        )
        rows.append(
            self.row("c", f"eval {name}, text features per batch", m["per_batch"], bs, prec, **common)
        )
        rows.append(
            self.row(
                "c",
                f"eval {name}, text-cache build",
                m["build"],
                bs,
                prec,
                speedup=build_speedup,
                note="once per evaluation",
                **common,
            )  # fmt: skip
        )
        rows.append(
            self.row(
                "r",
                f"reference eval {name}, text-cache build ({self.ref_tower})",
                m["build_ref"],
                bs,
                prec,
                **common,
            )  # fmt: skip
        )
        scope = f"{TARGET_BACKBONE} fp32 CPU"
        self.target(
            f"eval speedup, cached vs per-batch text ({n} classes, batch {bs})",
            speedup,
            EVAL_SPEEDUP_LIMIT,
            f"{scope}, 100 classes, batch 4",
            self.on_target_shapes() and n == 100 and bs == 4,
            higher_is_better=True,
        )
        self.target(
            f"eval text-cache build speedup vs {self.ref_name} ({n} classes)",
            build_speedup,
            CACHE_SPEEDUP,
            scope,
            self.on_target_shapes(),
            higher_is_better=True,
        )

    def inference(
        self,
        trainer: Any,
        name: str,
        clip_model: nn.Module,
        images: Tensor,
        prec: str,
        device: torch.device,
        n: int,
    ) -> None:
        bs = images.shape[0]
        with autocast(prec, device):
            zs_text = F.normalize(
                encode_texts(clip_model, fill(DEFAULT_TEMPLATE, trainer.classnames)).float(), dim=-1
            )
        trainer.before_evaluation()

        def plain() -> None:  # CLIP's own encode_image + cached zero-shot text features
            with autocast(prec, device):
                feats = F.normalize(clip_model.encode_image(images).float(), dim=-1)
                (clip_model.logit_scale.exp() * feats @ zs_text.t()).float()

        def prompted() -> None:
            trainer.model_inference(images)

        m = self.run_measure({"plain": plain, "prompted": prompted})
        trainer.after_evaluation()
        ratio = m["prompted"].min_s / m["plain"].min_s
        what = "boosting prompts" if name == "CasPL_ZS" else "boosting + adapting prompts"
        rows = self.sections["d"]
        rows.append(
            self.row(
                "d",
                "infer plain CLIP (encode_image, cached text)",
                m["plain"],
                bs,
                prec,
                classes=n,
                ratio=1.0,
                ratio_of="vs plain CLIP",
            )
        )
        rows.append(
            self.row(
                "d",
                f"infer {name} ({what})",
                m["prompted"],
                bs,
                prec,
                classes=n,
                ratio=ratio,
                ratio_of="vs plain CLIP",
            )  # fmt: skip
        )
        self.target(f"inference latency {name} (x plain CLIP), {n} classes", ratio, INFER_LIMIT,
                    f"{TARGET_BACKBONE} fp32 CPU", self.on_target_shapes())  # fmt: skip

    # ------------------------------------------------------------------ all
    def run(self) -> list[Row]:
        """Smallest models first, the teacher last, so each peak reflects its own section."""
        from caspl.bench.harness import PHASE1  # noqa: PLC0415

        self.notes.append(f"CasPL phase-1 prompts (boosting and cascades): {PHASE1}")
        if not self.s.all_templates:
            self.notes.append(
                "PromptSRC's frozen text targets from its first template (build time only; --all-templates "
                "for all 60): a step's cost is the same"
            )
        if "b" in self.s.kinds:
            self.training()
        if "c" in self.s.kinds or "d" in self.s.kinds:
            for n in self.s.classes:
                self.evaluation_and_inference(self.s.kinds, n)
                release_memory()
        if "a" in self.s.kinds:
            for n in self.s.classes:
                self.boosting(n)
                release_memory()
        return [r for k in "abcd" for r in self.sections[k]]


def combined(a: Measurement, b: Measurement) -> Measurement:
    """Two parts of one floor measured side by side: summed times (pairwise, by repeat), larger peak."""
    peaks = [p for p in (a.peak_mb, b.peak_mb) if p is not None]
    bases = [p for p in (a.base_mb, b.base_mb) if p is not None]
    return Measurement(
        seconds=[x + y for x, y in zip(a.seconds, b.seconds)],
        peak_mb=max(peaks) if peaks else None,
        base_mb=min(bases) if bases else None,
        mem_resettable=a.mem_resettable and b.mem_resettable,
    )


def clear_grads(module: nn.Module) -> None:
    """Drop accumulated gradients (untimed, between repeats)."""
    for p in module.parameters():
        p.grad = None
