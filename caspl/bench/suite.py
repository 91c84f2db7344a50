"""The measurements: (a) boosting step, (b) training steps, (c) evaluation, (d) inference latency, each
beside its (e) compute floor or reference on the same batch."""

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caspl.bench.harness import available_methods, build_trainer, class_names, method_cfg, trainer_class
from caspl.bench.measure import Measurement, measure, release_memory
from caspl.bench.report import Row, Target
from caspl.engine.precision import autocast
from caspl.vlm.build import input_resolution
from caspl.vlm.templates import DEFAULT_TEMPLATE, fill

# Models whose image-independent text features the evaluation caches; the first registered one is used.
EVAL_METHODS = ("CasPL_PromptSRC", "CasPL_IVLP", "CasPL_MaPLe", "CasPL_CoOp", "CasPL_ZS")
OVERHEAD_LIMIT = 1.10  # training step <= 1.10 x its compute floor
EVAL_SPEEDUP_LIMIT = 5.0  # cached text features >= 5 x faster than per-batch recomputation
INFER_LIMIT = 1.10  # CasPL inference <= 1.10 x plain CLIP
BOOST_LIMIT = 1.2  # boosting step <= 1.2 x (teacher forward + student forward/backward)


@dataclass
class Settings:
    """What to measure and how."""

    backbone: str
    teacher: str
    batch: int
    eval_batch: int
    device: torch.device
    precision: str
    classes: int
    train_classes: int
    warmup: int
    repeats: int
    workdir: Path
    methods: list[str] | None = None  # None: every registered method
    eval_method: str | None = None
    kinds: str = "abcd"
    config_dir: Path | None = None
    verbose: bool = False
    seed: int = 0


