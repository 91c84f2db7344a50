"""Exact short-context text towers: every place that encodes class prompts gives the 77-token result.

Each trainer is built twice from the same random CLIP and seed, once with MODEL.TEXT_TOWER.TRUNCATE off
(CLIP's full 77 positions, one pass) and once on (each pass cut to its prompts' max(EOT)+1, in chunks of
3 classes so the passes have different lengths); the prompts are then set to the same random values and
every text feature the trainer computes (training pass and its gradients, the evaluation cache, PromptSRC's
template-ensemble targets, the CasPL teacher's class features, zero-shot CLIP's classifier) must agree to
1e-5 in fp32. LinearProbeCLIP encodes no text (a logistic regression on image features).
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from caspl.bench.harness import build_trainer, load_trainers, method_cfg
from caspl.vlm.build import build_clip
from caspl.vlm.prompted import PromptedTextEncoder, TextTowerOptions, encode_texts

# Names of one to seven words, so the chunks of 3 have different longest prompts.
NAMES = [
    "dog",
    "sea_lion",
    "red panda",
    "great white shark swimming near the reef",
    "cat",
    "golden retriever puppy",
    "tulip",
]
TOL = 1e-5


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def build(name: str, tmp_path, truncate: bool, **opts):
    load_trainers()
    cfg, _ = method_cfg(name, "tiny-vit", "fp32", tmp_path, teacher="small-vit")
    cfg.MODEL.TEXT_TOWER.TRUNCATE = truncate
    cfg.MODEL.TEXT_TOWER.CHUNK = 3 if truncate else 0
    for key, value in opts.items():
        node = cfg
        *path, leaf = key.split(".")
        for part in path:
            node = node[part]
        node[leaf] = value
    torch.manual_seed(0)
    trainer, _ = build_trainer(cfg, NAMES, torch.device("cpu"))
    return trainer


def randomize_prompts(model: torch.nn.Module) -> None:
    """Random prompts (and meta-net/couplings), the same in every model built alike."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("prompt_learner.", "cascade.")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def text_encoders(model: torch.nn.Module) -> list[PromptedTextEncoder]:
    return [m for m in model.modules() if isinstance(m, PromptedTextEncoder)]


def assert_passes(model: torch.nn.Module, truncated: bool) -> None:
    """The comparison is not vacuous: truncated passes are shorter than 77 and differ in length."""
    for enc in text_encoders(model):
        lengths = [length for _, _, length in enc.passes]
        if truncated:
            assert max(lengths) < 40 and len(set(lengths)) > 1, lengths
        else:
            assert lengths == [77], lengths


TRAINERS = [
    ("CoOp", {}),
    ("CoOp", {"TRAINER.COOP.CLASS_TOKEN_POSITION": "front"}),
    ("CoOp", {"TRAINER.COOP.CLASS_TOKEN_POSITION": "middle"}),
    ("CoOp", {"TRAINER.COOP.CSC": True}),
    ("IVLP", {}),
    ("MaPLe", {}),
    ("PromptSRC", {}),
    ("CasPL_CoOp", {"TRAINER.COOP.CLASS_TOKEN_POSITION": "middle"}),
    ("CasPL_IVLP", {}),
    ("CasPL_MaPLe", {}),
    ("CasPL_PromptSRC", {}),
    ("CasPL_Boost", {}),
]


