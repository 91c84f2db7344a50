"""One check of the merged config: impossible settings fail before anything runs, naming the key and value.

Generic keys are checked by name; trainer nodes (TRAINER.<NODE>, added by trainer modules) are walked
generically, so a node this module has never heard of is still checked for its `PROMPT_DEPTH*`, `N_CTX*`
and `PREC` keys, and nothing else about it is assumed. Depths are compared with the backbone's layer
count (when the name is a known CLIP) only in the nodes the selected trainer reads, found by the naming
convention TRAINER.NAME "CasPL_PromptSRC" -> nodes CASPL and PROMPTSRC (a sub-node such as CASPL.BOOST counts
only for CasPL_Boost): phase 2 takes the boosting depths from boost_prompts.pt, not from the config.
"""

import math
import warnings
from collections.abc import Iterator
from typing import Any

from yacs.config import CfgNode

FINAL_MODELS = ("last_step", "best_val")
# (text layers, vision layers) of OpenAI's CLIPs; None where the tower is not a transformer (ResNet).
CLIP_TOWER_LAYERS: dict[str, tuple[int, int | None]] = {
    "RN50": (12, None),
    "RN101": (12, None),
    "RN50x4": (12, None),
    "RN50x16": (12, None),
    "RN50x64": (12, None),
    "ViT-B/32": (12, 12),
    "ViT-B/16": (12, 12),
    "ViT-L/14": (12, 24),
    "ViT-L/14@336px": (12, 24),
}


