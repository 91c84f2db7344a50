"""Bounded text-tower memory on many classes: chunks (+ activation checkpointing when training).

Memory is the peak of live tensor storages made inside the measured block, counted op by op by
caspl.bench.tensor_memory.LiveTensorMemory (a TorchDispatchMode; exact, independent of the C allocator
and of other processes). The tower is tiny-vit's text tower with a deep prompt group, as IVLP/PromptSRC
and CasPL's boosting prompts use it.
"""

import pytest
import torch

from caspl.bench.tensor_memory import LiveTensorMemory
from caspl.vlm.build import build_clip, freeze
from caspl.vlm.prompted import PromptedTextEncoder, TextTowerOptions


@pytest.fixture(scope="module")
def clip_model():
    return freeze(build_clip("tiny-vit"))


# Ten names cycled: every chunk of 100 holds all of them, so every chunk has the same longest prompt and
# the only thing that changes with the class count is the number of chunks.
NAMES = [
    "dog",
    "sea lion",
    "red panda",
    "tulip",
    "golden retriever",
    "cat",
    "kayak",
    "violin",
    "fox",
    "tench",
]


def peak_mb(clip_model, n_classes: int, options: TextTowerOptions, train: bool) -> float:
    texts = [f"{NAMES[i % len(NAMES)]}." for i in range(n_classes)]
    encoder = PromptedTextEncoder(clip_model, texts, [4], options=options)
    gen = torch.Generator().manual_seed(0)
    tokens = [torch.randn(4, 64, generator=gen).requires_grad_(train) for _ in range(4)]  # depth 4
    weights = torch.randn(n_classes, 32, generator=gen)
    with LiveTensorMemory() as mem, torch.set_grad_enabled(train):
        features = encoder([tokens])
        if train:
            (features * weights).sum().backward()
            del features
    return mem.peak_mb


def test_training_memory_with_checkpointed_chunks_does_not_grow_with_classes(clip_model):
    bounded = TextTowerOptions(truncate=True, chunk=100, checkpoint=True)
    small, large = peak_mb(clip_model, 200, bounded, True), peak_mb(clip_model, 1000, bounded, True)
    assert large <= 1.25 * small, (small, large)
    # The same measure sees the growth without them (5x the classes: over 3x the memory).
    unbounded = TextTowerOptions(truncate=True, chunk=0, checkpoint=False)
    small_u, large_u = peak_mb(clip_model, 200, unbounded, True), peak_mb(clip_model, 1000, unbounded, True)
    assert large_u >= 3.0 * small_u, (small_u, large_u)
    assert large < 0.5 * large_u


def test_encoding_memory_with_chunks_does_not_grow_with_classes(clip_model):
    """No gradients (evaluation cache, frozen targets, teacher features): chunking alone bounds memory."""
    chunked = TextTowerOptions(truncate=True, chunk=100, checkpoint=False)
    small, large = peak_mb(clip_model, 200, chunked, False), peak_mb(clip_model, 1000, chunked, False)
    assert large <= 1.25 * small, (small, large)
    one_pass = TextTowerOptions(truncate=True, chunk=0, checkpoint=False)
    assert peak_mb(clip_model, 1000, one_pass, False) >= 3.0 * small


def test_truncation_cuts_activation_memory(clip_model):
    """The 77-token tower holds several times the activations of the short one (names of ~4-6 tokens)."""
    short = peak_mb(clip_model, 200, TextTowerOptions(True, 0, False), True)
    full = peak_mb(clip_model, 200, TextTowerOptions(False, 0, False), True)
    assert full >= 4.0 * short, (short, full)
