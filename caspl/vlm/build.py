"""Build a CLIP model (OpenAI architecture) from a backbone name, a local file, or a tiny random spec."""

import clip
import torch
from clip.model import CLIP

from caspl.vlm.tiny import TINY_SPECS, tiny_state_dict


def build_clip(name: str, path: str = "", seed: int = 0) -> CLIP:
    """A float32 CLIP on the CPU in eval mode: `tiny-vit`/`small-vit` are random, others load real weights."""
    if path or name not in TINY_SPECS:
        from caspl.vlm.weights import load_clip_state_dict  # noqa: PLC0415 (keeps tiny builds import-light)

        state_dict = load_clip_state_dict(name, path)
    else:
        state_dict = tiny_state_dict(name, seed)
    # build_model converts to fp16 (OpenAI's GPU default); precision is the trainer's choice (PREC).
    return clip.model.build_model(dict(state_dict)).float().eval()


def input_resolution(model: CLIP) -> int:
    """The image side length the model was trained at."""
    return int(model.visual.input_resolution)


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Turn off gradients for every parameter of `module` (frozen towers, teachers)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module
