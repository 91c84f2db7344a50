"""Pretrain the micro-CLIPs of the micro world (caspl/vlm/micro.py) contrastively on CPU, reproducibly.

Each model is OpenAI's clip.model.CLIP (the shape in caspl.vlm.micro.MICRO_SPECS) trained from its seed on
freshly drawn objects and captions made of their words, inside the 61 templates PromptSRC and CoOp use
("a photo of a {}.", "a blurry photo of the {}.", ...), a random subset of the attributes named
("a photo of a red striped circle.", "a drawing of a green shape.", ...). The loss is CLIP's symmetric
contrastive loss whose targets are every caption an image matches (a batch holds many "red circle"s).
One thread, deterministic algorithms, seeded numpy and torch: the same command writes the same bytes.

    python tools/pretrain_micro_clip.py                   # both models into caspl/vlm/weights_micro/
    python tools/pretrain_micro_clip.py --check           # regenerate into a temp dir, compare the bytes
    python tools/pretrain_micro_clip.py --models micro-student --steps 20 --out-dir /tmp/w   # a quick try
"""

import argparse
import dataclasses
import filecmp
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from caspl.vlm.imagenet_templates import IMAGENET_TEMPLATES  # noqa: E402
from caspl.vlm.micro import (  # noqa: E402
    COLOURS,
    DEMO_PAIRS,
    MICRO_SPECS,
    PATTERNS,
    SHAPES,
    WEIGHTS_DIR,
    MicroSpec,
    pack_state_dict,
    render,
    weights_file,
    world_triples,
)

TEMPLATES = tuple(IMAGENET_TEMPLATES) + ("{}.",)  # "{}." : CasPL's "[boosting tokens] red circle."
SOS, EOT = 49406, 49407
# Chance that a caption names each attribute. Every caption names the shape: when most captions named the
# colour, colour alone solved most of the contrastive loss and the student's ViT never learnt shape (measured:
# 800 steps at colour 0.8 / shape 0.8 left its zero-shot on seen colour-shape pairs at the colour-only 17%).
KEEP = {"colour": 0.5, "pattern": 0.5, "shape": 1.0}


def _descriptions() -> list[tuple[str | None, str | None, str | None]]:
    """Every (colour, pattern, shape) a caption can name; None = not named (at least one is named)."""
    out = []
    for c in (None, *COLOURS):
        for p in (None, *PATTERNS):
            for s in (None, *SHAPES):
                if (c, p, s) != (None, None, None):
                    out.append((c, p, s))
    return out


def _words(desc: tuple[str | None, str | None, str | None]) -> str:
    c, p, s = desc
    return " ".join(w for w in (c, p, s or "shape") if w)


class Captions:
    """All template x description captions, tokenized once, in a compact vocabulary."""

    def __init__(self) -> None:
        import clip  # noqa: PLC0415

        self.descs = _descriptions()
        self.index = {d: i for i, d in enumerate(self.descs)}
        texts = [t.format(_words(d)) for t in TEMPLATES for d in self.descs]
        tokens = clip.tokenize(texts)  # (n, 77)
        self.eot = tokens.argmax(-1)
        self.length = int(self.eot.max()) + 1
        tokens = tokens[:, : self.length]
        ids = torch.unique(tokens)
        self.ids = ids[ids != 0]  # "!" (0) only pads after EOT: no row for it in the file
        lookup = torch.zeros(EOT + 1, dtype=torch.long)
        lookup[ids] = torch.arange(len(ids))
        self.compact = lookup[tokens]  # (n, length) indices into `ids` (0 included for the padding)
        self.all_ids = ids

    def rows(self, template: int, desc: tuple) -> int:
        return template * len(self.descs) + self.index[desc]


class Trainee(torch.nn.Module):
    """A clip.model.CLIP trained with a compact token embedding and text truncated to the longest caption.

    The text tower is causal, so features at EOT do not depend on positions after it: truncating to
    `length` positions computes exactly what the full 77-position tower computes.
    """

    def __init__(self, spec: MicroSpec, captions: Captions) -> None:
        super().__init__()
        from caspl.vlm.tiny import clip_of_spec  # noqa: PLC0415

        self.clip = clip_of_spec(spec)
        self.captions = captions
        full = self.clip.token_embedding.weight.detach()
        self.embedding = torch.nn.Parameter(full[captions.all_ids].clone())
        self.clip.token_embedding.weight.requires_grad_(False)
        mask = self.clip.build_attention_mask()[: captions.length, : captions.length]
        for block in self.clip.transformer.resblocks:
            block.attn_mask = mask

    def encode_text(self, rows: torch.Tensor) -> torch.Tensor:
        m = self.clip
        x = self.embedding[self.captions.compact[rows]] + m.positional_embedding[: self.captions.length]
        x = m.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = m.ln_final(x)
        return x[torch.arange(len(rows)), self.captions.eot[rows]] @ m.text_projection

    def packed_state_dict(self) -> dict[str, torch.Tensor]:
        sd = dict(self.clip.state_dict())
        table = torch.zeros_like(sd["token_embedding.weight"])
        table[self.captions.all_ids] = self.embedding.detach()
        sd["token_embedding.weight"] = table
        return pack_state_dict(sd, self.captions.ids)


