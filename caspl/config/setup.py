"""Build the run config from CLI args: defaults <- dataset yaml <- trainer yaml <- CLI flags <- opts."""

import argparse
from pathlib import Path

import yaml
from yacs.config import CfgNode

from caspl.config.defaults import get_cfg_default
from caspl.config.validate import validate_cfg

YAML_SUFFIXES = (".yaml", ".yml")


def load_yaml_file(path: str, what: str) -> CfgNode:
    """A YAML config file as a CfgNode; errors name the file (and the line of a syntax error).

    Only YAML is read, with yaml.safe_load: yacs would execute a `.py` config file, so the suffix is
    checked before anything is opened.
    """
    if Path(path).suffix.lower() not in YAML_SUFFIXES:
        raise ValueError(
            f"{what} {path}: only YAML config files (.yaml / .yml) are accepted; "
            "Python config files are refused because loading them would run their code"
        )
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path) as f:
        text = f.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ValueError(f"{what} {path}{where}: malformed YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path}: expected a mapping of config keys, got a {type(data).__name__}")
    return CfgNode(data)


def merge_file(cfg: CfgNode, path: str, what: str) -> None:
    """Merge a YAML config file into `cfg` with errors that name the file (missing, syntax, unknown key, type)."""
    other = load_yaml_file(path, what)
    try:
        cfg.merge_from_other_cfg(other)
    except KeyError as e:
        raise KeyError(f"{path}: {e.args[0]} (is the trainer that defines it imported/registered?)") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def reset_cfg(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Dassl's CLI flags -> config keys."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """The frozen config of a run."""
    cfg = get_cfg_default()
    if args.dataset_config_file:
        merge_file(cfg, args.dataset_config_file, "dataset config file")
    if args.config_file:
        merge_file(cfg, args.config_file, "config file")
    reset_cfg(cfg, args)
    opts = list(args.opts or [])
    if len(opts) % 2:
        raise ValueError(f"command-line options must be KEY VALUE pairs, got an odd number: {opts}")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, AssertionError) as e:  # yacs asserts on unknown keys here
        raise KeyError(f"command-line option: {e.args[0] if e.args else e}") from None
    validate_cfg(cfg, training=not (getattr(args, "eval_only", False) or getattr(args, "no_train", False)))
    cfg.freeze()
    return cfg


def build_arg_parser() -> argparse.ArgumentParser:
    """Dassl/CoOp's train.py flags, plus trailing KEY VALUE options."""
    p = argparse.ArgumentParser(description="Train or evaluate a CLIP prompt learner (Dassl-style).")
    p.add_argument("--root", type=str, default="", help="path to the datasets folder")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory to resume from")
    p.add_argument("--seed", type=int, default=-1, help="only positive values enable a fixed seed")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to the trainer config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="path to the dataset config file")
    p.add_argument("--trainer", type=str, default="", help="name of the trainer")
    p.add_argument("--backbone", type=str, default="", help="name of the CLIP backbone")
    p.add_argument("--head", type=str, default="", help="name of the head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument(
        "--model-dir", type=str, default="", help="load model from this directory for eval-only mode"
    )
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    # Ours, not Dassl's: what a run does with its output folder and the checkpoints it loads.
    p.add_argument(
        "--allow-config-mismatch",
        action="store_true",
        help="resume or evaluate checkpoints whose trainer or model-defining config differs (warns)",
    )
    p.add_argument(
        "--re-evaluate",
        action="store_true",
        help="evaluate a finished run again (its results.json exists) instead of leaving it alone",
    )
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options (KEY VALUE)")
    return p
