"""Independent Vision-Language Prompting (IVLP), and the helpers every prompt learner of the family shares.

IVLP (MaPLe paper, Khattak et al. 2023) learns a deep text group and a deep vision group that do not
interact: text [SOS][ctx][fixed text][class][.][EOT] with `PROMPT_DEPTH_TEXT` prompted layers, vision
[CLS][patches][ctx] with `PROMPT_DEPTH_VISION` prompted layers. The layer-0 text tokens start from the
first `N_CTX_TEXT` word embeddings of CTX_INIT when N_CTX_TEXT <= 4 (the rest of CTX_INIT stays as fixed
text, as in the published code), deeper tokens and all vision tokens from N(0, 0.02^2).

Shared here: CTX_INIT handling (`ivlp_context`, `coop_context`), the class texts, the input-size and
depth checks, and `IVLPPromptLearner`, the deep text + vision group pair that PromptSRC and CasPL's
boosting prompts reuse.
"""

from collections.abc import Sequence
from typing import Any

from clip.model import CLIP
from torch import Tensor, nn
from yacs.config import CfgNode as CN

from caspl.config import register_config
from caspl.engine.clip_trainer import CLIPPromptTrainer
from caspl.registry import TRAINER_REGISTRY
from caspl.vlm.build import input_resolution
from caspl.vlm.model import CascadeGroups, PromptedCLIP
from caspl.vlm.prompted import LayerTokens, PromptGroup, init_tokens_from_text, tokenizer


@register_config
def add_ivlp_cfg(cfg: CN) -> None:
    """TRAINER.IVLP with the published defaults (muzairkhattak/multimodal-prompt-learning train.py)."""
    cfg.TRAINER.IVLP = CN()
    cfg.TRAINER.IVLP.N_CTX_VISION = 2  # vision tokens per prompted layer
    cfg.TRAINER.IVLP.N_CTX_TEXT = 2  # text tokens per prompted layer
    cfg.TRAINER.IVLP.CTX_INIT = "a photo of a"  # initialises the layer-0 text tokens (N_CTX_TEXT <= 4)
    cfg.TRAINER.IVLP.PREC = "fp16"  # fp16 | fp32 | amp | bf16
    cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 9  # prompted vision layers (0: no vision prompts)
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = 9  # prompted text layers (>= 1)


# ---------------------------------------------------------------------------- shared helpers
def text_width(clip_model: CLIP) -> int:
    """Width of the text tower's tokens."""
    return int(clip_model.ln_final.weight.shape[0])


def vision_width(clip_model: CLIP) -> int:
    """Width of the vision tower's tokens."""
    return int(clip_model.visual.conv1.weight.shape[0])


def split_ctx_init(clip_model: CLIP, ctx_init: str, n_ctx: int) -> tuple[Tensor, str]:
    """Embeddings of the first `n_ctx` tokens of CTX_INIT and the remaining words as fixed text.

    The CoOp family builds the prompt "CTX_INIT classname." and makes its first n_ctx tokens learnable,
    so with MaPLe's N_CTX 2 and "a photo of a" the text reads [SOS][a photo]"of a {class}."[EOT].
    """
    text = ctx_init.replace("_", " ").strip()
    ids = tokenizer().encode(text)
    if n_ctx > len(ids):
        raise ValueError(
            f"CTX_INIT {ctx_init!r} has {len(ids)} tokens, fewer than the {n_ctx} context tokens asked for: "
            "use a longer CTX_INIT, fewer tokens, or CTX_INIT '' (random initialisation)"
        )
    init = init_tokens_from_text(clip_model, text)[:n_ctx]
    rest_ids = ids[n_ctx:]
    rest = tokenizer().decode(rest_ids).strip() if rest_ids else ""
    if rest and tokenizer().encode(rest) != rest_ids:
        print(
            f"Note: CTX_INIT {ctx_init!r} splits inside a word; the fixed text after the context is {rest!r}"
        )
    return init, rest


