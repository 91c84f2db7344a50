"""Context Optimization (CoOp, Zhou et al., IJCV 2022): learnable text context, frozen CLIP, cross-entropy.

One shallow text group of N_CTX tokens (or one per class with CSC), placed before the class name ("end"),
after it ("front") or split around it ("middle"), as CLASS_TOKEN_POSITION says. With CTX_INIT the number
of words sets the token count and their embeddings the initial values (N_CTX and CSC are then ignored,
as in the published code); otherwise tokens start from N(0, 0.02^2).
"""

from collections.abc import Sequence

from clip.model import CLIP
from yacs.config import CfgNode as CN

from caspl.config import register_config
from caspl.engine.clip_trainer import CLIPPromptTrainer
from caspl.registry import TRAINER_REGISTRY
from caspl.vlm.model import CascadeGroups, PromptedCLIP
from caspl.vlm.prompted import LayerTokens, PromptGroup
from trainers.ivlp import check_input_size, class_texts, coop_context, describe_context, text_width

POSITIONS = ("end", "middle", "front")


@register_config
def add_coop_cfg(cfg: CN) -> None:
    """TRAINER.COOP with the published defaults (KaiyangZhou/CoOp train.py)."""
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of context tokens
    cfg.TRAINER.COOP.CSC = False  # class-specific context
    cfg.TRAINER.COOP.CTX_INIT = ""  # initialisation words
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16 | fp32 | amp | bf16
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end | middle | front


class CoOpModel(PromptedCLIP):
    """CLIP with CoOp's learnable context in the text tower."""

    def __init__(
        self,
        clip_model: CLIP,
        classnames: Sequence[str],
        n_ctx: int = 16,
        ctx_init: str = "",
        csc: bool = False,
        position: str = "end",
        cascade: CascadeGroups | None = None,
    ) -> None:
        if position not in POSITIONS:
            raise ValueError(
                f"TRAINER.COOP.CLASS_TOKEN_POSITION must be one of {POSITIONS}, got {position!r}"
            )
        init, prefix, n_ctx = coop_context(clip_model, ctx_init, n_ctx)
        names = [name.replace("_", " ") for name in classnames]
        if position != "end" and prefix:
            raise ValueError(
                f"CTX_INIT {ctx_init!r} leaves fixed words after the context, which CLASS_TOKEN_POSITION "
                f"{position!r} cannot place; use whole-word tokens or position 'end'"
            )
        super().__init__(
            clip_model,
            class_texts(names, prefix),
            [n_ctx],
            cascade,
            position=position,
            names=None if position == "end" else names,
        )
        if csc and init is not None:
            print(
                "Note: CTX_INIT is set, so the context is generic (CSC applies to random initialisation only)"
            )
        leading = (len(names),) if csc and init is None else ()
        if leading:
            print("Initializing class-specific contexts")
        elif init is None:
            print("Initializing a generic context")
        self.prompt_learner.ctx = PromptGroup(
            n_ctx, text_width(clip_model), 1, init=init, leading_shape=leading
        )
        print(f'Initial context: "{describe_context(init, n_ctx, ctx_init)}"')
        print(f"Number of context words (tokens): {n_ctx}")

    def method_text_tokens(self) -> list[LayerTokens]:
        return [self.prompt_learner.ctx()]


@TRAINER_REGISTRY.register()
class CoOp(CLIPPromptTrainer):
    """Context Optimization: learn the prompt's context words, keep CLIP frozen."""

    cfg_node = "COOP"

    def build_prompt_model(
        self, clip_model: CLIP, classnames: list[str], cascade: CascadeGroups | None
    ) -> PromptedCLIP:
        check_input_size(self.cfg, clip_model)
        c = self.method_cfg
        return CoOpModel(clip_model, classnames, c.N_CTX, c.CTX_INIT, c.CSC, c.CLASS_TOKEN_POSITION, cascade)
