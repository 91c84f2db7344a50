"""Multi-modal Prompt Learning (MaPLe, Khattak et al., CVPR 2023): deep text prompts coupled to vision.

A deep text group of N_CTX tokens over PROMPT_DEPTH layers (layer 0 from CTX_INIT when N_CTX <= 4, the
rest of CTX_INIT staying as fixed text; deeper layers from N(0, 0.02^2)). The vision tokens are not free
parameters: layer 0 is `proj(text layer 0)` and layer j >= 1 is `compound_projections[j-1](text layer j)`,
linear maps text width -> vision width. As published, the compound projections are copies of one
freshly initialised layer, so they start equal.

With CasPL's boosting prompts cascaded in (CasPL_MaPLe), the words of CTX_INIT left after the MaPLe tokens
stay between the MaPLe tokens and the boosting tokens, at every layer: [SOS][MaPLe]"of a"[boosting][class.]
(the authors' CasPL_MaPLe; with N_CTX 2 they keep exactly two words there, "X" where CTX_INIT has none).
"""

import copy
from collections.abc import Sequence

from clip.model import CLIP
from torch import Tensor, nn
from yacs.config import CfgNode as CN

from caspl.config import register_config
from caspl.engine.clip_trainer import CLIPPromptTrainer
from caspl.registry import TRAINER_REGISTRY
from caspl.vlm.model import CascadeGroups, PromptedCLIP
from caspl.vlm.prompted import LayerTokens, PromptGroup, tokenizer
from trainers.ivlp import (
    check_depth,
    check_input_size,
    class_texts,
    describe_context,
    ivlp_context,
    text_width,
    vision_width,
)


@register_config
def add_maple_cfg(cfg: CN) -> None:
    """TRAINER.MAPLE with the published defaults (muzairkhattak/multimodal-prompt-learning train.py)."""
    cfg.TRAINER.MAPLE = CN()
    cfg.TRAINER.MAPLE.N_CTX = 2  # context tokens per prompted layer (both towers)
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"  # initialises the layer-0 text tokens (N_CTX <= 4)
    cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16 | fp32 | amp | bf16
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # prompted layers in each tower (1: shallow MaPLe)


class MaPLePromptLearner(nn.Module):
    """MaPLe's deep text prompts and the coupling functions that make the vision prompts from them."""

    def __init__(self, clip_model: CLIP, n_ctx: int, ctx_init: str, depth: int) -> None:
        super().__init__()
        n_layers = min(len(clip_model.transformer.resblocks), len(clip_model.visual.transformer.resblocks))
        check_depth("TRAINER.MAPLE.PROMPT_DEPTH", depth, n_layers, minimum=1)
        init, self.prefix = ivlp_context(clip_model, ctx_init, n_ctx)
        self.initial_text = describe_context(init, n_ctx, ctx_init)
        d_text, d_vision = text_width(clip_model), vision_width(clip_model)
        self.text = PromptGroup(n_ctx, d_text, depth, init=init)
        self.proj = nn.Linear(d_text, d_vision)
        coupling = nn.Linear(d_text, d_vision)
        self.compound_projections = nn.ModuleList(copy.deepcopy(coupling) for _ in range(depth - 1))

    def vision_tokens(self, text_tokens: Sequence[Tensor]) -> list[Tensor]:
        """The vision prompts of each layer: the coupling projection of that layer's text prompts."""
        return [self.proj(text_tokens[0])] + [
            project(tokens) for project, tokens in zip(self.compound_projections, text_tokens[1:])
        ]


def cascade_layout(
    classnames: Sequence[str], n_ctx: int, fixed: str, n_cascade: int
) -> list[list[str | int]]:
    """CasPL_MaPLe's text per class: [MaPLe slots] fixed words [boosting slots] "class name." (the authors')."""
    if n_ctx == 2:
        # Their 2-token case keeps the two tokens that follow the MaPLe tokens in "CTX_INIT X X ...": "of a"
        # for "a photo of a", the boosting placeholders "X X" for an empty CTX_INIT.
        ids = (tokenizer().encode(fixed) + tokenizer().encode("X X"))[:2]
        fixed = tokenizer().decode(ids).strip()
    middle = [fixed] if fixed else []
    return [[n_ctx, *middle, n_cascade, text] for text in class_texts(classnames)]


class MaPLeModel(PromptedCLIP):
    """CLIP with MaPLe's coupled deep prompts."""

    def __init__(
        self,
        clip_model: CLIP,
        classnames: Sequence[str],
        n_ctx: int = 2,
        ctx_init: str = "a photo of a",
        depth: int = 9,
        cascade: CascadeGroups | None = None,
    ) -> None:
        learner = MaPLePromptLearner(clip_model, n_ctx, ctx_init, depth)
        if cascade is None:
            texts: list = class_texts(classnames, learner.prefix)
        else:
            texts = cascade_layout(classnames, n_ctx, learner.prefix, cascade.text.n_tokens)
        super().__init__(clip_model, texts, [n_ctx], cascade)
        self.prompt_learner = learner
        print("MaPLe design: Multi-modal Prompt Learning")
        print(f'Initial context: "{learner.initial_text}"')
        print(f"Number of MaPLe context words (tokens): {n_ctx}")

    def method_text_tokens(self) -> list[LayerTokens]:
        return [self.prompt_learner.text()]

    def method_vision_tokens(self) -> list[LayerTokens]:
        return [self.prompt_learner.vision_tokens(self.prompt_learner.text())]


@TRAINER_REGISTRY.register()
class MaPLe(CLIPPromptTrainer):
    """Multi-modal prompt learning: deep text prompts, vision prompts projected from them, cross-entropy."""

    cfg_node = "MAPLE"

    def build_prompt_model(
        self, clip_model: CLIP, classnames: list[str], cascade: CascadeGroups | None
    ) -> PromptedCLIP:
        check_input_size(self.cfg, clip_model)
        c = self.method_cfg
        return MaPLeModel(clip_model, classnames, c.N_CTX, c.CTX_INIT, c.PROMPT_DEPTH, cascade)
