"""Command line of the benchmark: parse, run the suite, print the table, write JSON."""

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import torch

from caspl.bench.harness import load_trainers
from caspl.bench.report import KINDS, machine_info, table, targets_table, to_json, write_json
from caspl.bench.shapes import BACKBONES
from caspl.bench.suite import Settings, Suite
from caspl.engine.precision import PRECISIONS

MEMORY_NOTE = {
    "cpu": "process RSS high-water mark (VmHWM; reset before each probed call via /proc/self/clear_refs), "
    "models and inputs included",
    "cuda": "torch.cuda.max_memory_allocated (reset before each probed call), models and inputs included",
}
QUICK = {"backbone": "tiny-vit", "teacher": "small-vit", "repeats": 2, "warmup": 1, "classes": "100"}
DEFAULT_CLASSES = "100,1000"


def class_counts(flag: str, text: str) -> list[int]:
    """ "100,1000" -> [100, 1000]; each >= 1."""
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{flag} takes comma-separated class counts, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise SystemExit(f"{flag} needs class counts >= 1, got {text!r}")
    return counts


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m caspl.bench`."""
    p = argparse.ArgumentParser(
        prog="python -m caspl.bench",
        description="Images/s and peak memory of boosting, training, evaluation and inference, each beside "
        "its compute floor (random weights with the real architectures: no download).",
    )
    p.add_argument(
        "--quick", action="store_true", help="CI size: tiny-vit student, small-vit teacher, 2 repeats"
    )
    p.add_argument("--json", default="", help="write the results to this JSON file")
    p.add_argument("--backbone", choices=BACKBONES, default=None, help="student CLIP (default ViT-B/16)")
    p.add_argument(
        "--teacher", choices=BACKBONES, default=None, help="CasPL_Boost teacher (default ViT-L/14)"
    )
    p.add_argument("--batch-size", type=int, default=4, help="training / boosting batch (default 4)")
    p.add_argument(
        "--eval-batch-size", type=int, default=None, help="evaluation batch (default: --batch-size)"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="trainers' PREC (fp16/amp: GPU only)"
    )
    p.add_argument(
        "--classes",
        default=None,
        help="class counts (ImageNet names) of the evaluation and boosting rows (default 100,1000; quick: 100)",
    )
    p.add_argument(
        "--train-classes", default=None, help="class counts of the training-step rows (default: --classes)"
    )
    p.add_argument(
        "--check", action="store_true", help="exit 1 when a target that applies to these shapes is missed"
    )
    p.add_argument(
        "--all-templates",
        action="store_true",
        help="PromptSRC's frozen targets from all 60 templates (default: 1; build time only, same step cost)",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per measurement (minimum; default 3)"
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed calls before timing (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument(
        "--methods", default=None, help="comma list of methods for (b) (default: every registered)"
    )
    p.add_argument(
        "--without-cascades",
        action="store_true",
        help="(b): the listed methods only, not their CasPL versions",
    )
    p.add_argument(
        "--eval-method", default=None, help="cascaded trainer for (c)/(d) (default: first present)"
    )
    p.add_argument(
        "--text-checkpoint",
        action="store_true",
        help="MODEL.TEXT_TOWER.CHECKPOINT on, for our text towers and the 77-token reference alike (the "
        "reference's activations on 1000 classes need ~31 GiB without it)",
    )
    p.add_argument("--kinds", default="abcd", help="sections to run, subset of abcd (floors come along)")
    p.add_argument("--config-dir", default="configs/trainers", help="published trainer YAMLs, when present")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="show what the trainers print while building")
    return p


def settings_from_args(args: argparse.Namespace, workdir: Path) -> Settings:
    """Validated Settings from parsed flags (--quick fills what was not given)."""
    quick = QUICK if args.quick else {}
    backbone = args.backbone or quick.get("backbone", "ViT-B/16")
    teacher = args.teacher or quick.get("teacher", "ViT-L/14")
    repeats = args.repeats if args.repeats is not None else quick.get("repeats", 3)
    warmup = args.warmup if args.warmup is not None else quick.get("warmup", 1)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    bad = set(args.kinds) - set("abcd")
    if bad or not args.kinds:
        raise SystemExit(f"--kinds must be letters of abcd, got {args.kinds!r}")
    classes = class_counts("--classes", args.classes or quick.get("classes", DEFAULT_CLASSES))
    train_classes = class_counts("--train-classes", args.train_classes) if args.train_classes else classes
    for flag, value in (("--batch-size", args.batch_size), ("--repeats", repeats)):
        if value < 1:
            raise SystemExit(f"{flag} must be >= 1, got {value}")
    config_dir = Path(args.config_dir) if args.config_dir else None
    return Settings(
        backbone=backbone,
        teacher=teacher,
        batch=args.batch_size,
        eval_batch=args.eval_batch_size or args.batch_size,
        device=torch.device(args.device),
        precision=args.precision,
        classes=classes,
        train_classes=train_classes,
        warmup=warmup,
        repeats=repeats,
        workdir=workdir,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None,
        eval_method=args.eval_method,
        kinds=args.kinds,
        config_dir=config_dir if config_dir is not None and config_dir.is_dir() else None,
        verbose=args.verbose,
        seed=args.seed,
        all_templates=args.all_templates,
        cascades=not args.without_cascades,
        text_checkpoint=args.text_checkpoint,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and targets; write JSON when asked. Returns 1 under --check when
    a target that applies to the measured shapes was missed."""
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_trainers()
    with tempfile.TemporaryDirectory(prefix="caspl-bench-") as tmp:
        settings = settings_from_args(args, Path(tmp))
        started = datetime.datetime.now(datetime.timezone.utc)
        suite = Suite(settings)
        rows = suite.run()
    meta = {
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": machine_info(settings.device),
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "memory": MEMORY_NOTE[settings.device.type],
        "settings": {
            "backbone": settings.backbone,
            "teacher": settings.teacher,
            "batch": settings.batch,
            "eval_batch": settings.eval_batch,
            "device": settings.device.type,
            "precision": settings.precision,
            "classes": settings.classes,
            "train_classes": settings.train_classes,
            "warmup": settings.warmup,
            "repeats": settings.repeats,
            "text_checkpoint": settings.text_checkpoint,
        },
        "kinds": KINDS,
        "timing": "each variant's minimum over interleaved repeats (A B A B ...); spread = slowest / fastest",
        "notes": suite.notes,
    }
    print(table(rows))
    print()
    print(targets_table(suite.targets))
    for note in suite.notes:
        print(f"note: {note}")
    if args.json:
        write_json(args.json, to_json(rows, suite.targets, meta))
        print(f"wrote {args.json}")
    missed = [t.name for t in suite.targets if t.missed]
    if args.check and missed:
        print(f"--check: {len(missed)} target(s) missed: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0
