"""Prompted encoders: equal to CLIP without groups, deep groups rewrite exactly their layers, gradients."""

import clip
import pytest
import torch

from caspl.vlm.build import build_clip, freeze
from caspl.vlm.prompted import PromptedImageEncoder, PromptedTextEncoder, PromptGroup, TextTowerOptions

NAMES = ["dog", "sea lion", "red panda"]


def _run_captured(blocks: torch.nn.ModuleList, fn) -> tuple[list, list]:
    """Run fn() recording each block's input and output as (N, L, D)."""
    inputs, outputs = [], []

    def hook(_m, args, out):
        inputs.append(args[0].permute(1, 0, 2).detach().clone())
        outputs.append(out.permute(1, 0, 2).detach().clone())

    handles = [block.register_forward_hook(hook) for block in blocks]
    try:
        with torch.no_grad():
            fn()
    finally:
        for h in handles:
            h.remove()
    return inputs, outputs


def test_no_group_text_encoder_equals_clip(tiny_clip):
    texts = [f"a photo of a {n}." for n in NAMES]
    encoder = PromptedTextEncoder(tiny_clip, texts)
    with torch.no_grad():
        expected = tiny_clip.encode_text(clip.tokenize(texts))
        got = encoder([])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_no_group_image_encoder_equals_clip(tiny_clip):
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            PromptedImageEncoder(tiny_clip)(images, []), tiny_clip.encode_image(images), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("depth", [1, 3])
def test_text_group_rewrites_exactly_its_layers(tiny_clip, depth):
    torch.manual_seed(0)
    n = 2
    group = PromptGroup(n, 64, depth)
    tokens = group()
    encoder = PromptedTextEncoder(tiny_clip, [f"{name}." for name in NAMES], [n])
    inputs, outputs = _run_captured(tiny_clip.transformer.resblocks, lambda: encoder([tokens]))
    slots = encoder.slots[0]
    assert slots.tolist() == [1, 2]  # right after [SOS]
    # layer 0: slots hold the group's tokens, every other position CLIP's own token embedding; the pass
    # runs on the first max(EOT)+1 positions only (exact short context)
    ids = encoder.token_ids
    assert ids.shape[1] == int(ids.argmax(-1).max()) + 1 < 77
    pos = tiny_clip.positional_embedding[: ids.shape[1]]
    expected0 = tiny_clip.token_embedding(ids).detach() + pos
    expected0[:, slots] = tokens[0].detach() + pos[slots]
    torch.testing.assert_close(inputs[0], expected0.detach())
    for layer in range(1, len(inputs)):
        got = inputs[layer][:, slots]
        if layer < depth:  # prompted layer: the slots are overwritten with that layer's tokens
            torch.testing.assert_close(got, tokens[layer].detach().expand_as(got))
        else:  # beyond the depth the slots pass through from the previous block
            torch.testing.assert_close(got, outputs[layer - 1][:, slots])
        keep = [i for i in range(inputs[layer].shape[1]) if i not in slots.tolist()]
        torch.testing.assert_close(inputs[layer][:, keep], outputs[layer - 1][:, keep])


