"""Train or evaluate a registered trainer, with Dassl/CoOp's command line.

    python train.py --root DATA --trainer CoOp --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp/vit_b16_ep50.yaml --output-dir output/... --seed 1 [KEY VALUE ...]

Data-parallel on N GPUs (or N CPU processes with gloo), same arguments; DATALOADER.TRAIN_X.BATCH_SIZE is
the global batch:

    torchrun --nproc_per_node N train.py ...
"""

import os
import sys
from typing import Any

import torch

import datasets  # noqa: F401  (registers the datasets)
import trainers  # noqa: F401  (registers the trainers and their config nodes)
from caspl.config import build_arg_parser, setup_cfg
from caspl.engine import build_trainer
from caspl.engine.distributed import cleanup as cleanup_distributed
from caspl.engine.run_folder import RunFolder, add_run_flags
from caspl.utils.env import collect_env_info
from caspl.utils.logger import close_logger, setup_logger, silence_stdout
from caspl.utils.seed import set_random_seed


def main(argv: list[str] | None = None) -> int:
    parser = build_arg_parser()
    add_run_flags(parser)
    args = parser.parse_args(argv)
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


def run(args: Any, cfg: Any, folder: RunFolder, main_process: bool) -> int:
    """The run itself, with the output folder locked."""
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