def _images(triples: list[tuple[str, str, str]], rng: np.random.Generator, size: int) -> torch.Tensor:
    """Normalised (CLIP's mean/std) image batch of the given objects."""
    arr = np.stack([render(c, s, p, rng, size) for c, p, s in triples]).astype(np.float32) / 255.0
    x = torch.from_numpy(arr).permute(0, 3, 1, 2)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    return (x - mean) / std


def _caption_for(triple: tuple[str, str, str], rng: np.random.Generator) -> tuple[str | None, ...]:
    c, p, s = triple
    keep = [rng.random() < KEEP[k] for k in ("colour", "pattern", "shape")]
    if not any(keep):
        keep[2] = True
    return (c if keep[0] else None, p if keep[1] else None, s if keep[2] else None)


def _matches(triple: tuple[str, str, str], desc: tuple) -> bool:
    return all(d is None or d == t for d, t in zip(desc, triple))


@torch.no_grad()
def zero_shot(model: Trainee, pairs: tuple, rng: np.random.Generator, per_class: int = 24) -> float:
    """Accuracy (%) on drawn images of colour-shape `pairs` (any pattern), prompt "a photo of a {}."."""
    model.eval()
    rows = torch.tensor([model.captions.rows(0, (c, None, s)) for c, s in pairs])
    text = F.normalize(model.encode_text(rows), dim=-1)
    triples = [(c, PATTERNS[int(rng.integers(4))], s) for c, s in pairs for _ in range(per_class)]
    labels = torch.arange(len(pairs)).repeat_interleave(per_class)
    image = F.normalize(
        model.clip.encode_image(_images(triples, rng, model.clip.visual.input_resolution)), dim=-1
    )
    model.train()
    return 100.0 * ((image @ text.t()).argmax(-1) == labels).float().mean().item()


def pretrain(name: str, spec: MicroSpec, captions: Captions) -> dict[str, torch.Tensor]:
    """Train micro-CLIP `name` from its seed; returns the packed fp16 state dict."""
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    model = Trainee(spec, captions)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=spec.lr
    )
    steps = spec.steps
    warmup = min(100, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: (
            (i + 1) / warmup
            if i < warmup
            else 0.5 * (1 + math.cos(math.pi * (i - warmup) / (steps - warmup)))
        ),
    )
    world = world_triples(spec.sees_demo_pairs)
    seen_pairs = tuple(sorted({(c, s) for c, _, s in world}))
    start = time.time()
    for step in range(1, steps + 1):
        triples = [world[i] for i in rng.integers(len(world), size=spec.batch_size)]
        descs = [_caption_for(t, rng) for t in triples]
        templates = rng.integers(len(TEMPLATES), size=spec.batch_size)
        rows = torch.tensor([captions.rows(int(k), d) for k, d in zip(templates, descs)])
        image = F.normalize(model.clip.encode_image(_images(triples, rng, spec.image_resolution)), dim=-1)
        text = F.normalize(model.encode_text(rows), dim=-1)
        logits = model.clip.logit_scale.exp().clamp(max=100) * image @ text.t()
        match = torch.tensor([[_matches(t, d) for d in descs] for t in triples], dtype=torch.float32)
        loss_i = -(match / match.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
        loss_t = -(match / match.sum(0, keepdim=True) * F.log_softmax(logits, 0)).sum(0).mean()
        loss = (loss_i + loss_t) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps:
            eval_rng = np.random.default_rng(12345)
            demo = zero_shot(model, DEMO_PAIRS, eval_rng)
            seen = zero_shot(model, seen_pairs, eval_rng, per_class=4)
            print(
                f"{name} step {step}/{steps} loss {loss.item():.3f} | zero-shot: demo pairs {demo:.1f}% "
                f"(16-way), pretraining pairs {seen:.1f}% ({len(seen_pairs)}-way) | {time.time() - start:.0f} s",
                flush=True,
            )
    return model.packed_state_dict()


def save(packed: dict[str, torch.Tensor], path: Path, spec: MicroSpec) -> None:
    from safetensors.torch import save_file  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(packed, str(tmp), metadata={"spec": json.dumps(spec.__dict__, sort_keys=True)})
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MICRO_SPECS), choices=list(MICRO_SPECS))
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--steps", type=int, default=None, help="override the spec's steps (quick tries)")
    parser.add_argument("--check", action="store_true", help="regenerate into a temp dir, compare bytes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the float sums' order, hence the bytes, depend on the thread count
    torch.use_deterministic_algorithms(True)
    captions = Captions()
    out_dir = Path(tempfile.mkdtemp(prefix="micro-clip-")) if args.check else args.out_dir
    status = 0
    for name in args.models:
        spec = MICRO_SPECS[name]
        path = out_dir / f"{name}.safetensors"
        if args.steps:
            spec = dataclasses.replace(spec, steps=args.steps)
        save(pretrain(name, spec, captions), path, spec)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        if args.check:
            same = filecmp.cmp(path, weights_file(name), shallow=False)
            print(f"{name}: {'identical to' if same else 'DIFFERS from'} {weights_file(name)}")
            status |= not same
    return status


if __name__ == "__main__":
    sys.exit(main())
