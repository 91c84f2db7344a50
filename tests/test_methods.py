"""Prompt-learning methods on a tiny CLIP: prompt placement, initialisation, coupling, cascade order, GPA, configs."""

import math
from pathlib import Path

import clip
import pytest
import torch
import torch.nn.functional as F

from caspl.config import get_cfg_default
from caspl.vlm.build import build_clip, freeze
from caspl.vlm.model import CascadeGroups
from caspl.vlm.prompted import PromptGroup, init_tokens_from_text
from trainers.cocoop import CoCoOpModel
from trainers.coop import CoOpModel
from trainers.ivlp import IVLPModel, IVLPPromptLearner
from trainers.maple import MaPLeModel
from trainers.promptsrc import GaussianPromptAggregation, gpa_weights, template_text_features

REPO = Path(__file__).resolve().parents[1]
NAMES = ["dog", "sea_lion", "red panda"]
METHOD_DIRS = ["CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC"]


@pytest.fixture(scope="module")
def frozen_clip():
    return freeze(build_clip("tiny-vit"))


def clip_text(model, sentences):
    with torch.no_grad():
        return model.encode_text(clip.tokenize(sentences))


def set_tokens(group: PromptGroup, words: str, clip_model) -> None:
    with torch.no_grad():
        group.tokens[0].copy_(init_tokens_from_text(clip_model, words))


# ---------------------------------------------------------------------------- CoOp
@pytest.mark.parametrize(
    "position, ctx_words, sentence",
    [
        ("end", "a photo of a", "a photo of a {}."),
        ("front", "in a big photo", "{} in a big photo."),
        ("middle", "a big in snow", "a big {} in snow."),
    ],
)
def test_coop_class_token_position_matches_the_sentence(frozen_clip, position, ctx_words, sentence):
    """With the context set to word embeddings, CoOp's prompt is exactly CLIP's text of that sentence."""
    model = CoOpModel(frozen_clip, NAMES, n_ctx=4, position=position)
    set_tokens(model.prompt_learner.ctx, ctx_words, frozen_clip)
    with torch.no_grad():
        got = model.encode_text()
    expected = clip_text(frozen_clip, [sentence.format(n.replace("_", " ")) for n in NAMES])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_coop_ctx_init_sets_token_count_and_values(frozen_clip):
    model = CoOpModel(frozen_clip, NAMES, n_ctx=16, ctx_init="a_photo_of_a")
    assert model.prompt_learner.ctx.tokens[0].shape == (4, 64)  # N_CTX ignored, as published
    expected = clip_text(frozen_clip, [f"a photo of a {n.replace('_', ' ')}." for n in NAMES])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(), expected, rtol=1e-5, atol=1e-5)


def test_coop_class_specific_context_only_moves_its_class(frozen_clip):
    torch.manual_seed(0)
    model = CoOpModel(frozen_clip, NAMES, n_ctx=4, csc=True)
    ctx = model.prompt_learner.ctx.tokens[0]
    assert ctx.shape == (3, 4, 64)
    with torch.no_grad():
        before = model.encode_text()
        # Random noise, not a constant shift: every read of a token goes through a LayerNorm, which
        # cannot see a shift added to every dimension.
        ctx[1] += torch.randn_like(ctx[1])
        after = model.encode_text()
    assert (before[1] - after[1]).abs().max() > 1e-2
    torch.testing.assert_close(before[[0, 2]], after[[0, 2]])


# ---------------------------------------------------------------------------- IVLP / MaPLe context rule
def test_ivlp_keeps_the_rest_of_ctx_init_as_fixed_text(frozen_clip):
    """N_CTX_TEXT 2 with "a photo of a": [SOS][a photo] of a {class}. ; no vision prompts -> plain CLIP."""
    learner = IVLPPromptLearner(frozen_clip, 2, 0, 1, 0, "a photo of a")
    model = IVLPModel(frozen_clip, NAMES, learner)
    assert learner.prefix == "of a"
    expected = clip_text(frozen_clip, [f"a photo of a {n.replace('_', ' ')}." for n in NAMES])
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.encode_image(images), frozen_clip.encode_image(images))


