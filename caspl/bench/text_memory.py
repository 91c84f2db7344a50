"""`python -m caspl.bench.text_memory`: peak tensor memory of a PromptSRC training step (model forward +
cross-entropy + backward) on many class names, with and without the text-tower options.

The model is built on the meta device with the real architecture's shapes, so ViT-B/16 on 1000 ImageNet
names is measured in seconds without computing anything; memory is LiveTensorMemory's count of tensor
storages made by the step and alive at once (weights, buffers and inputs excluded: they are the same in
every variant). That is what the step adds on top of the model, on any device.
"""

import argparse
import sys

import torch
import torch.nn.functional as F
from tabulate import tabulate

from caspl.bench.harness import class_names
from caspl.bench.shapes import random_clip
from caspl.bench.tensor_memory import LiveTensorMemory
from caspl.vlm.prompted import TextTowerOptions, use_text_tower_options

VARIANTS = {
    "reference (77 tokens, one pass)": TextTowerOptions(truncate=False, chunk=0, checkpoint=False),
    "truncated, one pass": TextTowerOptions(truncate=True, chunk=0, checkpoint=False),
    "truncated, chunks of 256 (default)": TextTowerOptions(truncate=True, chunk=256, checkpoint=False),
    "truncated, chunks of 256 + checkpointing": TextTowerOptions(truncate=True, chunk=256, checkpoint=True),
}


def step_peak_mb(backbone: str, n_classes: int, batch: int, options: TextTowerOptions) -> float:
    """Peak MiB of one PromptSRC (IVLP 4+4 tokens, depth 9) training step's tensors on the meta device."""
    from trainers.ivlp import IVLPModel, IVLPPromptLearner  # noqa: PLC0415

    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        clip_model = random_clip(backbone)
    learner = IVLPPromptLearner(clip_model, 4, 4, 9, 9, ctx_init="")
    with use_text_tower_options(options):  # token ids on the CPU (pass lengths), embeddings on meta
        model = IVLPModel(clip_model, class_names(n_classes), learner).to("meta")
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("prompt_learner."))
    side = int(clip_model.visual.input_resolution)
    images = torch.empty(batch, 3, side, side, device="meta")
    labels = torch.zeros(batch, dtype=torch.long, device="meta")
    with LiveTensorMemory() as mem:
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        del loss
    return mem.peak_mb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m caspl.bench.text_memory", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--backbone", default="ViT-B/16")
    p.add_argument("--classes", default="100,1000", help="comma-separated class counts (ImageNet names)")
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args(argv)
    counts = [int(x) for x in args.classes.split(",")]
    body = []
    for label, options in VARIANTS.items():
        body.append(
            [label, *(f"{step_peak_mb(args.backbone, n, args.batch_size, options):.0f}" for n in counts)]
        )
    headers = ["text tower", *(f"peak MiB, {n} classes" for n in counts)]
    print(f"PromptSRC training step (4+4 tokens, depth 9), {args.backbone}, batch {args.batch_size}:")
    print(tabulate(body, headers=headers, tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
