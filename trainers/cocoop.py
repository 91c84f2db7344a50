"""Conditional Context Optimization (CoCoOp, Zhou et al., CVPR 2022).

CoOp's shallow context plus a meta-net (Linear vis_dim -> vis_dim // 16, ReLU, Linear -> ctx_dim) that
maps each image's normalized feature to a bias added to every context token: the text prompt, and
therefore the class text features, depend on the image, so the text tower runs once per image.
"""

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from clip.model import CLIP
from torch import Tensor, nn
from yacs.config import CfgNode as CN

from caspl.config import register_config
from caspl.engine.clip_trainer import CLIPPromptTrainer
from caspl.registry import TRAINER_REGISTRY
from caspl.vlm.model import CascadeGroups, PromptedCLIP
from caspl.vlm.prompted import LayerTokens, PromptGroup
from trainers.ivlp import check_input_size, class_texts, coop_context, describe_context, text_width


@register_config
def add_cocoop_cfg(cfg: CN) -> None:
    """TRAINER.COCOOP with the published defaults (KaiyangZhou/CoOp train.py)."""
    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16  # number of context tokens
    cfg.TRAINER.COCOOP.CTX_INIT = ""  # initialisation words
    cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16 | fp32 | amp | bf16


class CoCoOpModel(PromptedCLIP):
    """CLIP with CoCoOp's image-conditioned context (meta-net bias on every context token)."""

    text_depends_on_image = True

    def __init__(
        self,
        clip_model: CLIP,
        classnames: Sequence[str],
        n_ctx: int = 16,
        ctx_init: str = "",
        cascade: CascadeGroups | None = None,
    ) -> None:
        init, prefix, n_ctx = coop_context(clip_model, ctx_init, n_ctx)
        super().__init__(clip_model, class_texts(classnames, prefix), [n_ctx], cascade)
        ctx_dim = text_width(clip_model)
        vis_dim = int(clip_model.visual.output_dim)
        self.prompt_learner.ctx = PromptGroup(n_ctx, ctx_dim, 1, init=init)
        self.prompt_learner.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
                ]
            )
        )
        print(f'Initial context: "{describe_context(init, n_ctx, ctx_init)}"')
        print(f"Number of context words (tokens): {n_ctx}")

    def method_text_tokens(self) -> list[LayerTokens]:
        """The unconditioned context (what every image's context is shifted from)."""
        return [self.prompt_learner.ctx()]

    def shifted_context(self, image_features: Tensor) -> Tensor:
        """Per-image context (B, n_ctx, D): ctx + meta_net(normalized image feature)."""
        meta_net = self.prompt_learner.meta_net
        bias = meta_net(image_features.to(meta_net.linear1.weight.dtype))
        return self.prompt_learner.ctx()[0].unsqueeze(0) + bias.unsqueeze(1)

    def forward(self, images: Tensor, text_features: Tensor | None = None) -> Tensor:
        """Logits (B, n_classes); the text tower runs once per image (`text_features` cannot apply)."""
        image_features = F.normalize(self.encode_image(images), dim=-1)
        contexts = self.shifted_context(image_features)
        groups = self.text_tokens()  # [method context, cascaded groups...]: replace the method's layer 0
        scale = self.logit_scale.exp()
        logits = []
        for feature, ctx in zip(image_features, contexts):
            text = F.normalize(self.text_encoder([[ctx], *groups[1:]]), dim=-1)
            logits.append(scale * feature @ text.t().to(feature.dtype))
        return torch.stack(logits)


@TRAINER_REGISTRY.register()
class CoCoOp(CLIPPromptTrainer):
    """Conditional Context Optimization: CoOp's context shifted per image by a light meta-net."""

    cfg_node = "COCOOP"

    def build_prompt_model(
        self, clip_model: CLIP, classnames: list[str], cascade: CascadeGroups | None
    ) -> PromptedCLIP:
        check_input_size(self.cfg, clip_model)
        c = self.method_cfg
        return CoCoOpModel(clip_model, classnames, c.N_CTX, c.CTX_INIT, cascade)