@pytest.mark.parametrize("depth", [1, 3])
def test_vision_group_rewrites_exactly_its_layers(tiny_clip, depth):
    torch.manual_seed(0)
    n = 3
    group = PromptGroup(n, 64, depth)
    tokens = group()
    images = torch.randn(2, 3, 32, 32)
    visual = tiny_clip.visual
    encoder = PromptedImageEncoder(tiny_clip)
    plain_in, _ = _run_captured(visual.transformer.resblocks, lambda: encoder(images, []))
    inputs_p, outputs_p = _run_captured(visual.transformer.resblocks, lambda: encoder(images, [tokens]))
    n_base = 1 + (32 // 8) ** 2
    slots = list(range(n_base, n_base + n))
    # layer 0: [CLS][patches] are CLIP's own (ln_pre is per token), the appended slots are the tokens
    torch.testing.assert_close(inputs_p[0][:, :n_base], plain_in[0])
    torch.testing.assert_close(inputs_p[0][:, slots], visual.ln_pre(tokens[0]).detach().expand(2, -1, -1))
    for layer in range(1, len(inputs_p)):
        got = inputs_p[layer][:, slots]
        if layer < depth:
            torch.testing.assert_close(got, tokens[layer].detach().expand_as(got))
        else:
            torch.testing.assert_close(got, outputs_p[layer - 1][:, slots])
        torch.testing.assert_close(inputs_p[layer][:, :n_base], outputs_p[layer - 1][:, :n_base])


def test_depth_one_and_deep_groups_give_different_features(tiny_clip):
    torch.manual_seed(0)
    deep = PromptGroup(2, 64, 3)
    shallow_tokens = deep()[:1]
    encoder = PromptedTextEncoder(tiny_clip, [f"{n}." for n in NAMES], [2])
    images = torch.randn(2, 3, 32, 32)
    image_encoder = PromptedImageEncoder(tiny_clip)
    with torch.no_grad():
        text_gap = (encoder([deep()]) - encoder([shallow_tokens])).abs().max()
        image_gap = (image_encoder(images, [deep()]) - image_encoder(images, [shallow_tokens])).abs().max()
    assert text_gap > 1e-3 and image_gap > 1e-3


def test_two_groups_take_consecutive_slots_in_order(tiny_clip):
    torch.manual_seed(0)
    first, second = PromptGroup(2, 64, 1), PromptGroup(3, 64, 1)
    encoder = PromptedTextEncoder(tiny_clip, [f"{n}." for n in NAMES], [2, 3])
    assert encoder.group_slots(0)[0].tolist() == [1, 2]
    assert encoder.group_slots(1)[0].tolist() == [3, 4, 5]
    inputs, _ = _run_captured(tiny_clip.transformer.resblocks, lambda: encoder([first(), second()]))
    pos = tiny_clip.positional_embedding
    torch.testing.assert_close(inputs[0][0, 1:3], (first()[0] + pos[1:3]).detach())
    torch.testing.assert_close(inputs[0][0, 3:6], (second()[0] + pos[3:6]).detach())


def test_gradients_reach_every_prompted_layer_and_nothing_frozen():
    tiny_clip = freeze(build_clip("tiny-vit"))
    torch.manual_seed(0)
    text, vision = PromptGroup(2, 64, 3), PromptGroup(2, 64, 2)
    text_encoder = PromptedTextEncoder(tiny_clip, [f"{n}." for n in NAMES], [2])
    image_encoder = PromptedImageEncoder(tiny_clip)
    feats = image_encoder(torch.randn(2, 3, 32, 32), [vision()]) @ text_encoder([text()]).t()
    feats.sum().backward()
    for group in (text, vision):
        for layer, p in enumerate(group.tokens):
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient at layer {layer}"
    assert all(p.grad is None for p in tiny_clip.parameters())


def test_half_precision_towers_match_clip_in_half():
    from caspl.engine.precision import cast_frozen_clip

    half = freeze(build_clip("tiny-vit"))
    cast_frozen_clip(half, "fp16")  # PREC fp16: CLIP's weights in half, as OpenAI ships them
    texts = [f"a photo of a {n}." for n in NAMES]
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got_image = PromptedImageEncoder(half)(images, [])
        torch.testing.assert_close(got_image, half.encode_image(images))
        # CLIP's own 77-token computation in half: equal when the encoder runs the same positions ...
        full = PromptedTextEncoder(half, texts, options=TextTowerOptions(truncate=False))([])
        torch.testing.assert_close(full, half.encode_text(clip.tokenize(texts)))
        # ... and within fp16 rounding when it runs the short context (other matmul shapes round otherwise)
        got_text = PromptedTextEncoder(half, texts)([])
        torch.testing.assert_close(got_text, full, rtol=1e-2, atol=1e-2)
