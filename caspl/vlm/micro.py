"""The micro world: procedurally drawn objects (colour x pattern x shape) with captions made of their words.

Two micro-CLIPs are pretrained on it by tools/pretrain_micro_clip.py and shipped as package data
(caspl/vlm/weights_micro/*.safetensors), loaded by name through caspl.vlm.weights:
- `micro-student`: the `tiny-vit` shape (32 px, patch 8, 4 layers of width 64 per tower), pretrained on a
  short budget; it never saw the colour-shape pairs of the demo dataset (it knows each colour and each shape
  only from other pairings) and zero-shots them far below the teacher, though its features carry the shape;
- `micro-teacher`: OpenAI's ModifiedResNet vision tower (32 px) pretrained on the whole world; it zero-shots
  every demo class.
The demo dataset (datasets/micro_world.py) is 16 of those colour-shape pairs, drawn in every pattern.

The files hold OpenAI's state-dict keys in fp16, except that the 49,408-row token embedding is stored as the
rows of the words the world uses ("token_embedding.rows" + "token_embedding.ids"); every other token's row
is zero (a word the micro-CLIP never read means nothing to it).
"""

import colorsys
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
HUES = (0.0, 0.07, 0.15, 0.33, 0.5, 0.63, 0.77, 0.9)  # hue of each colour on the HSV wheel
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "frame", "bar")
PATTERNS = ("plain", "striped", "dotted", "checkered")
IMAGE_SIZE = 32

# The demo dataset's classes: 16 colour-shape pairs, each colour twice and each shape twice. The first 8
# (4 colours) are the base classes of the base-to-new protocol, the last 8 (the 4 other colours) the new
# ones; within each half a colour names two classes, so the shape must be seen. The student's pretraining
# never shows these pairs; the teacher's shows every pair.
DEMO_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "circle"), ("red", "diamond"), ("orange", "square"), ("orange", "cross"),
    ("yellow", "triangle"), ("yellow", "ring"), ("green", "diamond"), ("green", "frame"),
    ("cyan", "cross"), ("cyan", "bar"), ("blue", "ring"), ("blue", "circle"),
    ("purple", "frame"), ("purple", "square"), ("pink", "bar"), ("pink", "triangle"),
)  # fmt: skip

WEIGHTS_DIR = Path(__file__).with_name("weights_micro")


@dataclass(frozen=True)
class MicroSpec:
    """Architecture (as clip.model.CLIP's arguments) and pretraining world of one micro-CLIP."""

    embed_dim: int
    image_resolution: int
    vision_layers: int | tuple[int, int, int, int]  # a tuple: OpenAI's ModifiedResNet (blocks per stage)
    vision_width: int
    vision_patch_size: int
    transformer_width: int
    transformer_layers: int
    sees_demo_pairs: bool  # False: the demo dataset's colour-shape pairs are held out of pretraining
    steps: int
    batch_size: int
    lr: float
    seed: int


MICRO_SPECS: dict[str, MicroSpec] = {
    # A short budget on purpose: at 800 steps its ViT encodes shape, but it zero-shots the unseen demo pairs
    # far below the teacher (at 2000 steps it reached the teacher, and there would be nothing to distil).
    # LR 1e-3: at 2e-3 and 5e-3 (with captions that named the colour more often) its ViT stayed on colour.
    "micro-student": MicroSpec(32, 32, 4, 64, 8, 64, 4, False, 800, 128, 1e-3, 1),
    # a ResNet: its convolutions learn the shapes within a few hundred steps
    "micro-teacher": MicroSpec(64, 32, (1, 1, 1, 1), 16, 0, 64, 4, True, 400, 128, 2e-3, 2),
}


