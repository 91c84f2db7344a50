"""`scripts/gpu_check.sh` (`python -m caspl.bench.gpu_check`): what to verify the day a GPU is lent.

On CUDA (ViT-B/16 student, ViT-L/14 teacher, random weights with the real shapes):
  1. every trainer at fp16 (the published precision), bf16 and amp: a few steps on one fixed synthetic
     batch must give finite losses that end lower than they start;
  2. peak memory and images/s of a CasPL_Boost step at batch 4 and 128, and of a PromptSRC step on 1000
     ImageNet class names;
  3. an IVLP step with TRAIN.COMPILE off and on;
  4. a 1-GPU `torchrun` of train.py on the Synthetic dataset (nccl).
Without CUDA the same runs use tiny shapes (tiny-vit, small-vit teacher), precisions fp32 and bf16, gloo for
torchrun, and every CUDA-only part is listed as skipped with the reason. Writes report.json and report.md.
"""

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from caspl.bench.harness import build_trainer, class_names, few_frozen_templates, load_trainers, method_cfg
from caspl.bench.measure import measure
from caspl.bench.report import machine_info
from caspl.utils.checkpoint import atomic_write_text

TRAINERS = ("CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC")
REPO = Path(__file__).resolve().parents[2]


def all_trainers() -> list[str]:
    return [*TRAINERS, *(f"CasPL_{t}" for t in TRAINERS), "CasPL_Boost"]


class Check:
    """Collects results and skips; writes the JSON and Markdown reports."""

    def __init__(self, device: torch.device, backbone: str, teacher: str, workdir: Path) -> None:
        self.device, self.backbone, self.teacher, self.workdir = device, backbone, teacher, workdir
        self.results: list[dict[str, Any]] = []
        self.skipped: list[str] = []

    def build(self, name: str, precision: str, n_classes: int, **opts: Any) -> Any:
        cfg, _ = method_cfg(
            name, self.backbone, precision, self.workdir, self.teacher, REPO / "configs/trainers"
        )
        cfg.OPTIM.WARMUP_EPOCH = -1  # the published warmup holds the LR at 1e-5: nothing would move
        for key, value in opts.items():
            node = cfg
            *path, leaf = key.split(".")
            for part in path:
                node = node[part]
            node[leaf] = value
        torch.manual_seed(0)  # prompt initialisations: the same check gives the same losses in any process
        # Trainers print their parameter lists while building: keep the report readable.
        with few_frozen_templates(True), contextlib.redirect_stdout(io.StringIO()):
            trainer, built = build_trainer(cfg, class_names(n_classes), self.device)
        return trainer, built

    def batch(self, trainer: Any, built: list, size: int, n_classes: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        side = int(built[0].visual.input_resolution)
        images = torch.randn(size, 3, side, side, generator=gen).to(self.device)
        labels = torch.randint(0, n_classes, (size,), generator=gen).to(self.device)
        return {"img": images, "label": labels}

    # ---------------------------------------------------------------- 1. short training runs
    def training_run(
        self, name: str, precision: str, steps: int, n_classes: int = 10, batch: int = 4
    ) -> None:
        entry: dict[str, Any] = {"check": "train", "trainer": name, "precision": precision}
        try:
            trainer, built = self.build(name, precision, n_classes)
            data = self.batch(trainer, built, batch, n_classes)
            losses = [float(trainer.forward_backward(data)["loss"]) for _ in range(steps)]
            finite = all(math.isfinite(x) for x in losses)
            entry.update(losses=[round(x, 5) for x in losses], ok=finite and losses[-1] < losses[0])
            entry["effective_precision"] = trainer.prec
        except Exception as e:  # a report, not a crash: the other checks still run
            entry.update(ok=False, error=f"{type(e).__name__}: {e}")
        self.results.append(entry)

    # ---------------------------------------------------------------- 2. memory and throughput
    def throughput(self, name: str, precision: str, batch: int, n_classes: int, repeats: int = 3) -> None:
        entry: dict[str, Any] = {
            "check": "throughput", "trainer": name, "precision": precision, "batch": batch, "classes": n_classes
        }  # fmt: skip
        try:
            trainer, built = self.build(name, precision, n_classes)
            data = self.batch(trainer, built, batch, n_classes)
            m = measure({"step": lambda: trainer.forward_backward(data)}, self.device, 1, repeats)["step"]
            entry.update(
                ok=True, images_per_s=round(batch / m.min_s, 2), ms_per_step=round(m.min_s * 1000, 1),
                peak_mem_mb=None if m.peak_mb is None else round(m.peak_mb),
            )  # fmt: skip
        except Exception as e:
            entry.update(ok=False, error=f"{type(e).__name__}: {e}")
        self.results.append(entry)

    # ---------------------------------------------------------------- 3. torch.compile
    def compile_on_off(self, precision: str, steps: int) -> None:
        if self.device.type != "cuda":
            self.skipped.append("TRAIN.COMPILE on/off: CUDA only here (inductor on a CPU takes minutes)")
            return
        for compiled in (False, True):
            entry: dict[str, Any] = {"check": "compile", "trainer": "IVLP", "precision": precision}
            entry["compile"] = compiled
            try:
                trainer, built = self.build("IVLP", precision, 10, **{"TRAIN.COMPILE": compiled})
                data = self.batch(trainer, built, 4, 10)
                start = time.perf_counter()
                first = float(trainer.forward_backward(data)["loss"])  # compiles when on
                torch.cuda.synchronize(self.device)
                entry["first_step_s"] = round(time.perf_counter() - start, 2)
                m = measure({"step": lambda t=trainer, d=data: t.forward_backward(d)}, self.device, 1, steps)
                m = m["step"]
                entry.update(ok=math.isfinite(first), ms_per_step=round(m.min_s * 1000, 1))
            except Exception as e:
                entry.update(ok=False, error=f"{type(e).__name__}: {e}")
            self.results.append(entry)

    # ---------------------------------------------------------------- 4. torchrun
    def torchrun(self, timeout: int) -> None:
        cuda = self.device.type == "cuda"
        out = self.workdir / "torchrun"
        argv = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
            str(REPO / "train.py"),
            "--root", str(self.workdir / "data"),
            "--dataset-config-file", str(REPO / "configs/datasets/synthetic.yaml"),
            "--output-dir", str(out), "--trainer", "CoOp", "--seed", "1",
            # train.py loads real weights for named backbones; the tiny random CLIP needs none
            "MODEL.BACKBONE.NAME", "tiny-vit", "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "OPTIM.MAX_EPOCH", "1", "TRAIN.PRINT_FREQ", "1000", "USE_CUDA", str(cuda),
        ]  # fmt: skip
        entry: dict[str, Any] = {"check": "torchrun", "backend": "nccl" if cuda else "gloo", "nproc": 1}
        if not cuda:
            self.skipped.append("torchrun with nccl: CUDA only (ran with gloo instead)")
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
            entry["seconds"] = round(time.perf_counter() - start, 1)
            entry["ok"] = proc.returncode == 0 and (out / "results.json").is_file()
            if not entry["ok"]:
                entry["error"] = (proc.stdout + proc.stderr)[-2000:]
        except subprocess.TimeoutExpired:
            entry.update(ok=False, error=f"timed out after {timeout} s")
        self.results.append(entry)

    # ---------------------------------------------------------------- report
    def document(self, started: str, argv: list[str]) -> dict[str, Any]:
        return {
            "started_utc": started,
            "argv": argv,
            "machine": machine_info(self.device),
            "device": self.device.type,
            "backbone": self.backbone,
            "teacher": self.teacher,
            "ok": all(r["ok"] for r in self.results),
            "results": self.results,
            "skipped": self.skipped,
        }