def test_ivlp_random_init_above_four_tokens_and_depth_checks(frozen_clip):
    learner = IVLPPromptLearner(frozen_clip, 6, 2, 2, 2, "a photo of a")
    assert learner.prefix == "" and learner.initial_text == "X X X X X X"
    with pytest.raises(ValueError, match="PROMPT_DEPTH_TEXT"):
        IVLPPromptLearner(frozen_clip, 2, 2, 9, 2, "a photo of a")  # tiny-vit has 4 layers
    with pytest.raises(ValueError, match="PROMPT_DEPTH_TEXT"):
        IVLPPromptLearner(frozen_clip, 2, 2, 0, 2, "a photo of a")
    with pytest.raises(ValueError, match="fewer than"):
        IVLPPromptLearner(frozen_clip, 3, 2, 1, 1, "a photo")


def test_maple_vision_tokens_are_projections_of_its_text_tokens(frozen_clip):
    torch.manual_seed(0)
    model = MaPLeModel(frozen_clip, NAMES, n_ctx=2, ctx_init="a photo of a", depth=3)
    learner = model.prompt_learner
    text = learner.text()
    assert len(text) == 3 and learner.prefix == "of a"
    torch.testing.assert_close(text[0], init_tokens_from_text(frozen_clip, "a photo"))
    # as published, the compound projections are copies of one layer: equal at initialisation
    p0, p1 = learner.compound_projections
    assert torch.equal(p0.weight, p1.weight) and p0.weight is not p1.weight
    seen = {}
    original = model.image_encoder.forward

    def spy(images, groups):
        seen["vision"] = groups
        return original(images, groups)

    model.image_encoder.forward = spy
    with torch.no_grad():
        # after training they differ: each layer uses its own projection (random, so the outputs differ
        # in direction, not by a shift a LayerNorm would hide)
        p1.weight.add_(torch.randn_like(p1.weight))
        model(torch.randn(2, 3, 32, 32))
    (vision,) = seen["vision"]
    assert len(vision) == 3 and vision[0].shape == (2, 64)  # tiny-vit: vision width 64
    torch.testing.assert_close(vision[0], learner.proj(text[0]))
    torch.testing.assert_close(vision[1], p0(text[1]))
    torch.testing.assert_close(vision[2], p1(text[2]))


def test_maple_trains_projections_and_text_tokens(frozen_clip):
    model = MaPLeModel(frozen_clip, NAMES, n_ctx=2, depth=2)
    F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 2])).backward()
    grads = {n: p.grad for n, p in model.prompt_learner.named_parameters()}
    assert set(grads) == {
        "text.tokens.0",
        "text.tokens.1",
        "proj.weight",
        "proj.bias",
        "compound_projections.0.weight",
        "compound_projections.0.bias",
    }
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    assert all(p.grad is None for p in frozen_clip.parameters())


# ---------------------------------------------------------------------------- CoCoOp
def test_cocoop_context_differs_between_images(frozen_clip):
    torch.manual_seed(0)
    model = CoCoOpModel(frozen_clip, NAMES, n_ctx=4)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = F.normalize(model.encode_image(images), dim=-1)
        ctx = model.shifted_context(feats)
    assert ctx.shape == (2, 4, 64)
    assert not torch.allclose(ctx[0], ctx[1])
    # the same bias is added to every context token of an image
    shift = ctx - model.prompt_learner.ctx.tokens[0].detach()
    torch.testing.assert_close(shift[:, 0], shift[:, 3])