def weights_file(name: str) -> Path:
    """Where the shipped weights of micro-CLIP `name` live (package data)."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def classname(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


# ---------------------------------------------------------------------------- drawing
def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of `shape` centred at 0 with half-size r on the offset grids yy, xx."""
    ay, ax = np.abs(yy), np.abs(xx)
    if shape == "circle":
        return yy**2 + xx**2 <= r**2
    if shape == "square":
        return np.maximum(ay, ax) <= 0.8 * r
    if shape == "triangle":  # apex up
        return (yy <= 0.8 * r) & (ax <= (yy + 0.9 * r) * 0.6)
    if shape == "diamond":
        return ay + ax <= 1.05 * r
    if shape == "cross":
        arm = 0.33 * r
        return ((ay <= arm) & (ax <= r)) | ((ax <= arm) & (ay <= r))
    if shape == "ring":
        d = np.sqrt(yy**2 + xx**2)
        return (d <= r) & (d >= 0.55 * r)
    if shape == "frame":
        m = np.maximum(ay, ax)
        return (m <= 0.85 * r) & (m >= 0.45 * r)
    if shape == "bar":
        return (ay <= 0.4 * r) & (ax <= 1.1 * r)
    raise KeyError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _pattern_mask(pattern: str, yy: np.ndarray, xx: np.ndarray, period: float, phase: float) -> np.ndarray:
    """Where the pattern darkens the object."""
    if pattern == "plain":
        return np.zeros(yy.shape, dtype=bool)
    if pattern == "striped":
        return ((xx + yy + phase) % period) < period / 2
    if pattern == "dotted":
        cy = (yy + phase) % period - period / 2
        cx = (xx + phase) % period - period / 2
        return cy**2 + cx**2 <= (period * 0.3) ** 2
    if pattern == "checkered":
        return (((yy + phase) // (period / 2)) + ((xx + phase) // (period / 2))) % 2 == 0
    raise KeyError(f"unknown pattern {pattern!r}; known: {', '.join(PATTERNS)}")


def render(
    colour: str, shape: str, pattern: str, rng: np.random.Generator, size: int = IMAGE_SIZE
) -> np.ndarray:
    """One uint8 RGB image (size x size x 3): the object at a random place and size on a noisy grey ground."""
    r = size * rng.uniform(0.28, 0.4)
    cy, cx = rng.uniform(r, size - r, 2) if r < size / 2 else (size / 2, size / 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    yy, xx = yy - cy, xx - cx
    obj = _shape_mask(shape, yy, xx, r)
    hue = (HUES[COLOURS.index(colour)] + rng.uniform(-0.02, 0.02)) % 1.0
    rgb = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0))) * 255.0
    dark = _pattern_mask(pattern, yy, xx, rng.uniform(5.0, 7.0) * size / 32, rng.uniform(0, 8))
    ground = rng.uniform(70, 170)
    img = np.full((size, size, 3), ground)
    img[obj] = rgb
    img[obj & dark] = rgb * 0.35
    img += rng.normal(0, 10.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def world_triples(sees_demo_pairs: bool) -> list[tuple[str, str, str]]:
    """(colour, pattern, shape) of every object a micro-CLIP's pretraining draws."""
    held_out = set() if sees_demo_pairs else set(DEMO_PAIRS)
    return [(c, p, s) for c, p, s in itertools.product(COLOURS, PATTERNS, SHAPES) if (c, s) not in held_out]


# ---------------------------------------------------------------------------- weights
def is_micro(name: str) -> bool:
    return name in MICRO_SPECS


def pack_state_dict(state_dict: dict[str, torch.Tensor], token_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """fp16 tensors for the file: the token embedding reduced to the rows of `token_ids`."""
    out = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
        for k, v in state_dict.items()
        if k != "token_embedding.weight"
    }
    out["token_embedding.rows"] = (
        state_dict["token_embedding.weight"][token_ids].detach().to(torch.float16).contiguous()
    )
    out["token_embedding.ids"] = token_ids.to(torch.int32).contiguous()
    return out


def unpack_state_dict(packed: dict[str, torch.Tensor], vocab_size: int = 49408) -> dict[str, torch.Tensor]:
    """OpenAI's layout again: the full token embedding, zero for every token the world does not use."""
    sd = {k: v for k, v in packed.items() if not k.startswith("token_embedding.")}
    rows = packed["token_embedding.rows"]
    table = torch.zeros(vocab_size, rows.shape[1], dtype=rows.dtype)
    table[packed["token_embedding.ids"].long()] = rows
    sd["token_embedding.weight"] = table
    return sd


def micro_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The shipped weights of micro-CLIP `name` in OpenAI's state-dict layout (fp16)."""
    from safetensors.torch import load_file  # noqa: PLC0415

    if name not in MICRO_SPECS:
        raise KeyError(f"unknown micro-CLIP {name!r}; known: {', '.join(MICRO_SPECS)}")
    path = weights_file(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing (package data of caspl); regenerate it with "
            f"`python tools/pretrain_micro_clip.py --models {name}`"
        )
    return unpack_state_dict(load_file(str(path), device="cpu"))