def ivlp_context(clip_model: CLIP, ctx_init: str, n_ctx: int) -> tuple[Tensor | None, str]:
    """IVLP/MaPLe/PromptSRC rule: CTX_INIT initialises the tokens only when n_ctx <= 4, else random."""
    if ctx_init and 0 < n_ctx <= 4:
        return split_ctx_init(clip_model, ctx_init, n_ctx)
    return None, ""


def coop_context(clip_model: CLIP, ctx_init: str, n_ctx: int) -> tuple[Tensor | None, str, int]:
    """CoOp/CoCoOp rule: with CTX_INIT, N_CTX is ignored and the number of words sets the token count."""
    if ctx_init:
        n_words = len(ctx_init.replace("_", " ").strip().split(" "))
        init, rest = split_ctx_init(clip_model, ctx_init, n_words)
        return init, rest, n_words
    return None, "", n_ctx


def class_texts(classnames: Sequence[str], prefix: str = "") -> list[str]:
    """What follows the context slots for each class: "[fixed words ]class name." (underscores as spaces)."""
    names = [name.replace("_", " ") for name in classnames]
    return [f"{prefix} {name}." if prefix else f"{name}." for name in names]


def describe_context(init: Tensor | None, n_ctx: int, ctx_init: str) -> str:
    """The initial prompt as the CoOp family prints it ("a photo of a" or "X X X X")."""
    return " ".join(["X"] * n_ctx) if init is None else ctx_init.replace("_", " ").strip()


def backbone_fixes(cfg: Any, clip_model: CLIP) -> list[tuple[str, str]]:
    """Every KEY VALUE this run needs to fit `clip_model`: INPUT.SIZE and the trainer's prompt depths.

    The published configs are for ViT-B/16 (224 px, 12 layers); a smaller backbone such as `tiny-vit`
    (32 px, 4 layers) needs all of them changed, so they are reported together.
    """
    native = input_resolution(clip_model)
    fixes = []
    if tuple(int(s) for s in cfg.INPUT.SIZE) != (native, native):
        fixes.append(("INPUT.SIZE", f'"({native}, {native})"'))
    layers = {"TEXT": len(clip_model.transformer.resblocks)}
    if hasattr(clip_model.visual, "transformer"):  # a ResNet image tower takes no prompts
        layers["VISION"] = len(clip_model.visual.transformer.resblocks)
    name = cfg.TRAINER.NAME
    node = getattr(TRAINER_REGISTRY.get(name), "cfg_node", "") if name in TRAINER_REGISTRY else ""
    for key, depth in _depth_options(cfg.TRAINER.get(node), f"TRAINER.{node}") if node else []:
        tower = next((t for t in layers if key.endswith(t)), None)
        limit = layers[tower] if tower else min(layers.values())  # MaPLe's one depth spans both towers
        if depth > limit:
            fixes.append((key, str(limit)))
    return fixes


def _depth_options(node: Any, prefix: str) -> list[tuple[str, int]]:
    """(full key, value) of every integer *DEPTH* option under a config node."""
    found = []
    for key, value in (node or {}).items():
        if isinstance(value, CN):
            found += _depth_options(value, f"{prefix}.{key}")
        elif "DEPTH" in key and isinstance(value, int) and not isinstance(value, bool):
            found.append((f"{prefix}.{key}", value))
    return found


def check_input_size(cfg: Any, clip_model: CLIP) -> None:
    """The CoOp family trains at CLIP's own resolution (the positional embedding is not resized), with no
    more prompted layers than the towers have: one error lists every option to change."""
    fixes = backbone_fixes(cfg, clip_model)
    if fixes:
        towers = f"{len(clip_model.transformer.resblocks)} text layers, {input_resolution(clip_model)} px"
        raise ValueError(
            f"the config does not fit backbone {cfg.MODEL.BACKBONE.NAME} ({towers}): "
            f"{', '.join(f'{k} is {cfg_value(cfg, k)}' for k, _ in fixes)}. Append, in one go:\n"
            f"    {' '.join(f'{k} {v}' for k, v in fixes)}"
        )


