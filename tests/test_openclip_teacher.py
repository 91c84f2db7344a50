"""open_clip teachers for phase 1: preprocessing, logits, exact-context text, weight resolution, training.

Two tiny random-weight open_clip models of two families with different preprocessing:
- "vit": an OpenCLIP ViT-B-32-shaped model (causal text tower, EOT pooling, OpenAI mean / std, bicubic,
  48 px), registered with open_clip.add_model_config, weights `none` (random).
- "sigmoid": a SigLIP-shaped model (logit bias, non-causal text tower with last-token pooling, context 64,
  mean / std 0.5, bilinear "squash" resize, 40 px), handed over as an open_clip folder (TEACHER.PATH).
  (A real SigLIP also has a SentencePiece tokenizer from the Hub; this one keeps open_clip's BPE.)
"""

import json
from pathlib import Path
from types import SimpleNamespace

import open_clip  # the `openclip` extra, part of the `test` extra: these tests run in CI, never skipped
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as TF

from caspl.vlm.teacher import (
    ImageAdapter,
    OpenCLIPWeightsNotFound,
    Preprocess,
    build_open_clip_teacher,
    causal_text_tower,
    encode_text_exact_context,
    parse_open_clip_name,
    resolve_open_clip,
)
from caspl.vlm.templates import fill

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSNAMES = ["golden retriever", "tabby cat", "airliner", "red_fox", "sunflower"]
TEMPLATE = "a photo of a {}."

VIT_NAME = "caspl-test-tiny-openclip-vit"
VIT_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 48, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
SIGMOID_CFG = {
    "embed_dim": 32,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {
        "image_size": 40,
        "layers": 2,
        "width": 64,
        "patch_size": 8,
        "head_width": 32,
        "pool_type": "avg",
    },
    "text_cfg": {
        "context_length": 64,
        "vocab_size": 49408,
        "width": 64,
        "heads": 2,
        "layers": 2,
        "no_causal_mask": True,
        "proj_bias": True,
        "pool_type": "last",
        "norm_kwargs": {"eps": 1e-6},
    },
}
SIGMOID_PREPROCESS = {
    "size": 40,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bilinear",
    "resize_mode": "squash",
}


def write_open_clip_folder(folder: Path, model_cfg: dict, preprocess_cfg: dict, seed: int = 0) -> Path:
    """An open_clip folder (open_clip_config.json + safetensors) with random weights, a random logit bias."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{_config_only(folder, model_cfg, preprocess_cfg)}")
    with torch.no_grad():
        model.logit_bias.copy_(-10.0 + torch.randn(()))  # not a round number
        model.logit_scale.copy_(torch.log(torch.tensor(20.0)) + 0.1 * torch.randn(()))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    return folder


def _config_only(folder: Path, model_cfg: dict, preprocess_cfg: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def vit_registered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oc_configs")
    (folder / f"{VIT_NAME}.json").write_text(json.dumps(VIT_CFG))
    open_clip.add_model_config(folder / f"{VIT_NAME}.json")
    return VIT_NAME


@pytest.fixture(scope="module")
def sigmoid_folder(tmp_path_factory):
    return write_open_clip_folder(tmp_path_factory.mktemp("sigmoid_teacher"), SIGMOID_CFG, SIGMOID_PREPROCESS)


def teacher_cfg(name: str, pretrained: str = "", path: str = "", logits: str = "scaled") -> SimpleNamespace:
    return SimpleNamespace(NAME=name, PRETRAINED=pretrained, PATH=path, PREC="fp32", LOGITS=logits)


@pytest.fixture(scope="module")
def families(vit_registered, sigmoid_folder):
    """family -> the TEACHER node that builds it."""
    return {
        "vit": teacher_cfg(f"open_clip:{vit_registered}:none"),
        "sigmoid": teacher_cfg("open_clip:caspl-test-tiny-sigmoid", path=str(sigmoid_folder)),
    }


def build(cfg, student: Preprocess, templates=(TEMPLATE,), seed: int = 0):
    torch.manual_seed(seed)
    return build_open_clip_teacher(cfg, CLASSNAMES, list(templates), student, torch.device("cpu"))


def smooth_images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    """RGB images with structure at several scales (low-res noise upsampled + fine noise), 8-bit."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, 5, 5, generator=g), size=(size, size), mode="bilinear")
    pixels = (0.8 * coarse + 0.2 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)
    return [TF.to_pil_image(p) for p in pixels]


def student_batch(images: list[Image.Image], student: Preprocess) -> torch.Tensor:
    """What the student's data pipeline makes of the images: ToTensor + its own normalisation."""
    return torch.stack([TF.normalize(TF.to_tensor(im), student.mean, student.std) for im in images])