def test_cocoop_with_zero_meta_net_equals_its_unshifted_prompt(frozen_clip):
    torch.manual_seed(0)
    model = CoCoOpModel(frozen_clip, NAMES, n_ctx=4, ctx_init="a photo of a")
    linear2 = model.prompt_learner.meta_net.linear2
    with torch.no_grad():
        linear2.weight.zero_()
        linear2.bias.zero_()
        images = torch.randn(2, 3, 32, 32)
        got = model(images)
        text = F.normalize(
            clip_text(frozen_clip, [f"a photo of a {n.replace('_', ' ')}." for n in NAMES]), dim=-1
        )
        image = F.normalize(frozen_clip.encode_image(images), dim=-1)
        expected = frozen_clip.logit_scale.exp() * image @ text.t()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_cocoop_meta_net_shape_and_gradients(frozen_clip):
    model = CoCoOpModel(frozen_clip, NAMES, n_ctx=2)
    net = model.prompt_learner.meta_net
    assert (net.linear1.in_features, net.linear1.out_features, net.linear2.out_features) == (32, 2, 64)
    F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([1, 0])).backward()
    assert net.linear1.weight.grad.abs().sum() > 0
    assert model.prompt_learner.ctx.tokens[0].grad.abs().sum() > 0


# ---------------------------------------------------------------------------- cascade order
def _cascade() -> CascadeGroups:
    torch.manual_seed(1)
    return CascadeGroups(freeze(PromptGroup(2, 64, 2)), freeze(PromptGroup(3, 64, 2)))


def _spy(model):
    calls = {"text": [], "vision": []}
    text_forward, image_forward = model.text_encoder.forward, model.image_encoder.forward

    def text_spy(groups=()):
        calls["text"].append(list(groups))
        return text_forward(groups)

    def image_spy(images, groups=()):
        calls["vision"].append(list(groups))
        return image_forward(images, groups)

    model.text_encoder.forward, model.image_encoder.forward = text_spy, image_spy
    return calls


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("method", ["CoOp", "CoCoOp", "IVLP", "MaPLe"])
def test_cascade_text_after_method_vision_before(frozen_clip, method):
    cascade = _cascade()
    builders = {
        "CoOp": lambda c: CoOpModel(frozen_clip, NAMES, 4, cascade=c),
        "CoCoOp": lambda c: CoCoOpModel(frozen_clip, NAMES, 4, cascade=c),
        "IVLP": lambda c: IVLPModel(
            frozen_clip, NAMES, IVLPPromptLearner(frozen_clip, 2, 2, 2, 2, "a photo"), c
        ),
        "MaPLe": lambda c: MaPLeModel(frozen_clip, NAMES, 2, "a photo of a", 2, cascade=c),
    }
    model = builders[method](cascade)
    assert model.text_encoder.group_sizes[-1] == 2  # the cascade's slots come last on the text side
    calls = _spy(model)
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    method_text = model.method_text_tokens()
    method_vision = model.method_vision_tokens()
    for groups in calls["text"]:  # CoCoOp: one call per image
        assert len(groups) == len(method_text) + 1
        assert _same(groups[-1], cascade.text())
        if method != "CoCoOp":
            assert _same(groups[0], method_text[0])
        else:  # the image-shifted context, then the cascade
            assert groups[0][0].shape == method_text[0][0].shape and not torch.equal(
                groups[0][0], method_text[0][0]
            )
    (vision,) = calls["vision"]
    assert _same(vision[0], cascade.vision())
    assert len(vision) == 1 + len(method_vision)
    for got, want in zip(vision[1:], method_vision):
        assert _same(got, want)


def test_empty_cascade_equals_no_cascade(frozen_clip):
    torch.manual_seed(0)
    plain = IVLPModel(frozen_clip, NAMES, IVLPPromptLearner(frozen_clip, 2, 2, 2, 2, "a photo of a"))
    empty = CascadeGroups(PromptGroup(0, 64, 0), PromptGroup(0, 64, 0))
    cascaded = IVLPModel(frozen_clip, NAMES, plain.prompt_learner, empty)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(cascaded(images), plain(images))


# ---------------------------------------------------------------------------- PromptSRC pieces
def test_template_ensemble_is_the_mean_of_frozen_text_features(frozen_clip):
    templates = ["a photo of a {}.", "a drawing of the {}.", "itap of my {}."]
    got = template_text_features(frozen_clip, NAMES, templates)
    names = [n.replace("_", " ") for n in NAMES]
    feats = torch.stack([clip_text(frozen_clip, [t.format(n) for n in names]) for t in templates])
    torch.testing.assert_close(got, F.normalize(feats.mean(0), dim=-1), rtol=1e-5, atol=1e-5)
    # with a cascaded text group the frozen targets see it after [SOS]
    group = freeze(PromptGroup(2, 64, 2))
    with_group = template_text_features(frozen_clip, NAMES, templates, group)
    assert (with_group - got).abs().max() > 1e-3