@pytest.mark.parametrize(
    "name, opts",
    TRAINERS,
    ids=[f"{n}-{'-'.join(str(v) for v in o.values()) or 'default'}" for n, o in TRAINERS],
)
def test_training_pass_and_eval_cache_equal_the_full_context(name, opts, tmp_path):
    full, short = build(name, tmp_path, False, **opts), build(name, tmp_path, True, **opts)
    assert_passes(full.model, truncated=False)
    assert_passes(short.model, truncated=True)
    grads = []
    for trainer in (full, short):
        randomize_prompts(trainer.model)
        trainer.model.zero_grad()
        features = trainer.model.encode_text()
        weights = torch.randn(features.shape, generator=torch.Generator().manual_seed(2))
        (features * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
        trainer.features = features.detach()
    assert max_diff(full.features, short.features) <= TOL
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for key in grads[0]:
        assert max_diff(grads[0][key], grads[1][key]) <= TOL, key
    # The evaluation text cache (CasPL_Boost: its own encoder when training and test classes differ).
    for trainer in (full, short):
        trainer.set_model_mode("eval")
        with torch.no_grad():
            trainer.before_evaluation()
    assert max_diff(full._text_features, short._text_features) <= TOL
    if hasattr(full.model, "reference_text_features"):  # PromptSRC's 60-template frozen targets
        assert max_diff(full.model.reference_text_features, short.model.reference_text_features) <= TOL
    if name == "CasPL_Boost":  # the teacher's class features (small-vit, its own text tower)
        assert max_diff(full.teacher.text_features, short.teacher.text_features) <= TOL


@pytest.mark.parametrize("name", ["CoCoOp", "CasPL_CoCoOp"])
def test_cocoop_per_image_prompts_equal_the_full_context(name, tmp_path):
    full, short = build(name, tmp_path, False), build(name, tmp_path, True)
    assert_passes(short.model, truncated=True)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    logits, grads = [], []
    for trainer in (full, short):
        randomize_prompts(trainer.model)
        trainer.model.zero_grad()
        out = trainer.model(images)
        out.square().sum().backward()
        logits.append(out.detach())
        grads.append(trainer.model.prompt_learner.ctx.tokens[0].grad.clone())
    # Logits carry CLIP's scale of 100: compare at the features' precision.
    assert max_diff(logits[0], logits[1]) <= 100 * TOL
    assert max_diff(grads[0], grads[1]) <= 100 * TOL * max(1.0, grads[0].abs().max().item())


def test_zero_shot_classifier_equals_clips_encode_text(tmp_path):
    import clip

    import trainers.zsclip  # noqa: F401 (registers ZeroshotCLIP)

    full, short = build("ZeroshotCLIP", tmp_path, False), build("ZeroshotCLIP", tmp_path, True)
    texts = [f"a photo of a {n.replace('_', ' ')}." for n in NAMES]
    with torch.no_grad():
        direct = F.normalize(full.clip_model.encode_text(clip.tokenize(texts)), dim=-1)
    assert max_diff(full.text_features, direct) <= TOL
    assert max_diff(short.text_features, direct) <= TOL


def test_encode_texts_equals_clip_and_the_options_change_the_passes():
    import clip

    model = build_clip("tiny-vit")
    texts = [n.replace("_", " ") + "." for n in NAMES] * 3
    with torch.no_grad():
        direct = model.encode_text(clip.tokenize(texts))
    for options in (TextTowerOptions(), TextTowerOptions(chunk=4), TextTowerOptions(False, 0, False)):
        assert max_diff(encode_texts(model, texts, options), direct) <= TOL
    enc = PromptedTextEncoder(model, texts, options=TextTowerOptions(chunk=4))
    assert [p[:2] for p in enc.passes] == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 21)]
    assert enc.token_embedding.shape[1] == max(p[2] for p in enc.passes) < 77
    # The chunks run over the classes sorted by prompt length: shorter passes than in the classes' order.
    assert enc.sorted and [p[2] for p in enc.passes] == sorted(p[2] for p in enc.passes)
    eot = enc.eot_index + 1
    in_order = sum(int(eot[a:b].max()) * (b - a) for a, b, _ in enc.passes)
    assert sum((b - a) * length for a, b, length in enc.passes) < in_order
    one_pass = PromptedTextEncoder(model, texts, options=TextTowerOptions(chunk=0))
    assert not one_pass.sorted  # nothing to gain from sorting one pass
    with pytest.raises(ValueError, match="CHUNK"):
        TextTowerOptions(chunk=-1)


def test_checkpointed_chunks_give_the_same_features_and_gradients():
    model = build_clip("tiny-vit")
    texts = [n.replace("_", " ") + "." for n in NAMES]
    tokens = [torch.randn(2, 64, generator=torch.Generator().manual_seed(4), requires_grad=True)]
    deep = [tokens[0]] + [copy.deepcopy(tokens[0]).detach().requires_grad_() for _ in range(3)]
    out = []
    for options in (TextTowerOptions(False, 0, False), TextTowerOptions(True, 2, True)):
        enc = PromptedTextEncoder(model, texts, [2], options=options)
        for t in deep:
            t.grad = None
        f = enc([deep])
        (f * torch.randn(f.shape, generator=torch.Generator().manual_seed(5))).sum().backward()
        out.append((f.detach(), [t.grad.clone() for t in deep]))
    assert max_diff(out[0][0], out[1][0]) <= TOL
    for a, b in zip(out[0][1], out[1][1]):
        assert max_diff(a, b) <= TOL


def test_with_options_gives_the_77_token_reference_of_a_truncated_encoder():
    """The benchmark's reference computation: same texts and prompts, CLIP's full context, one pass."""
    model = build_clip("tiny-vit")
    texts = [n.replace("_", " ") + "." for n in NAMES]
    short = PromptedTextEncoder(model, texts, [3], options=TextTowerOptions(chunk=3))
    reference = short.with_options(TextTowerOptions(False, 0, False))
    assert [p[2] for p in reference.passes] == [77] and reference.token_embedding.shape[1] == 77
    assert short.token_embedding.shape[1] < 40  # the original keeps its short buffers
    direct = PromptedTextEncoder(model, texts, [3], options=TextTowerOptions(False, 0, False))
    torch.testing.assert_close(reference.token_embedding, direct.token_embedding, rtol=0, atol=0)
    tokens = [[torch.randn(3, 64, generator=torch.Generator().manual_seed(6)) for _ in range(4)]]
    with torch.no_grad():
        assert max_diff(reference(tokens), direct(tokens)) == 0.0
        assert max_diff(short(tokens), direct(tokens)) <= TOL
