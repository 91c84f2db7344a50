"""Base trainer of the CLIP prompt learners: frozen CLIP + a PromptedCLIP whose prompt_learner trains.

A method subclass sets `cfg_node` (its TRAINER.<NODE> with PREC) and implements `build_prompt_model`;
the loss defaults to cross-entropy (override `compute_loss`). `build_cascade` is the one seam CasPL uses
to put its frozen boosting prompts into any method.
"""

from typing import Any

import torch
import torch.nn.functional as F
from clip.model import CLIP, ModifiedResNet
from torch import Tensor

from caspl.engine.precision import autocast, cast_frozen_clip, effective_precision, grad_scaler
from caspl.engine.trainer import TrainerX
from caspl.vlm.build import build_clip, freeze
from caspl.vlm.model import CascadeGroups, PromptedCLIP
from caspl.vlm.prompted import text_tower_options, use_text_tower_options


def count_parameters(module: Any, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class CLIPPromptTrainer(TrainerX):
    """Trains `self.model.prompt_learner` of a PromptedCLIP with the method's loss."""

    cfg_node = ""  # e.g. "COOP": the trainer's config node under TRAINER
    cascade_trainable = False  # CasPL's ablation makes the boosting prompts learnable

    @property
    def method_cfg(self) -> Any:
        return self.cfg.TRAINER[self.cfg_node]

    def build_prompt_model(
        self, clip_model: CLIP, classnames: list[str], cascade: CascadeGroups | None
    ) -> PromptedCLIP:
        raise NotImplementedError

    def build_cascade(self, clip_model: CLIP) -> CascadeGroups | None:
        """Groups cascaded into the method's encoders: none for the plain method."""
        return None

    def build_model(self) -> None:
        cfg = self.cfg
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model = freeze(build_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH))
        self.clip_size = count_parameters(clip_model)
        self.prec = effective_precision(self.method_cfg.PREC, self.device)
        with use_text_tower_options(text_tower_options(cfg)):  # every text encoder the build makes
            cascade = self.build_cascade(clip_model)
            print("Building custom CLIP")
            self.model = self.build_prompt_model(clip_model, self.classnames, cascade)
        # Only the method's prompt learner trains (and the cascade when a trainer made it trainable).
        trainable_prefixes = ("prompt_learner.",) + (("cascade.",) if self.cascade_trainable else ())
        for name, p in self.model.named_parameters():
            p.requires_grad_(name.startswith(trainable_prefixes))
        cast_frozen_clip(clip_model, self.prec)
        self.model.to(self.device)
        if self.use_channels_last(clip_model):
            print("Using channels_last memory format (convolutional image encoder on GPU)")
            self.memory_format = torch.channels_last
            self.model.to(memory_format=torch.channels_last)
        self.report_trainable()
        self.optim, self.sched = self.build_optim_sched(self.trainable_module())
        self.register_model("prompt_learner", self.model.prompt_learner, self.optim, self.sched)
        if self.cascade_trainable:
            self.register_model("cascade", self.model.cascade)
        self.scaler = grad_scaler(self.prec, self.device)
        self._text_features: Tensor | None = None
        if cfg.TRAIN.COMPILE:
            self.compile_model()

    def use_channels_last(self, clip_model: CLIP) -> bool:
        """channels_last pays off for convolutions on a GPU (the RN50/RN101 towers), not for a ViT's patchify."""
        return self.device.type == "cuda" and isinstance(clip_model.visual, ModifiedResNet)

    def compile_model(self) -> None:
        """TRAIN.COMPILE: torch.compile the model's forward in place (nn.Module.compile), so `self.model`
        stays the same module: its state_dict keys, checkpoints and registered prompt learner are unchanged.
        Only `self.model(...)` calls are compiled (methods that call encode_text/encode_image directly run
        eagerly for those calls)."""
        mode = self.cfg.TRAIN.COMPILE_MODE
        print(f"Compiling the model's forward with torch.compile (mode: {mode})")
        self.model.compile(mode=None if mode == "default" else mode)

    def trainable_module(self) -> Any:
        return self.model

    def report_trainable(self) -> None:
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        n = count_parameters(self.model, trainable_only=True)
        print(f"Parameters to be updated ({len(names)} tensors): {names}")
        print(
            f"Trainable parameters: {n:,} ({100.0 * n / max(self.clip_size, 1):.4f}% of CLIP's {self.clip_size:,})"
        )

    # ---- training
    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Any], Tensor]:
        """The method's loss; returns (loss, extra log values as floats or detached tensors, logits)."""
        logits = self.model(images)
        return F.cross_entropy(logits, labels), {}, logits

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, Any]:
        images, labels = self.parse_batch_train(batch)
        with autocast(self.prec, self.device):
            loss, extra, logits = self.compute_loss(images, labels)
        if self.scaler is not None:
            self.model_zero_grad()
            self.scaler.scale(loss).backward()
            self.sync_gradients()
            for name in self.get_model_names():
                if self._optims[name] is not None:
                    self.scaler.step(self._optims[name])
            self.scaler.update()
        else:
            self.model_backward_and_update(loss)
        acc = (logits.argmax(dim=-1) == labels).float().mean() * 100.0
        return {"loss": loss.detach(), "acc": acc, **extra}

    # ---- evaluation: image-independent text features once per evaluation, not per batch
    def before_evaluation(self) -> None:
        if not self.model.text_depends_on_image:
            with autocast(self.prec, self.device):
                self._text_features = self.model.encode_text()

    def after_evaluation(self) -> None:
        self._text_features = None

    def model_inference(self, images: Tensor) -> Tensor:
        with autocast(self.prec, self.device):
            return self.model(images, self._text_features).float()
