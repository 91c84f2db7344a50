"""PromptSRC (Khattak et al., ICCV 2023): IVLP prompts regularised towards the frozen model, plus GPA.

Loss per batch, as in the published trainer (all terms on L2-normalized features):
  CE(logits, y)
  + TEXT_LOSS_WEIGHT  * L1(prompted class text features, frozen template-ensemble text features)   (mean)
  + IMAGE_LOSS_WEIGHT * L1(prompted image features, frozen image features)                         (mean)
  + sum KL(softmax(frozen logits) || softmax(prompted logits)) / (batch x classes)
The frozen text targets average the frozen text features over PromptSRC's 60 ImageNet templates; they are
computed once when the model is built. The frozen model is CLIP with only the cascaded group, if any
(`reference_cascade`; CasPL switches it with REG_REFERENCE). Gaussian prompt aggregation (GPA): after
each epoch e (1-based) the prompts are added to a running sum with weight N(e; GPA_MEAN, GPA_STD)
normalized over the epochs, and after the last epoch that sum becomes the model.
"""

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from clip.model import CLIP
from torch import Tensor, nn
from yacs.config import CfgNode as CN

from caspl.config import register_config
from caspl.registry import TRAINER_REGISTRY
from caspl.vlm.imagenet_templates import IMAGENET_TEMPLATES
from caspl.vlm.model import CascadeGroups, PromptedCLIP
from caspl.vlm.prompted import PromptedTextEncoder, PromptGroup
from caspl.vlm.templates import fill
from trainers.ivlp import IVLP


@register_config
def add_promptsrc_cfg(cfg: CN) -> None:
    """TRAINER.PROMPTSRC with the published defaults and types (muzairkhattak/PromptSRC train.py)."""
    cfg.TRAINER.PROMPTSRC = CN()
    cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4  # vision tokens per prompted layer
    cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4  # text tokens per prompted layer
    cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"  # initialises the layer-0 text tokens (N_CTX_TEXT <= 4)
    cfg.TRAINER.PROMPTSRC.PREC = "fp16"  # fp16 | fp32 | amp | bf16
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9  # prompted vision layers
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9  # prompted text layers (>= 1)
    # Integers as published: yacs refuses a YAML whose value type differs from the default's.
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25
    cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15
    cfg.TRAINER.PROMPTSRC.GPA_STD = 1