def open_clip_eval_transform(model):
    """open_clip's own eval preprocessing of PIL images for `model` (its preprocess cfg)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    return image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)


@torch.no_grad()
def open_clip_reference_logits(model, tokenizer, images, bias: bool = True) -> torch.Tensor:
    """open_clip's own pipeline: its eval transform on the PIL images, encode_image / encode_text (full context)."""
    transform = open_clip_eval_transform(model)
    x = torch.stack([transform(im) for im in images])
    img = model.encode_image(x, normalize=True)
    txt = model.encode_text(tokenizer(fill(TEMPLATE, CLASSNAMES)), normalize=True)
    logits = model.logit_scale.exp() * img @ txt.t()
    if bias and model.logit_bias is not None:
        logits = logits + model.logit_bias
    return logits


# ---------------------------------------------------------------------------- preprocessing
def test_renormalisation_from_the_students_input_is_exact():
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(4, 3, 32, 32, generator=g)
    student = Preprocess((32, 32), IMAGENET_MEAN, IMAGENET_STD)
    teacher = Preprocess((32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    mean = lambda m: torch.tensor(m).view(1, 3, 1, 1)  # noqa: E731
    normalised = (pixels - mean(IMAGENET_MEAN)) / mean(IMAGENET_STD)
    out = ImageAdapter(student, teacher)(normalised)
    # (pixels - 0.5) / 0.5 from the student's tensor: float32 rounding only
    torch.testing.assert_close(out, (pixels - 0.5) / 0.5, rtol=0, atol=2e-6)
    # With a resize, the same holds around the resize itself (bilinear, antialiased, on the pixels).
    teacher40 = Preprocess((40, 40), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", "squash")
    resized = F.interpolate(pixels, size=(40, 40), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(
        ImageAdapter(student, teacher40)(normalised), (resized - 0.5) / 0.5, rtol=0, atol=2e-6
    )


@pytest.mark.parametrize("family", ["vit", "sigmoid"])
def test_resize_matches_open_clips_pil_transform_up_to_8bit_rounding(families, family):
    """Student 32 px -> teacher 48 (bicubic) / 40 (bilinear): our tensor resize vs open_clip's PIL resize."""
    teacher = build(families[family], Preprocess((32, 32), IMAGENET_MEAN, IMAGENET_STD))
    images = smooth_images(6, 32)
    ours = teacher.adapter(student_batch(images, teacher.adapter.student))
    transform = open_clip_eval_transform(teacher.model)
    theirs = torch.stack([transform(im) for im in images])
    assert ours.shape == theirs.shape == (6, 3, *teacher.preprocess.size)
    std = torch.tensor(teacher.preprocess.std).view(1, 3, 1, 1)
    pixel_gap = ((ours - theirs) * std).abs()  # in [0, 1] pixel units
    # PIL rounds the resized image to 8 bits (<= 0.5/255) and its integer kernels add a little more.
    assert pixel_gap.max() < 1.5 / 255, pixel_gap.max()  # measured: ~1.05 / 255
    # A wrong interpolation / normalisation would be far off (several / 255 or more): the check has teeth.
    wrong = F.interpolate(
        student_batch(images, Preprocess((32, 32), (0.0,) * 3, (1.0,) * 3)),
        size=theirs.shape[-2:],
        mode="nearest",
    )
    assert (
        (wrong - (theirs * std + torch.tensor(teacher.preprocess.mean).view(1, 3, 1, 1))).abs().max()
    ) > 10 / 255


# ---------------------------------------------------------------------------- logits
@pytest.mark.parametrize("family", ["vit", "sigmoid"])
def test_teacher_logits_equal_open_clips_own_pipeline(families, family):
    """Same PIL images: open_clip's transform + encode_image/encode_text vs our tensor path from the student's
    batch (student at the teacher's size, normalised with ImageNet's mean / std, so the renormalisation works)."""
    size = {"vit": 48, "sigmoid": 40}[family]
    student = Preprocess((size, size), IMAGENET_MEAN, IMAGENET_STD)
    teacher = build(families[family], student)
    images = smooth_images(5, size, seed=1)
    expected = open_clip_reference_logits(teacher.model, teacher.tokenizer, images)
    got = teacher.logits(student_batch(images, student))
    assert got.shape == (5, len(CLASSNAMES))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert expected.std(dim=-1).min() > 1e-3  # classes differ: the comparison is not between constants


def test_sigmoid_teacher_logits_are_its_per_class_probabilities(families):
    student = Preprocess((40, 40), IMAGENET_MEAN, IMAGENET_STD)
    images = smooth_images(4, 40, seed=2)
    batch = student_batch(images, student)
    scaled = build(families["sigmoid"], student)
    sigmoid = build(replace_logits(families["sigmoid"], "sigmoid"), student)
    with torch.no_grad():  # a bias that puts some classes above 0, where the sigmoid saturates
        sigmoid.model.logit_bias.add_(9.0)
    z = open_clip_reference_logits(sigmoid.model, sigmoid.tokenizer, images)  # scale * cos + bias
    assert (z > 0).any() and (z < 0).any()
    # sigmoid: softmax over log sigmoid(z) = the teacher's sigmoid probabilities, renormalised
    p = torch.sigmoid(z)
    torch.testing.assert_close(sigmoid.logits(batch).softmax(-1), p / p.sum(-1, keepdim=True))
    assert (p / p.sum(-1, keepdim=True) - z.softmax(-1)).abs().max() > 1e-2  # not the contrastive reading
    # scaled: the bias is one constant per image, which the KL's softmax cancels
    assert scaled.model.logit_bias.item() != sigmoid.model.logit_bias.item()
    torch.testing.assert_close(scaled.logits(batch).softmax(-1), z.softmax(-1))


def replace_logits(cfg: SimpleNamespace, logits: str) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(cfg), "LOGITS": logits})


def test_template_ensemble_averages_unit_features(families):
    student = Preprocess((48, 48), IMAGENET_MEAN, IMAGENET_STD)
    templates = ["a photo of a {}.", "a drawing of a {}.", "{}, a thing."]
    teacher = build(families["vit"], student, templates)
    with torch.no_grad():
        per = [
            teacher.model.encode_text(teacher.tokenizer(fill(t, CLASSNAMES)), normalize=True)
            for t in templates
        ]
    torch.testing.assert_close(teacher.text_features, F.normalize(torch.stack(per).mean(0), dim=-1))


# ---------------------------------------------------------------------------- text tower
def test_causal_text_tower_runs_on_the_exact_context(families):
    student = Preprocess((48, 48), IMAGENET_MEAN, IMAGENET_STD)
    vit = build(families["vit"], student).model
    sig = build(families["sigmoid"], Preprocess((40, 40), IMAGENET_MEAN, IMAGENET_STD)).model
    assert causal_text_tower(vit) and not causal_text_tower(sig)  # SigLIP-like: bidirectional, last token
    tokens = open_clip.get_tokenizer(VIT_NAME)(fill(TEMPLATE, CLASSNAMES))
    lengths = []
    hook = vit.transformer.register_forward_pre_hook(
        lambda m, args, kw: lengths.append(args[0].shape[1]), with_kwargs=True
    )
    with torch.no_grad():
        truncated = encode_text_exact_context(vit, tokens)
        hook.remove()
        full = vit.encode_text(tokens)
    assert lengths == [int(tokens.argmax(-1).max()) + 1] and lengths[0] < 77
    torch.testing.assert_close(truncated, full, rtol=1e-5, atol=1e-5)
    # The same for a causal tower of the custom-text layout (EVA02-CLIP's: model.text, a TextTransformer).
    torch.manual_seed(0)
    custom = open_clip.model.CustomTextCLIP(
        VIT_CFG["embed_dim"], VIT_CFG["vision_cfg"], VIT_CFG["text_cfg"]
    ).eval()
    assert causal_text_tower(custom)
    with torch.no_grad():
        torch.testing.assert_close(
            encode_text_exact_context(custom, tokens), custom.encode_text(tokens), rtol=1e-5, atol=1e-5
        )


# ---------------------------------------------------------------------------- weight resolution
def test_teacher_names_parse():
    assert parse_open_clip_name("open_clip:ViT-H-14:laion2b_s32b_b79k") == ("ViT-H-14", "laion2b_s32b_b79k")
    assert parse_open_clip_name("open_clip:ViT-H-14", "laion2b_s32b_b79k") == (
        "ViT-H-14",
        "laion2b_s32b_b79k",
    )
    assert parse_open_clip_name("open_clip:hf-hub:timm/ViT-B-16-SigLIP") == (
        "hf-hub:timm/ViT-B-16-SigLIP",
        "",
    )
    with pytest.raises(ValueError, match="PRETRAINED"):
        parse_open_clip_name("open_clip:ViT-H-14:laion2b_s32b_b79k", "dfn5b")


def test_offline_without_weights_lists_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("CASPL_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("CASPL_CLIP_CACHE", str(tmp_path / "clip"))
    with pytest.raises(OpenCLIPWeightsNotFound) as err:
        resolve_open_clip("ViT-B-32", "openai")
    msg = str(err.value)
    assert str(tmp_path / "clip" / "ViT-B-32.pt") in msg  # the cache file
    assert "timm/vit_base_patch32_clip_224.openai" in msg and str(tmp_path / "hub") in msg  # the hub cache
    assert "offline" in msg and "TEACHER.PATH" in msg
    with pytest.raises(ValueError, match="laion2b_s34b_b79k"):  # an unknown tag lists the known ones
        resolve_open_clip("ViT-B-32", "no-such-tag")
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Q-99'"):
        resolve_open_clip("ViT-Q-99", "laion2b_s34b_b79k")


def test_cache_file_comes_before_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("CASPL_OFFLINE", "1")
    monkeypatch.setenv("CASPL_CLIP_CACHE", str(tmp_path))
    (tmp_path / "ViT-B-32.pt").write_bytes(b"weights")
    source = resolve_open_clip("ViT-B-32", "openai")
    assert source.weights == str(tmp_path / "ViT-B-32.pt")
    assert source.quick_gelu and source.preprocess["interpolation"] == "bicubic"  # the tag's settings


def test_hf_hub_teacher_reads_the_hub_cache_offline(tmp_path, monkeypatch, sigmoid_folder):
    """PRETRAINED hf-hub:<repo> with a pre-filled hub cache and no network: same teacher as the folder."""
    hub = tmp_path / "hub"
    snapshot = hub / "models--caspl-test--tiny-sigmoid" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (hub / "models--caspl-test--tiny-sigmoid" / "refs").mkdir()
    (hub / "models--caspl-test--tiny-sigmoid" / "refs" / "main").write_text("0" * 40)
    for f in ("open_clip_config.json", "open_clip_model.safetensors"):
        (snapshot / f).write_bytes((sigmoid_folder / f).read_bytes())
    monkeypatch.setenv("CASPL_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    student = Preprocess((32, 32), IMAGENET_MEAN, IMAGENET_STD)
    from_hub = build(
        teacher_cfg("open_clip:tiny-sigmoid", pretrained="hf-hub:caspl-test/tiny-sigmoid"), student
    )
    from_folder = build(teacher_cfg("open_clip:tiny-sigmoid", path=str(sigmoid_folder)), student)
    assert from_hub.preprocess == from_folder.preprocess and from_hub.preprocess.mean == (0.5, 0.5, 0.5)
    batch = student_batch(smooth_images(3, 32), student)
    torch.testing.assert_close(from_hub.logits(batch), from_folder.logits(batch))
    with pytest.raises(OpenCLIPWeightsNotFound, match="caspl-test/other"):
        build(teacher_cfg("open_clip:tiny-sigmoid", pretrained="hf-hub:caspl-test/other"), student)


# ---------------------------------------------------------------------------- phase 1
@pytest.mark.slow  # ~10 s on a loaded CPU: one short phase-1 run
def test_phase1_trains_with_an_open_clip_teacher(run_train, tmp_path, sigmoid_folder):
    from caspl.utils.checkpoint import safe_load

    res = run_train(
        tmp_path / "boost",
        "CasPL_Boost",
        "TRAINER.CASPL.PREC", "fp32",
        "TRAINER.CASPL.TEACHER.NAME", "open_clip:caspl-test-tiny-sigmoid",
        "TRAINER.CASPL.TEACHER.PATH", str(sigmoid_folder),
        "TRAINER.CASPL.TEACHER.LOGITS", "sigmoid",
        "INPUT.TRANSFORMS", "['random_flip', 'normalize']",
        "TRAINER.CASPL.BOOST.N_CTX_TEXT", "2", "TRAINER.CASPL.BOOST.N_CTX_VISION", "2",
        "TRAINER.CASPL.BOOST.PROMPT_DEPTH_TEXT", "2", "TRAINER.CASPL.BOOST.PROMPT_DEPTH_VISION", "2",
        "TRAINER.CASPL.BOOST.CTX_INIT", "a photo",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.5", "OPTIM.MAX_EPOCH", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "32",
    )  # fmt: skip
    before, after = res["kd_heldout_before"], res["kd_heldout_after"]
    print(f"held-out KL to the open_clip teacher: {before:.4f} -> {after:.4f}")
    assert after < 0.9 * before
    teacher = safe_load(tmp_path / "boost" / "boost_prompts.pt")["meta"]["teacher"]
    assert teacher["library"] == "open_clip" and teacher["name"] == "open_clip:caspl-test-tiny-sigmoid"
    assert teacher["preprocess"] == {
        "size": [40, 40], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "resize_mode": "squash",
    }  # fmt: skip
    assert teacher["logits"] == "sigmoid" and teacher["logit_bias"] and not teacher["causal_text"]
    assert res["teacher"] == {
        k: v for k, v in teacher.items() if k not in ("template", "class_text")
    }  # results.json too: tools/tables.py --teachers groups phase-1 runs by it