@dataclass
class Suite:
    """Runs the sections in a memory-friendly order and keeps their rows, targets and notes."""

    s: Settings
    sections: dict[str, list[Row]] = field(default_factory=lambda: {k: [] for k in "abcd"})
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ helpers
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
        ms = m.median_s * 1000.0
        return Row(
            kind=kind,
            name=name,
            backbone=kw.pop("backbone", self.s.backbone),
            batch=batch,
            device=self.s.device.type,
            precision=precision,
            ms_per_step=ms,
            images_per_s=batch / m.median_s,
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

    def build(self, name: str, n_classes: int) -> tuple[Any, list]:
        cfg, source = method_cfg(
            name, self.s.backbone, self.s.precision, self.s.workdir, self.s.teacher, self.s.config_dir
        )
        with self.quiet():
            trainer, built = build_trainer(cfg, class_names(n_classes), self.s.device)
        if source:
            self.notes.append(f"{name}: settings from {source}")
        return trainer, built

    # ------------------------------------------------------------------ (a) boosting
    def boosting(self) -> None:
        """One CasPL_Boost step vs its parts: teacher forward, student forward/backward (KD loss)."""
        from trainers.caspl import kd_loss  # noqa: PLC0415

        trainer, built = self.build("CasPL_Boost", self.s.classes)
        images, _ = self.batch(input_resolution(built[0]), self.s.batch, self.s.classes)
        boost = trainer.cfg.TRAINER.CASPL.BOOST
        model, prec, device = trainer.model, trainer.prec, self.s.device
        teacher_logits = trainer.teacher(images).clone()  # out of inference mode for the floor's loss

        def step() -> None:
            trainer.forward_backward({"img": images})

        def teacher() -> None:
            trainer.teacher(images)

        def student() -> None:
            with autocast(prec, device):
                logits = model(images)
                loss = boost.KD_WEIGHT * kd_loss(
                    logits, teacher_logits, boost.TEMPERATURE, boost.KD_REDUCTION
                )
            loss.backward()

        m = self.run_measure(
            {"step": step, "teacher": teacher, "student": student}, lambda: clear_grads(model)
        )
        parts = m["teacher"].median_s + m["student"].median_s
        ratio = m["step"].median_s / parts
        pair = f"{self.s.backbone}<-{self.s.teacher}"
        rows = self.sections["a"]
        rows.append(
            self.row(
                "a",
                "CasPL_Boost step (phase-1 peak memory)",
                m["step"],
                self.s.batch,
                prec,
                backbone=pair,
                ratio_to_floor=ratio,
                floor="teacher forward + student fwd/bwd",
                note=f"{self.s.classes} classes",
            )
        )
        rows.append(
            self.row("e", "floor: teacher forward", m["teacher"], self.s.batch, prec, backbone=self.s.teacher)
        )
        rows.append(self.row("e", "floor: student fwd/bwd (KD loss)", m["student"], self.s.batch, prec))
        self.targets.append(
            Target(f"boosting step (x teacher fwd + student fwd/bwd), {pair}", ratio, BOOST_LIMIT)
        )

    # ------------------------------------------------------------------ (b) training steps
    def training(self) -> None:
        """One forward_backward of each method and of its CasPL version, against the model's bare step."""
        methods = self.s.methods if self.s.methods is not None else available_methods()
        missing = [m for m in self.s.methods or [] if trainer_class(m) is None]
        if missing:
            raise KeyError(f"--methods: not registered: {', '.join(missing)}")
        if not methods:
            self.notes.append("no prompt-learning method is registered yet: no training-step rows")
        for method in methods:
            plain_ms = None
            for name in (method, f"CasPL_{method}"):
                if name.startswith("CasPL_CasPL_") or trainer_class(name) is None:
                    continue
                row = self.training_step(name)
                release_memory()  # the trainer is gone: hand its memory back before the next one
                if plain_ms is None:
                    plain_ms = row.ms_per_step
                else:
                    row.ratio, row.ratio_of = row.ms_per_step / plain_ms, f"vs {method}"

    def training_step(self, name: str) -> Row:
        trainer, built = self.build(name, self.s.train_classes)
        images, labels = self.batch(input_resolution(built[0]), self.s.batch, self.s.train_classes)
        model, prec, device = trainer.model, trainer.prec, self.s.device
        batch = {"img": images, "label": labels}

        def step() -> None:
            trainer.forward_backward(batch)

        def floor() -> None:
            with autocast(prec, device):
                out = model(images)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                loss = F.cross_entropy(logits.float(), labels)
            loss.backward()

        fns: dict[str, Callable[[], object]] = {"step": step, "floor": floor}
        # PromptSRC-style losses also run a frozen reference image pass: part of the method's compute.
        reference = getattr(trainer, "reference_vision_tokens", None)
        if reference is not None:

            def frozen_reference() -> None:
                with torch.no_grad(), autocast(prec, device):
                    model.image_encoder(images, reference())

            fns["reference"] = frozen_reference
        m = self.run_measure(fns, lambda: clear_grads(model))
        floor_m, floor_note = m["floor"], "model fwd + CE + bwd"
        if "reference" in m:
            floor_m = combined(m["floor"], m["reference"])
            floor_note += " + frozen reference image fwd"
        ratio = m["step"].median_s / floor_m.median_s
        row = self.row(
            "b",
            f"train {name}",
            m["step"],
            self.s.batch,
            prec,
            ratio_to_floor=ratio,
            floor=f"floor {name}",
            note=f"{self.s.train_classes} classes",
        )
        rows = self.sections["b"]
        rows.append(row)
        rows.append(self.row("e", f"floor {name}", floor_m, self.s.batch, prec, note=floor_note))
        self.targets.append(Target(f"train step {name} (x floor)", ratio, OVERHEAD_LIMIT))
        return row

    # ------------------------------------------------------------------ (c) evaluation, (d) inference
    def eval_method(self) -> str | None:
        if self.s.eval_method is not None:
            if trainer_class(self.s.eval_method) is None:
                raise KeyError(f"--eval-method {self.s.eval_method!r} is not registered")
            return self.s.eval_method
        return next((m for m in EVAL_METHODS if trainer_class(m) is not None), None)

    def evaluation_and_inference(self, kinds: str) -> None:
        """(c) cached vs per-batch text features; (d) plain CLIP vs CLIP + boosting + adapting prompts."""
        name = self.eval_method()
        if name is None:
            self.notes.append("no cascaded trainer is registered: no evaluation/inference rows")
            return
        n, bs = self.s.classes, self.s.eval_batch
        trainer, built = self.build(name, n)
        if trainer.model.text_depends_on_image:
            raise ValueError(f"{name}'s text features depend on the image: it has no text-feature cache")
        clip_model, device, prec = built[0], self.s.device, trainer.prec
        images, _ = self.batch(input_resolution(clip_model), bs, n)
        trainer.set_model_mode("eval")
        trainer.model.eval()
        with torch.no_grad():
            if "c" in kinds:
                self.evaluation(trainer, name, images, prec)
            if "d" in kinds:
                self.inference(trainer, name, clip_model, images, prec, device)

    def evaluation(self, trainer: Any, name: str, images: Tensor, prec: str) -> None:
        n, bs = self.s.classes, images.shape[0]
        trainer.before_evaluation()

        def cached() -> None:
            trainer.model_inference(images)

        def per_batch() -> None:  # the text tower on every batch: what the cache avoids
            with autocast(prec, self.s.device):
                trainer.model(images).float()

        def build_cache() -> None:
            trainer.before_evaluation()

        m = self.run_measure({"cached": cached, "per_batch": per_batch, "build": build_cache})
        trainer.after_evaluation()
        speedup = m["per_batch"].median_s / m["cached"].median_s
        build_ms = m["build"].median_s * 1000.0
        rows = self.sections["c"]
        rows.append(
            self.row(
                "c",
                f"eval {name}, cached text features",
                m["cached"],
                bs,
                prec,
                ratio=speedup,
                ratio_of="speedup vs per-batch",
                note=f"{n} classes; cache built once per evaluation in {build_ms:.0f} ms",
            )
        )
        rows.append(
            self.row(
                "c", f"eval {name}, text features per batch", m["per_batch"], bs, prec, note=f"{n} classes"
            )
        )
        self.targets.append(
            Target(
                f"eval speedup, cached vs per-batch text ({n} classes, batch {bs})",
                speedup,
                EVAL_SPEEDUP_LIMIT,
                higher_is_better=True,
            )
        )

    def inference(
        self, trainer: Any, name: str, clip_model: nn.Module, images: Tensor, prec: str, device: torch.device
    ) -> None:
        bs = images.shape[0]
        tokens = clip.tokenize(fill(DEFAULT_TEMPLATE, trainer.classnames)).to(device)
        with autocast(prec, device):
            zs_text = F.normalize(clip_model.encode_text(tokens).float(), dim=-1)
        trainer.before_evaluation()

        def plain() -> None:  # CLIP's own encode_image + cached zero-shot text features
            with autocast(prec, device):
                feats = F.normalize(clip_model.encode_image(images).float(), dim=-1)
                (clip_model.logit_scale.exp() * feats @ zs_text.t()).float()

        def prompted() -> None:
            trainer.model_inference(images)

        m = self.run_measure({"plain": plain, "prompted": prompted})
        trainer.after_evaluation()
        ratio = m["prompted"].median_s / m["plain"].median_s
        what = "boosting prompts" if name == "CasPL_ZS" else "boosting + adapting prompts"
        rows = self.sections["d"]
        rows.append(
            self.row(
                "d",
                "infer plain CLIP (encode_image, cached text)",
                m["plain"],
                bs,
                prec,
                ratio=1.0,
                ratio_of="vs plain CLIP",
            )
        )
        rows.append(
            self.row(
                "d", f"infer {name} ({what})", m["prompted"], bs, prec, ratio=ratio, ratio_of="vs plain CLIP"
            )
        )
        self.targets.append(Target(f"inference latency {name} (x plain CLIP)", ratio, INFER_LIMIT))

    # ------------------------------------------------------------------ all
    def run(self) -> list[Row]:
        """Smallest models first, the teacher last, so each peak reflects its own section."""
        if "b" in self.s.kinds:
            self.training()
        if "c" in self.s.kinds or "d" in self.s.kinds:
            self.evaluation_and_inference(self.s.kinds)
            release_memory()
        if "a" in self.s.kinds:
            self.boosting()
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