def cfg_value(cfg: Any, key: str) -> Any:
    """The value of a dotted config key (for messages)."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return tuple(node) if isinstance(node, list | tuple) else node


def check_depth(key: str, depth: int, n_layers: int, minimum: int = 0) -> None:
    """A prompt depth must lie in [minimum, number of transformer layers]."""
    if not minimum <= depth <= n_layers:
        raise ValueError(f"{key} is {depth} but must be between {minimum} and the tower's {n_layers} layers")


class IVLPPromptLearner(nn.Module):
    """A deep text group and an independent deep vision group (IVLP's prompts)."""

    def __init__(
        self,
        clip_model: CLIP,
        n_ctx_text: int,
        n_ctx_vision: int,
        depth_text: int,
        depth_vision: int,
        ctx_init: str = "",
        key: str = "TRAINER.IVLP",
    ) -> None:
        super().__init__()
        check_depth(f"{key}.PROMPT_DEPTH_TEXT", depth_text, len(clip_model.transformer.resblocks), minimum=1)
        check_depth(f"{key}.PROMPT_DEPTH_VISION", depth_vision, len(clip_model.visual.transformer.resblocks))
        init, self.prefix = ivlp_context(clip_model, ctx_init, n_ctx_text)
        self.initial_text = describe_context(init, n_ctx_text, ctx_init)
        self.text = PromptGroup(n_ctx_text, text_width(clip_model), depth_text, init=init)
        self.vision = PromptGroup(n_ctx_vision, vision_width(clip_model), depth_vision)


class IVLPModel(PromptedCLIP):
    """CLIP with IVLP's deep text and vision groups (and an optional cascaded group)."""

    def __init__(
        self,
        clip_model: CLIP,
        classnames: Sequence[str],
        learner: IVLPPromptLearner,
        cascade: CascadeGroups | None = None,
    ) -> None:
        super().__init__(
            clip_model, class_texts(classnames, learner.prefix), [learner.text.n_tokens], cascade
        )
        self.prompt_learner = learner

    def method_text_tokens(self) -> list[LayerTokens]:
        return [self.prompt_learner.text()]

    def method_vision_tokens(self) -> list[LayerTokens]:
        return [self.prompt_learner.vision()]


def build_ivlp_learner(clip_model: CLIP, node: Any, key: str) -> IVLPPromptLearner:
    """IVLPPromptLearner from a config node with N_CTX_TEXT/N_CTX_VISION/PROMPT_DEPTH_*/CTX_INIT."""
    learner = IVLPPromptLearner(
        clip_model,
        node.N_CTX_TEXT,
        node.N_CTX_VISION,
        node.PROMPT_DEPTH_TEXT,
        node.PROMPT_DEPTH_VISION,
        node.CTX_INIT,
        key=key,
    )
    print("Independent V-L design")
    print(f'Initial text context: "{learner.initial_text}"')
    print(f"Number of context words (tokens) for Language prompting: {node.N_CTX_TEXT}")
    print(f"Number of context words (tokens) for Vision prompting: {node.N_CTX_VISION}")
    return learner


@TRAINER_REGISTRY.register()
class IVLP(CLIPPromptTrainer):
    """Independent deep vision-language prompts trained with cross-entropy."""

    cfg_node = "IVLP"

    def build_prompt_model(
        self, clip_model: CLIP, classnames: list[str], cascade: CascadeGroups | None
    ) -> PromptedCLIP:
        check_input_size(self.cfg, clip_model)
        learner = build_ivlp_learner(clip_model, self.method_cfg, f"TRAINER.{self.cfg_node}")
        return IVLPModel(clip_model, classnames, learner, cascade)
