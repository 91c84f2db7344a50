"""Train or evaluate a registered trainer, with Dassl/CoOp's command line.

    python train.py --root DATA --trainer CoOp --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b16_ep50.yaml --output-dir output/... --seed 1 [KEY VALUE ...]

Data-parallel on N GPUs (or N CPU processes with gloo), same arguments; DATALOADER.TRAIN_X.BATCH_SIZE is
the global batch:

    torchrun --nproc_per_node N train.py ...

--help, argument errors and unknown trainer / dataset names are answered before torch is imported (in
about a second): the names are checked against what trainers/ and datasets/ declare.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from caspl.config import build_arg_parser
from caspl.registry import DATASET_REGISTRY, TRAINER_REGISTRY, declared_names, did_you_mean

REPO = Path(__file__).resolve().parent


def _dataset_name(args: argparse.Namespace) -> str:
    """DATASET.NAME as the run will see it: the last of dataset yaml, trainer yaml, KEY VALUE options."""
    import yaml  # noqa: PLC0415 (light; only when checking names)

    name = ""
    for path in (args.dataset_config_file, args.config_file):
        if path and Path(path).is_file():
            node = (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}).get("DATASET") or {}
            name = node.get("NAME", name) if isinstance(node, dict) else name
    opts = list(args.opts or [])
    for key, value in zip(opts[::2], opts[1::2]):
        if key == "DATASET.NAME":
            name = value
    return str(name)


def _known(package: str, registry) -> set[str]:
    """Names declared in a package's source, plus any registered at run time (tests, plugins)."""
    return declared_names(REPO / package, registry.name) | set(registry.registered_names())


def _similar_files(path: Path) -> str:
    """' Did you mean <folder>/<x>.yaml?' for yaml files next to a mistyped path, else ''."""
    if not path.parent.is_dir():
        return ""
    stems = [p.stem for p in path.parent.glob("*.yaml")]
    close = did_you_mean(path.stem, stems).removeprefix(" Did you mean ").removesuffix("?")
    return (
        f" Did you mean {' or '.join(str(path.parent / f'{s}.yaml') for s in close.split(' or '))}?"
        if close
        else ""
    )


def check_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Unknown trainer, dataset name or config file: an argparse error with "did you mean", before torch."""
    if args.trainer:
        known = _known("trainers", TRAINER_REGISTRY)
        if args.trainer not in known:
            parser.error(
                f"unknown trainer {args.trainer!r}.{did_you_mean(args.trainer, known)} "
                f"Registered trainers: {', '.join(sorted(known))}"
            )
    for flag, path in (
        ("--dataset-config-file", args.dataset_config_file),
        ("--config-file", args.config_file),
    ):
        if path and not Path(path).is_file():
            parser.error(f"{flag} {path}: no such file.{_similar_files(Path(path))}")
    name = _dataset_name(args)
    if name:
        known = _known("datasets", DATASET_REGISTRY)
        if name not in known:
            parser.error(
                f"unknown dataset {name!r} (DATASET.NAME).{did_you_mean(name, known)} "
                f"Registered datasets: {', '.join(sorted(known))}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    check_names(parser, args)

    # The heavy imports (torch, clip, every trainer) only once the command line is known to be usable.
    import datasets  # noqa: F401, PLC0415  (registers the datasets)
    import trainers  # noqa: F401, PLC0415  (registers the trainers and their config nodes)
    from caspl.config import setup_cfg  # noqa: PLC0415
    from caspl.engine.run_folder import RunFolder  # noqa: PLC0415

    cfg = setup_cfg(args)
    main_process = int(os.environ.get("RANK", "0")) == 0
    # One writer per output folder (rank 0 under torchrun), for the whole run, before log.txt is touched.
    with RunFolder(cfg.OUTPUT_DIR, is_main=main_process) as folder:
        finished = folder.finished()
        if finished is not None and not args.re_evaluate:
            if main_process:
                folder.say_finished(finished)
            return 0
        return run(args, cfg, folder, main_process)


def run(args: Any, cfg: Any, folder: Any, main_process: bool) -> int:
    """The run itself, with the output folder (a RunFolder) locked."""
    import torch  # noqa: PLC0415

    from caspl.engine import build_trainer  # noqa: PLC0415
    from caspl.engine.distributed import cleanup as cleanup_distributed  # noqa: PLC0415
    from caspl.utils.env import collect_env_info  # noqa: PLC0415
    from caspl.utils.logger import close_logger, setup_logger, silence_stdout  # noqa: PLC0415
    from caspl.utils.seed import set_random_seed  # noqa: PLC0415

    # Under torchrun only rank 0 writes the log (and checkpoints, results): the others stay quiet.
    tee = setup_logger(cfg.OUTPUT_DIR) if main_process else silence_stdout()
    try:
        folder.print_notes()
        if cfg.SEED >= 0:
            print(f"Setting fixed seed: {cfg.SEED}")
            set_random_seed(cfg.SEED)  # the same on every process: replicas and their data order agree
        if torch.cuda.is_available() and cfg.USE_CUDA:
            torch.backends.cudnn.benchmark = True
        print("***************")
        print("** Arguments **")
        print("***************")
        for key in sorted(vars(args)):
            print(f"{key}: {getattr(args, key)}")
        print("************")
        print("** Config **")
        print("************")
        print(cfg)
        print("Collecting env info ...")
        print(f"** System info **\n{collect_env_info()}\n")
        trainer = build_trainer(cfg)
        trainer.allow_config_mismatch = args.allow_config_mismatch
        if args.eval_only:
            # Without --model-dir (CoOp's zero-shot scripts) a trainer with nothing trained evaluates as
            # built; a trainer with trained weights refuses (TrainerBase.load_model).
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            trainer.final_evaluation(
                {"eval_only": True, "model_dir": args.model_dir, "load_epoch": args.load_epoch}
            )
            return 0
        if not args.no_train:
            trainer.train()
        return 0
    except BaseException:
        tee.log_exception()  # the error that ended the run belongs in its log.txt too
        raise
    finally:
        close_logger(tee)
        cleanup_distributed()  # torchrun's workers leave the process group before they exit


if __name__ == "__main__":
    sys.exit(main())
