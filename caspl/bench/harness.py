"""Build the project's real trainers in memory: no dataset, no loaders, random-weight CLIPs.

A trainer is created without running SimpleTrainer.__init__ (which builds data loaders); the attributes
its build_model and forward_backward read are set here, then its own build_model runs with `build_clip`
patched to random weights. CasPL_<Method> trainers get a boost_prompts.pt made from random prompts.
"""

import contextlib
import importlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from clip.model import CLIP
from yacs.config import CfgNode

from caspl.bench.shapes import layer_count, random_clip, random_weights, resolution
from caspl.config import get_cfg_default
from caspl.data.coop import imagenet_classnames
from caspl.engine.distributed import DistContext
from caspl.engine.trainer import TrainerBase
from caspl.registry import TRAINER_REGISTRY
from caspl.vlm.prompted import tokenizer

METHODS = ("CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC")
TRAINER_MODULES = ("coop", "cocoop", "ivlp", "maple", "promptsrc", "caspl")
BENCH_DATASET = "ImageNet"  # the class names are ImageNet's (the first 100, or all 1000)
# CasPL's phase-1 prompts as the authors ran them: 8 text + 8 vision tokens, depth 12 (set here, whatever
# the YAML says, so every CasPL row measures that setting).
PHASE1 = {"N_CTX_TEXT": 8, "N_CTX_VISION": 8, "PROMPT_DEPTH_TEXT": 12, "PROMPT_DEPTH_VISION": 12}
# A paper setting per trainer: its published prompt counts and depths decide the cost of a step.
PREFERRED_CONFIGS = {
    "Boost": "vit_b16_l14_ep20_4+4ctx_promptkd.yaml",  # CasPL_Boost
    "CoOp": "vit_b16_ep50.yaml",
    "CoCoOp": "vit_b16_c4_ep10_batch1_ctxv1.yaml",
    "IVLP": "vit_b16_c2_ep5_batch4_2+2ctx.yaml",
    "MaPLe": "vit_b16_c2_ep5_batch4_2ctx.yaml",
    "PromptSRC": "vit_b16_c2_ep20_batch4_4+4ctx.yaml",
}


def load_trainers() -> None:
    """Import the trainers package (run from the repository root) and every method module present."""
    try:
        importlib.import_module("trainers")
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "caspl.bench needs the repository's trainers/ package: run `python -m caspl.bench` from the "
            "repository root"
        ) from e
    for name in TRAINER_MODULES:
        try:
            importlib.import_module(f"trainers.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"trainers.{name}":  # a real import error inside a present module
                raise


def trainer_class(name: str) -> type | None:
    """The registered trainer `name`; CasPL_<X> is made from X with the cascade mixin if not registered."""
    if name in TRAINER_REGISTRY:
        return TRAINER_REGISTRY.get(name)
    if name.startswith("CasPL_") and name[len("CasPL_") :] in TRAINER_REGISTRY:
        from trainers.caspl import CascadeMixin  # noqa: PLC0415

        base = TRAINER_REGISTRY.get(name[len("CasPL_") :])
        return type(name, (CascadeMixin, base), {"__doc__": f"{base.__name__} + CasPL (benchmark)."})
    return None


def available_methods() -> list[str]:
    """The prompt-learning methods that are registered now (the others are skipped with a note)."""
    return [m for m in METHODS if m in TRAINER_REGISTRY]


def class_names(n: int) -> list[str]:
    """The first `n` ImageNet class names (CoOp's cleaned list; repeated with a number beyond 1000)."""
    names = list(imagenet_classnames().values())
    return [names[i % len(names)] + (f" {i // len(names)}" if i >= len(names) else "") for i in range(n)]


@contextlib.contextmanager
def few_frozen_templates(enabled: bool) -> Iterator[None]:
    """PromptSRC's frozen targets from its first template only, while building: they are computed once per
    run (60 templates x 1000 classes would take the benchmark's whole budget on a CPU) and a training step
    costs the same with any number of them (one (classes, dim) buffer)."""
    import trainers.promptsrc as promptsrc  # noqa: PLC0415

    original = promptsrc.IMAGENET_TEMPLATES
    if enabled:
        promptsrc.IMAGENET_TEMPLATES = original[:1]
    try:
        yield
    finally:
        promptsrc.IMAGENET_TEMPLATES = original


def find_config(name: str, config_dir: Path) -> Path | None:
    """configs/trainers/<name>/<paper setting>.yaml when the repository has it, else the first YAML there;
    CasPL_<X> without its own folder takes X's (same adapting prompts as the plain method)."""
    base = name[len("CasPL_") :] if name.startswith("CasPL_") else name
    folders = list(dict.fromkeys([config_dir / name, config_dir / base]))
    # The paper setting, the plain method's file first, so a method and its CasPL version run the same
    # setting (CasPL_<X> folders also hold the CasPL authors' own settings under the same names).
    for folder in reversed(folders):
        preferred = folder / PREFERRED_CONFIGS.get(base, "")
        if preferred.is_file():
            return preferred
    for folder in folders:
        # The demo's tiny settings (demo_*.yaml) are not a setting of the real architectures.
        found = sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("demo_"))
        if found:
            return found[0]
    return None


