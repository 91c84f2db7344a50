"""CLIPs with the published architectures of the real backbones and random weights (no download needed)."""

import contextlib
import sys
from collections.abc import Iterator

import clip
import torch
from clip.model import CLIP

from caspl.vlm import build as vlm_build
from caspl.vlm.tiny import TINY_SPECS, tiny_state_dict

# OpenAI's published shapes: embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
# context_length, vocab_size, transformer_width, transformer_heads, transformer_layers.
ARCHS: dict[str, tuple[int, ...]] = {
    "ViT-B/32": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    "ViT-B/16": (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12),
    "ViT-L/14": (768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 77, 49408, 768, 12, 12),
}

BACKBONES = tuple(TINY_SPECS) + tuple(ARCHS)


def random_clip(name: str, seed: int = 0) -> CLIP:
    """A float32 CLIP in eval mode: `name`'s architecture with random weights (tiny names as build_clip)."""
    if name in TINY_SPECS:  # as build_clip builds them (not through it: it may be patched)
        return clip.model.build_model(tiny_state_dict(name, seed)).float().eval()
    if name not in ARCHS:
        raise KeyError(f"unknown benchmark backbone {name!r}; known: {', '.join(BACKBONES)}")
    with torch.random.fork_rng(devices=[]):  # the caller's RNG stream stays untouched
        torch.manual_seed(seed)
        model = CLIP(*ARCHS[name])
    return model.float().eval()


@contextlib.contextmanager
def random_weights(built: list[CLIP] | None = None) -> Iterator[None]:
    """Within the block, every `build_clip` imported from caspl.vlm.build returns a random CLIP of that
    architecture, so trainers build their real models without weight files. Built models go to `built`."""
    original = vlm_build.build_clip

    def fake(name: str, path: str = "", seed: int = 0) -> CLIP:
        model = random_clip(name, seed)
        if built is not None:
            built.append(model)
        return model

    patched = []
    for module in list(sys.modules.values()):
        try:
            found = getattr(module, "build_clip", None) is original
        except Exception:  # lazy modules may raise on attribute access
            found = False
        if found:
            patched.append(module)
            module.build_clip = fake  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in patched:
            module.build_clip = original  # type: ignore[attr-defined]


def layer_count(name: str) -> int:
    """The fewer of the two towers' layer counts: the deepest prompt depth `name` can take."""
    if name in TINY_SPECS:
        spec = TINY_SPECS[name]
        return min(spec.vision_layers, spec.transformer_layers)
    if name not in ARCHS:
        raise KeyError(f"unknown benchmark backbone {name!r}; known: {', '.join(BACKBONES)}")
    arch = ARCHS[name]
    return min(arch[2], arch[9])


def resolution(name: str) -> int:
    """The input side length of backbone `name`."""
    if name in TINY_SPECS:
        return TINY_SPECS[name].image_resolution
    if name not in ARCHS:
        raise KeyError(f"unknown benchmark backbone {name!r}; known: {', '.join(BACKBONES)}")
    return ARCHS[name][1]
