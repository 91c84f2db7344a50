"""Random tiny CLIPs for tests and the demo, built through OpenAI's own `clip.model.build_model` path."""

from dataclasses import dataclass
from typing import Any

import torch
from clip.model import CLIP


@dataclass(frozen=True)
class TinySpec:
    """Architecture of a tiny random CLIP (context length and vocabulary stay OpenAI's)."""

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    transformer_width: int
    transformer_layers: int


# Widths are multiples of 64 because build_model derives the head count as width // 64.
TINY_SPECS: dict[str, TinySpec] = {
    # student-sized: 32 px, 16 patches, 4 layers per tower
    "tiny-vit": TinySpec(32, 32, 4, 64, 8, 64, 4),
    # a larger, differently shaped model to serve as teacher (48 px, 36 patches, 2 heads)
    "small-vit": TinySpec(64, 48, 6, 128, 8, 128, 6),
}


def clip_of_spec(spec: Any) -> CLIP:
    """OpenAI's CLIP module (random init) for a spec with TinySpec's fields (tiny and micro models alike)."""
    return CLIP(
        embed_dim=spec.embed_dim,
        image_resolution=spec.image_resolution,
        vision_layers=spec.vision_layers,
        vision_width=spec.vision_width,
        vision_patch_size=spec.vision_patch_size,
        context_length=77,
        vocab_size=49408,
        transformer_width=spec.transformer_width,
        transformer_heads=spec.transformer_width // 64,
        transformer_layers=spec.transformer_layers,
    )


def tiny_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of the random tiny CLIP `name`; identical for identical (name, seed)."""
    if name not in TINY_SPECS:
        raise KeyError(f"unknown tiny CLIP {name!r}; known: {', '.join(TINY_SPECS)}")
    s = TINY_SPECS[name]
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        model = clip_of_spec(s)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