def markdown(doc: dict[str, Any]) -> str:
    """The report as Markdown: one line per check, then what was skipped and why."""
    lines = [
        f"# GPU check ({doc['device']}, {doc['backbone']} student, {doc['teacher']} teacher)",
        "",
        f"Started {doc['started_utc']}; machine: {doc['machine'].get('gpu') or doc['machine']['cpu']}; "
        f"torch {doc['machine']['torch']}. Overall: {'PASS' if doc['ok'] else 'FAIL'}.",
        "",
        "| check | trainer | precision | details | ok |",
        "|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        skip = {"check", "trainer", "precision", "ok"}
        details = ", ".join(f"{k}={v}" for k, v in r.items() if k not in skip)
        lines.append(f"| {r['check']} | {r.get('trainer', '-')} | {r.get('precision', '-')} | {details} | "
                     f"{'yes' if r['ok'] else 'NO'} |")  # fmt: skip
    if doc["skipped"]:
        lines += ["", "Skipped:", *(f"- {s}" for s in doc["skipped"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="output/gpu_check", help="folder of report.json and report.md")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--trainers", default="", help="comma list (default: every trainer and its CasPL version)")
    p.add_argument("--steps", type=int, default=6, help="training steps per run (default 6)")
    p.add_argument("--large-batch", type=int, default=128, help="CasPL_Boost's large batch (default 128)")
    p.add_argument(
        "--classes", type=int, default=1000, help="PromptSRC throughput class count (default 1000)"
    )
    p.add_argument("--skip-torchrun", action="store_true")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    device = torch.device("cuda" if cuda else "cpu")
    load_trainers()
    trainers = [t.strip() for t in args.trainers.split(",") if t.strip()] or all_trainers()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="caspl-gpu-check-") as tmp:
        backbone, teacher = ("ViT-B/16", "ViT-L/14") if cuda else ("tiny-vit", "small-vit")
        check = Check(device, backbone, teacher, Path(tmp))
        precisions = ("fp16", "bf16", "amp") if cuda else ("fp32", "bf16")
        if not cuda:
            check.skipped.append(
                "no CUDA: tiny shapes (tiny-vit, small-vit teacher) instead of ViT-B/16, ViT-L/14"
            )
            check.skipped.append("fp16 and amp: CUDA only (ran fp32 and bf16)")
        for name in trainers:
            for precision in precisions:
                check.training_run(name, precision, args.steps)
        main_prec = precisions[0]
        if "CasPL_Boost" in trainers:
            for batch in (4, args.large_batch):
                check.throughput("CasPL_Boost", main_prec, batch, 100)
        if "PromptSRC" in trainers:
            check.throughput("PromptSRC", main_prec, 4, args.classes)
        check.compile_on_off(main_prec, args.steps)
        if args.skip_torchrun:
            check.skipped.append("torchrun: --skip-torchrun")
        else:
            check.torchrun(timeout=300)
        doc = check.document(started, list(argv) if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(doc, indent=2) + "\n", out / "report.json")
    atomic_write_text(markdown(doc), out / "report.md")
    print(markdown(doc))
    print(f"wrote {out / 'report.json'} and {out / 'report.md'}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