class ConfigError(ValueError):
    """The merged config holds settings that cannot run; the message lists every offending key."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def tower_layers(backbone: str) -> tuple[int, int | None] | None:
    """(text, vision) transformer layer counts of a backbone name, or None when unknown."""
    if backbone in CLIP_TOWER_LAYERS:
        return CLIP_TOWER_LAYERS[backbone]
    from caspl.vlm.tiny import TINY_SPECS  # noqa: PLC0415  (torch-heavy; only needed here)

    spec = TINY_SPECS.get(backbone)
    return (spec.transformer_layers, spec.vision_layers) if spec is not None else None


def _precisions() -> tuple[str, ...]:
    from caspl.engine.precision import PRECISIONS  # noqa: PLC0415  (torch-heavy; the engine's own list)

    return PRECISIONS


def _walk(node: CfgNode, prefix: str) -> Iterator[tuple[str, str, Any]]:
    """(full key, leaf name, value) of every leaf under `node`."""
    for name, value in node.items():
        key = f"{prefix}.{name}"
        if isinstance(value, CfgNode):
            yield from _walk(value, key)
        else:
            yield key, name, value


def _used_nodes(trainer_name: str) -> set[str]:
    """Config nodes a trainer reads, by the naming convention: CasPL_PromptSRC -> {CASPL, PROMPTSRC}."""
    return {part.upper() for part in trainer_name.split("_") if part}


def _native_resolution(backbone: str) -> int | None:
    """The input size a backbone name was trained at (its positional embedding), None when unknown."""
    if backbone in CLIP_TOWER_LAYERS:
        return 336 if backbone.endswith("@336px") else 224
    from caspl.vlm.tiny import TINY_SPECS  # noqa: PLC0415

    spec = TINY_SPECS.get(backbone)
    return spec.image_resolution if spec is not None else None


def _one_go(cfg: CfgNode, depth_fixes: list[tuple[str, int]]) -> str:
    """Every option a too-small backbone needs, to append at once (INPUT.SIZE and each depth)."""
    fixes = [f"{k} {v}" for k, v in depth_fixes]
    native = _native_resolution(cfg.MODEL.BACKBONE.NAME)
    if native is not None and tuple(cfg.INPUT.SIZE) != (native, native):
        fixes.insert(0, f'INPUT.SIZE "({native}, {native})"')
    return "Append, in one go:\n    " + " ".join(fixes)


def _check_trainer_nodes(cfg: CfgNode, problems: list[str]) -> None:
    """PROMPT_DEPTH* >= 0 and N_CTX* >= 0 and PREC known in every TRAINER.<NODE>; depths within the
    student's towers in the nodes the selected trainer reads (another trainer's defaults are not judged)."""
    layers = None if cfg.MODEL.BACKBONE.PATH else tower_layers(cfg.MODEL.BACKBONE.NAME)
    depth_fixes: list[tuple[str, int]] = []
    used = _used_nodes(cfg.TRAINER.NAME)
    for node_name, node in cfg.TRAINER.items():
        if not isinstance(node, CfgNode):
            continue
        for key, leaf, value in _walk(node, f"TRAINER.{node_name}"):
            path = key.split(".")[1:-1]  # the nodes between TRAINER and the leaf
            if leaf.startswith("PROMPT_DEPTH"):
                if not _is_int(value) or value < 0:
                    problems.append(f"{key} = {value!r}: expected an integer >= 0 (prompted layers)")
                elif layers is not None and set(path) <= used:
                    limit = _depth_limit(leaf, layers)
                    if limit is not None and value > limit:
                        problems.append(
                            f"{key} = {value}: the backbone {cfg.MODEL.BACKBONE.NAME} has {limit} layers "
                            "in that tower"
                        )
                        depth_fixes.append((key, limit))
            elif leaf.startswith("N_CTX") and (not _is_int(value) or value < 0):
                problems.append(f"{key} = {value!r}: expected an integer >= 0 (context tokens)")
            elif leaf == "PREC":
                # a teacher may also pick its precision from the device ("auto")
                known = (*_precisions(), "auto") if "TEACHER" in path else _precisions()
                if value not in known:
                    problems.append(f"{key} = {value!r}: expected one of {', '.join(known)}")
    if depth_fixes:
        problems.append(_one_go(cfg, depth_fixes))


def _depth_limit(leaf: str, layers: tuple[int, int | None]) -> int | None:
    """Layers of the tower a depth key names (*_TEXT, *_VISION); a bare PROMPT_DEPTH spans both towers."""
    text, vision = layers
    towers = {"TEXT": [text], "VISION": [vision]}.get(leaf.rsplit("_", 1)[-1], [text, vision])
    return min((n for n in towers if n is not None), default=None)


def _check_optim(cfg: CfgNode, training: bool, problems: list[str]) -> None:
    from caspl.optim.lr_scheduler import AVAI_SCHEDS, AVAI_WARMUPS  # noqa: PLC0415  (torch-heavy)
    from caspl.optim.optimizer import AVAI_OPTIMS  # noqa: PLC0415

    o = cfg.OPTIM
    if str(o.NAME).lower() not in AVAI_OPTIMS:
        problems.append(f"OPTIM.NAME = {o.NAME!r}: expected one of {', '.join(AVAI_OPTIMS)}")
    if o.LR_SCHEDULER not in AVAI_SCHEDS:
        problems.append(f"OPTIM.LR_SCHEDULER = {o.LR_SCHEDULER!r}: expected one of {', '.join(AVAI_SCHEDS)}")
    if not training:
        return
    if not _is_int(o.MAX_EPOCH) or o.MAX_EPOCH < 1:
        problems.append(f"OPTIM.MAX_EPOCH = {o.MAX_EPOCH!r}: expected an integer >= 1 when training")
    if not _is_number(o.LR) or o.LR <= 0:
        problems.append(f"OPTIM.LR = {o.LR!r}: expected a finite number > 0 when training")
    for key in ("WEIGHT_DECAY", "MOMENTUM"):
        if not _is_number(o[key]) or o[key] < 0:
            problems.append(f"OPTIM.{key} = {o[key]!r}: expected a finite number >= 0")
    if not _is_number(o.GAMMA) or o.GAMMA <= 0:
        problems.append(f"OPTIM.GAMMA = {o.GAMMA!r}: expected a finite number > 0")
    if not _is_int(o.WARMUP_EPOCH):
        problems.append(f"OPTIM.WARMUP_EPOCH = {o.WARMUP_EPOCH!r}: expected an integer (<= 0: no warm-up)")
    elif o.WARMUP_EPOCH > 0:
        if o.WARMUP_TYPE not in AVAI_WARMUPS:
            problems.append(
                f"OPTIM.WARMUP_TYPE = {o.WARMUP_TYPE!r}: expected one of {', '.join(AVAI_WARMUPS)}"
            )
        if _is_int(o.MAX_EPOCH) and o.WARMUP_EPOCH >= o.MAX_EPOCH:
            # Possible (Dassl runs it: every epoch at the warm-up lr), and what a quick
            # `OPTIM.MAX_EPOCH 1` smoke run of a published config gives, so said, not refused.
            warnings.warn(
                f"OPTIM.WARMUP_EPOCH = {o.WARMUP_EPOCH} >= OPTIM.MAX_EPOCH = {o.MAX_EPOCH}: every epoch "
                f"runs at the warm-up lr, the {o.LR_SCHEDULER} schedule is never reached",
                stacklevel=2,
            )
        lr_key = "WARMUP_CONS_LR" if o.WARMUP_TYPE == "constant" else "WARMUP_MIN_LR"
        if not _is_number(o[lr_key]) or o[lr_key] < 0:
            problems.append(f"OPTIM.{lr_key} = {o[lr_key]!r}: expected a finite number >= 0")


def validate_cfg(cfg: CfgNode, training: bool = True) -> None:
    """Raise ConfigError listing every impossible setting of a merged config (training: the run trains)."""
    problems: list[str] = []
    _check_optim(cfg, training, problems)
    batch_keys = ["TEST"] + (["TRAIN_X", "TRAIN_U"] if training else [])
    for part in batch_keys:
        value = cfg.DATALOADER[part].BATCH_SIZE
        if not _is_int(value) or value < 1:
            problems.append(f"DATALOADER.{part}.BATCH_SIZE = {value!r}: expected an integer >= 1")
    if not _is_int(cfg.DATALOADER.NUM_WORKERS) or cfg.DATALOADER.NUM_WORKERS < 0:
        problems.append(f"DATALOADER.NUM_WORKERS = {cfg.DATALOADER.NUM_WORKERS!r}: expected an integer >= 0")
    from caspl.data.base import SUBSAMPLE_CHOICES  # noqa: PLC0415  (torch-heavy package)

    shots = cfg.DATASET.NUM_SHOTS
    if not _is_int(shots) or shots < -1:
        problems.append(f"DATASET.NUM_SHOTS = {shots!r}: expected an integer >= 0 (-1 or 0: every image)")
    if cfg.DATASET.SUBSAMPLE_CLASSES not in SUBSAMPLE_CHOICES:
        problems.append(
            f"DATASET.SUBSAMPLE_CLASSES = {cfg.DATASET.SUBSAMPLE_CLASSES!r}: "
            f"expected one of {', '.join(SUBSAMPLE_CHOICES)}"
        )
    size = cfg.INPUT.SIZE
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(_is_int(s) and s > 0 for s in size)):
        problems.append(f"INPUT.SIZE = {size!r}: expected two integers > 0 (height, width)")
    if not _is_int(cfg.TRAIN.PRINT_FREQ) or cfg.TRAIN.PRINT_FREQ < 1:
        problems.append(f"TRAIN.PRINT_FREQ = {cfg.TRAIN.PRINT_FREQ!r}: expected an integer >= 1")
    if cfg.TEST.FINAL_MODEL not in FINAL_MODELS:
        problems.append(
            f"TEST.FINAL_MODEL = {cfg.TEST.FINAL_MODEL!r}: expected one of {', '.join(FINAL_MODELS)}"
        )
    _check_trainer_nodes(cfg, problems)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
