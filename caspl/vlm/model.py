"""PromptedCLIP: frozen CLIP towers + a method's prompt groups (+ an optional cascaded group) -> logits."""

from collections.abc import Sequence

import torch.nn.functional as F
from clip.model import CLIP
from torch import Tensor, nn

from caspl.vlm.prompted import LayerTokens, PromptedImageEncoder, PromptedTextEncoder, PromptGroup


class CascadeGroups(nn.Module):
    """A pair of prompt groups cascaded into another method's encoders (CasPL's boosting prompts).

    Text side: placed after the method's groups ([SOS][method][cascade][class]); vision side: before
    them ([CLS][patches][cascade][method]).
    """

    def __init__(self, text: PromptGroup, vision: PromptGroup) -> None:
        super().__init__()
        self.text = text
        self.vision = vision


class PromptedCLIP(nn.Module):
    """Base model of every prompt learner; subclasses fill `prompt_learner` and return its tokens.

    Only `prompt_learner` is trained and checkpointed; CLIP and the cascade stay frozen unless a trainer
    says otherwise.
    """

    # CoCoOp's text features depend on the image; the others are computed once per evaluation.
    text_depends_on_image = False

    def __init__(
        self,
        clip_model: CLIP,
        texts: Sequence[str],
        method_text_sizes: Sequence[int] = (),
        cascade: CascadeGroups | None = None,
        position: str = "end",
        names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.prompt_learner = nn.Module()
        self.cascade = cascade
        sizes = list(method_text_sizes) + ([cascade.text.n_tokens] if cascade is not None else [])
        self.text_encoder = PromptedTextEncoder(clip_model, texts, sizes, position, names)
        self.image_encoder = PromptedImageEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale

    # ---- what a method supplies
    def method_text_tokens(self) -> list[LayerTokens]:
        """Per-group, per-layer text tokens of the method, in slot order."""
        return []

    def method_vision_tokens(self) -> list[LayerTokens]:
        """Per-group, per-layer vision tokens of the method, in slot order."""
        return []

    # ---- the cascade, one mechanism for every method
    def text_tokens(self) -> list[LayerTokens]:
        cascade = [self.cascade.text()] if self.cascade is not None else []
        return self.method_text_tokens() + cascade

    def vision_tokens(self) -> list[LayerTokens]:
        cascade = [self.cascade.vision()] if self.cascade is not None else []
        return cascade + self.method_vision_tokens()

    def encode_text(self) -> Tensor:
        """Text features of every class (unnormalized)."""
        return self.text_encoder(self.text_tokens())

    def encode_image(self, images: Tensor) -> Tensor:
        """Image features (unnormalized)."""
        return self.image_encoder(images, self.vision_tokens())

    def forward(self, images: Tensor, text_features: Tensor | None = None) -> Tensor:
        """Logits (B, n_classes); pass precomputed `text_features` to skip the text tower."""
        image_features = F.normalize(self.encode_image(images), dim=-1)
        if text_features is None:
            text_features = self.encode_text()
        text_features = F.normalize(text_features, dim=-1)
        return self.logit_scale.exp() * image_features @ text_features.t().to(image_features.dtype)