def method_cfg(
    name: str,
    backbone: str,
    precision: str,
    workdir: Path,
    teacher: str | None = None,
    config_dir: Path | None = None,
) -> tuple[CfgNode, str]:
    """The run config of trainer `name` for the benchmark, and the YAML it came from ("" for defaults)."""
    cfg = get_cfg_default()
    cfg.OPTIM.NAME = "sgd"  # every paper setting trains with SGD
    source = ""
    path = find_config(name, config_dir) if config_dir is not None else None
    if path is not None:
        cfg.merge_from_file(str(path))
        source = str(path)
    cls = trainer_class(name)
    if cls is None:
        raise KeyError(f"trainer {name!r} is not registered")
    cfg.TRAINER.NAME = name
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.BACKBONE.PATH = ""
    cfg.DATASET.NAME = BENCH_DATASET
    cfg.INPUT.SIZE = (resolution(backbone), resolution(backbone))
    cfg.OUTPUT_DIR = str(workdir / name)
    node = getattr(cls, "cfg_node", "")
    if node and "PREC" in cfg.TRAINER[node]:
        cfg.TRAINER[node].PREC = precision
    if "CASPL" in cfg.TRAINER:
        boost = cfg.TRAINER.CASPL.BOOST
        boost.update(PHASE1)
        if boost.CTX_INIT and len(tokenizer().encode(boost.CTX_INIT)) != boost.N_CTX_TEXT:
            boost.CTX_INIT = ""  # an initialisation of another length: random tokens (same cost)
    clamp_depths(cfg.TRAINER, layer_count(backbone))
    if "CASPL" in cfg.TRAINER:
        cfg.TRAINER.CASPL.PREC = precision
        if teacher is not None:
            cfg.TRAINER.CASPL.TEACHER.NAME = teacher
            cfg.TRAINER.CASPL.TEACHER.PATH = ""
        if name.startswith("CasPL_") and name != "CasPL_Boost":
            cfg.TRAINER.CASPL.BOOST_PROMPTS = str(make_boost_file(backbone, cfg.TRAINER.CASPL.BOOST, workdir))
            cfg.TRAINER.CASPL.DEPTH_MISMATCH = "keep"  # default-depth boosting prompts on any method config
    return cfg, source


def clamp_depths(node: CfgNode, layers: int) -> None:
    """Prompt depths (keys with DEPTH) above the backbone's layer count set to it: tiny CLIPs have 4 layers."""
    for key, value in node.items():
        if isinstance(value, CfgNode):
            clamp_depths(value, layers)
        elif "DEPTH" in key and isinstance(value, int) and value > layers:
            node[key] = layers


def make_boost_file(backbone: str, boost_cfg: Any, workdir: Path) -> Path:
    """A boost_prompts.pt of random boosting prompts for `backbone` (the phase-1 output a cascade loads)."""
    from trainers.caspl import make_boost_groups, save_boost_prompts  # noqa: PLC0415

    path = workdir / "boost" / backbone.replace("/", "-") / "boost_prompts.pt"
    if path.is_file():
        return path
    clip_model = random_clip(backbone)
    groups = make_boost_groups(clip_model, boost_cfg)
    widths = {
        "text_width": int(clip_model.ln_final.weight.shape[0]),
        "vision_width": int(clip_model.visual.conv1.weight.shape[0]),
    }
    save_boost_prompts(path, groups, {"student": {"backbone": backbone, **widths}, "benchmark": True})
    return path


def build_trainer(cfg: CfgNode, classnames: list[str], device: torch.device) -> tuple[Any, list[CLIP]]:
    """The trainer of `cfg` with its model, optimizer and (for CasPL_Boost) teacher built, no data.

    Returns the trainer and the CLIPs its build_model made (student first, then e.g. the teacher).
    """
    cls = trainer_class(cfg.TRAINER.NAME)
    if cls is None:
        raise KeyError(f"trainer {cfg.TRAINER.NAME!r} is not registered")
    trainer = cls.__new__(cls)
    TrainerBase.__init__(trainer)
    trainer.cfg = cfg
    trainer.check_cfg(cfg)
    trainer.dist = DistContext()
    trainer.device = device
    trainer.start_epoch = trainer.epoch = 0
    trainer.max_epoch = cfg.OPTIM.MAX_EPOCH
    trainer.output_dir = cfg.OUTPUT_DIR
    trainer.best_result = -math.inf
    trainer._writer = None
    trainer.batch_idx, trainer.num_batches = 0, 1
    trainer.classnames = list(classnames)
    trainer.boost_classnames = list(classnames)  # CasPL_Boost's TRAINER.CASPL.BOOST.CLASSES "all"
    trainer.num_classes = len(classnames)
    trainer.lab2cname = dict(enumerate(classnames))
    built: list[CLIP] = []
    with random_weights(built):
        trainer.build_model()
    trainer.set_model_mode("train")
    return trainer, built