# ---------------------------------------------------------------------------- frozen targets
@torch.no_grad()
def template_text_features(
    clip_model: CLIP,
    classnames: Sequence[str],
    templates: Sequence[str] = IMAGENET_TEMPLATES,
    text_group: PromptGroup | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Normalized mean over templates of the frozen (unnormalized) class text features, (n_cls, embed_dim).

    With `text_group`, its tokens sit right after [SOS] ([SOS][group][template text][EOT]), as the
    cascaded group does in the prompted model.
    """
    sizes = [text_group.n_tokens] if text_group is not None else []
    groups = [[t.detach().to(device) for t in text_group()]] if text_group is not None else []
    total = None
    for template in templates:  # the encoder chunks the classes and cuts each pass to its longest prompt
        features = PromptedTextEncoder(clip_model, fill(template, list(classnames)), sizes).to(device)(groups)
        features = features.float()
        total = features if total is None else total + features
    return F.normalize(total / len(templates), dim=-1)


# ---------------------------------------------------------------------------- GPA
def gpa_weights(max_epoch: int, mean: float, std: float) -> list[float]:
    """Gaussian weights of epochs 1..max_epoch, N(e; mean, std), normalized to sum to 1."""
    if std <= 0:
        raise ValueError(f"TRAINER.PROMPTSRC.GPA_STD must be > 0, got {std}")
    pdf = [
        math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        for e in range(1, max_epoch + 1)
    ]
    total = sum(pdf)
    if max_epoch > 0 and total == 0.0:
        raise ValueError(
            f"GPA_MEAN {mean} / GPA_STD {std} put no weight on epochs 1..{max_epoch}: "
            "choose a mean within the epochs or a wider std"
        )
    return [p / total for p in pdf]


class GaussianPromptAggregation(nn.Module):
    """Running Gaussian-weighted sum of the trained modules' floating-point state over epochs.

    The sum lives in buffers, so it is checkpointed with the run and a resumed run continues it exactly.
    The aggregated modules are referenced, not owned (they are not part of this module's state).
    """

    def __init__(self, targets: dict[str, nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        self.weights = list(weights)
        self._targets = tuple(targets.items())  # a tuple: nn.Module does not register its contents
        self._entries: list[tuple[nn.Module, str, str]] = []
        for name, module in self._targets:
            for key, value in module.state_dict().items():
                if value.is_floating_point():
                    buffer = f"{name}.{key}".replace(".", "__")
                    self.register_buffer(buffer, torch.zeros_like(value, dtype=torch.float32))
                    self._entries.append((module, key, buffer))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def accumulate(self, epoch: int) -> None:
        """Add the targets' current state with the weight of `epoch` (0-based); each epoch counts once."""
        if epoch < int(self.epochs_done):
            return
        weight = self.weights[epoch]
        states = {}
        for module, key, buffer in self._entries:
            state = states.setdefault(id(module), module.state_dict())
            getattr(self, buffer).add_(state[key].float(), alpha=weight)
        self.epochs_done.fill_(epoch + 1)

    def aggregate(self) -> dict[str, Tensor]:
        """The current weighted sum, keyed "<target>.<state key>"."""
        names = {id(m): n for n, m in self._targets}
        return {f"{names[id(m)]}.{key}": getattr(self, b).clone() for m, key, b in self._entries}

    @torch.no_grad()
    def apply(self) -> None:
        """Overwrite the targets' state with the aggregate."""
        for module, key, buffer in self._entries:
            target = module.state_dict()[key]
            target.copy_(getattr(self, buffer).to(target.dtype))


# ---------------------------------------------------------------------------- trainer
@TRAINER_REGISTRY.register()
class PromptSRC(IVLP):
    """IVLP prompts + self-regularizing constraints towards the frozen model + Gaussian prompt aggregation."""

    cfg_node = "PROMPTSRC"

    def reference_cascade(self) -> CascadeGroups | None:
        """The groups the frozen reference model keeps: the cascade (none for plain PromptSRC)."""
        return self.model.cascade

    def build_prompt_model(
        self, clip_model: CLIP, classnames: list[str], cascade: CascadeGroups | None
    ) -> PromptedCLIP:
        model = super().build_prompt_model(clip_model, classnames, cascade)
        self.model = model  # reference_cascade() reads self.model
        reference = self.reference_cascade()
        print(
            f"Computing the frozen text targets: {len(IMAGENET_TEMPLATES)} ImageNet templates x "
            f"{len(classnames)} classes" + (" (with the cascaded group)" if reference is not None else "")
        )
        features = template_text_features(
            clip_model,
            classnames,
            IMAGENET_TEMPLATES,
            reference.text if reference is not None else None,
            self.device,
        )
        model.register_buffer("reference_text_features", features, persistent=False)
        # The reference's vision tokens, frozen as they are now, like its text side above (they would
        # otherwise follow the cascade when TRAINER.CASPL.BOOST_TRAINABLE trains it).
        self.n_reference_vision = 0
        if reference is not None:
            for i, tokens in enumerate(reference.vision()):
                model.register_buffer(f"reference_vision_{i}", tokens.detach().clone(), persistent=False)
            self.n_reference_vision = len(reference.vision())
        return model

    def build_model(self) -> None:
        super().build_model()
        c = self.method_cfg
        weights = gpa_weights(self.max_epoch, c.GPA_MEAN, c.GPA_STD)
        targets = {"prompt_learner": self.model.prompt_learner}
        if self.cascade_trainable:
            targets["cascade"] = self.model.cascade
        self.gpa = GaussianPromptAggregation(targets, weights)
        self.register_model("gpa", self.gpa)
        print(f"GPA weights over {self.max_epoch} epochs: {[round(w, 4) for w in weights]}")

    def reference_vision_tokens(self) -> list[Any]:
        if not self.n_reference_vision:
            return []
        return [[getattr(self.model, f"reference_vision_{i}") for i in range(self.n_reference_vision)]]

    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Any], Tensor]:
        model, c = self.model, self.method_cfg
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(model.encode_text(), dim=-1)
        scale = model.logit_scale.exp()
        logits = scale * image_features @ text_features.t().to(image_features.dtype)
        reference_text = model.reference_text_features
        with torch.no_grad():
            reference_image = model.image_encoder(images, self.reference_vision_tokens())
            reference_image = F.normalize(reference_image.float(), dim=-1)
            reference_logits = scale.float() * reference_image @ reference_text.t()
        loss_ce = F.cross_entropy(logits, labels)
        loss_text = F.l1_loss(text_features.float(), reference_text) * c.TEXT_LOSS_WEIGHT
        loss_image = F.l1_loss(image_features.float(), reference_image) * c.IMAGE_LOSS_WEIGHT
        loss_kl = (
            F.kl_div(
                F.log_softmax(logits.float(), dim=1),
                F.log_softmax(reference_logits, dim=1),
                reduction="sum",
                log_target=True,
            )
            / logits.numel()
        )
        loss = loss_ce + loss_kl + loss_text + loss_image
        extra = {
            "loss_ce": loss_ce.detach(),
            "loss_text": loss_text.detach(),
            "loss_image": loss_image.detach(),
            "loss_kl": loss_kl.detach(),
        }
        return loss, extra, logits

    def after_epoch(self) -> None:
        self.gpa.accumulate(self.epoch)
        if self.epoch + 1 == self.max_epoch:
            print("Using GPA model for final inference...")
            self.gpa.apply()
        super().after_epoch()