def test_gpa_weights_are_the_normalized_gaussian():
    weights = gpa_weights(5, 3, 1.5)
    pdf = [math.exp(-0.5 * ((e - 3) / 1.5) ** 2) for e in range(1, 6)]
    assert weights == pytest.approx([p / sum(pdf) for p in pdf])
    assert sum(gpa_weights(20, 15, 1)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="GPA_STD"):
        gpa_weights(5, 3, 0)


def test_gpa_aggregate_is_the_weighted_sum_of_epoch_states():
    torch.manual_seed(0)
    module = PromptGroup(2, 4, 2)
    weights = gpa_weights(3, 2, 1)
    gpa = GaussianPromptAggregation({"prompt_learner": module}, weights)
    states = []
    for epoch in range(3):
        with torch.no_grad():
            for p in module.tokens:
                p.add_(torch.randn_like(p))
        states.append([p.detach().clone() for p in module.tokens])
        gpa.accumulate(epoch)
        gpa.accumulate(epoch)  # a repeated call (e.g. after resume) does not count twice
    gpa.apply()
    for layer, p in enumerate(module.tokens):
        expected = sum(w * s[layer] for w, s in zip(weights, states))
        torch.testing.assert_close(p.detach(), expected)
    assert set(gpa.state_dict()) == {"prompt_learner__tokens__0", "prompt_learner__tokens__1", "epochs_done"}


# ---------------------------------------------------------------------------- configs
def _published_yamls() -> list[Path]:
    return sorted(p for d in METHOD_DIRS for p in (REPO / "configs/trainers" / d).glob("*.yaml"))


def test_every_published_yaml_merges_into_the_default_config():
    import trainers  # noqa: F401  (registers the config nodes)

    files = _published_yamls()
    assert {p.parent.name for p in files} == set(METHOD_DIRS)
    for path in files:
        cfg = get_cfg_default()
        cfg.merge_from_file(str(path))  # raises on unknown keys and on int/float/str type mismatches


def test_published_values_reach_the_config():
    import trainers  # noqa: F401

    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs/trainers/PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml"))
    node = cfg.TRAINER.PROMPTSRC
    assert (node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT, node.GPA_MEAN, node.GPA_STD) == (25, 10, 30, 30)
    assert (cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (50, 0.0025, 4)
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml"))
    assert (cfg.TRAINER.MAPLE.PROMPT_DEPTH, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == (3, 0.0026, 2)
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"))
    assert (cfg.TRAINER.COCOOP.N_CTX, cfg.TRAINER.COCOOP.CTX_INIT, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (
        4,
        "a photo of a",
        1,
    )
    defaults = get_cfg_default().TRAINER
    assert (defaults.COOP.N_CTX, defaults.COOP.CLASS_TOKEN_POSITION, defaults.COOP.CSC) == (16, "end", False)
    assert (defaults.IVLP.N_CTX_TEXT, defaults.IVLP.PROMPT_DEPTH_VISION) == (2, 9)
    # a float where the published default is an int is refused, as yacs does for the original repos
    with pytest.raises(ValueError):
        get_cfg_default().merge_from_list(["TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT", "25.0"])


def test_linear_probe_c_search_bisects_towards_the_val_peak():
    from trainers.linear_probe import search_c

    calls = []

    def score(c: float) -> float:  # a val accuracy peaked at C = 10^2.3
        calls.append(c)
        return 1.0 - abs(math.log10(c) - 2.3) / 10

    grid = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
    c, history = search_c(score, grid, num_step=8)
    assert calls[: len(grid)] == list(grid) and len(history) == len(grid) + 2 * 8
    assert abs(math.log10(c) - 2.3) < 0.1  # the grid alone would give 1e2
