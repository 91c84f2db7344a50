"""CLIP weight resolution: local path, cache folder, OpenAI URL (file://), Hub cache; errors. No network."""

import hashlib
import warnings
from pathlib import Path

import clip
import pytest
import torch
from clip.model import CLIP, convert_weights
from safetensors.torch import save_file

from caspl.vlm import weights as W
from caspl.vlm.weights import (
    CLIPWeightsNotFound,
    StateDictShapeError,
    check_state_dict_shapes,
    load_clip_state_dict,
    load_state_dict_checked,
)


def _tiny_clip(seed: int = 0, vision_width: int = 64) -> CLIP:
    """A tiny random CLIP whose weights survive build_model's fp16 conversion exactly."""
    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=32, image_resolution=32, vision_layers=2, vision_width=vision_width, vision_patch_size=8,
        context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=2,
    )  # fmt: skip
    # build_model stores matmul weights in fp16: round them now so a rebuilt model is bit-identical
    convert_weights(model)
    return model.float().eval()


@pytest.fixture(scope="module")
def tiny() -> tuple[CLIP, dict[str, torch.Tensor]]:
    model = _tiny_clip()
    return model, {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, with every cache pointed into tmp_path."""
    monkeypatch.setenv("CASPL_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CASPL_CLIP_CACHE", str(tmp_path / "clip"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HOME", raising=False)


def _fake_hub(tmp_path: Path, repo: str, filename: str, write) -> Path:
    """Lay out a hub cache entry the way huggingface_hub does: refs/main -> snapshots/<commit>/file."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    write(snap / filename)
    return snap / filename


def _assert_same_outputs(model: CLIP, sd: dict[str, torch.Tensor]) -> None:
    rebuilt = clip.model.build_model(dict(sd)).float().eval()
    torch.manual_seed(1)
    images = torch.randn(3, 3, 32, 32)
    text = clip.tokenize(["a photo of a cat.", "a dog", "x"])
    with torch.no_grad():
        assert torch.equal(rebuilt.encode_image(images), model.encode_image(images))
        assert torch.equal(rebuilt.encode_text(text), model.encode_text(text))


def _quiet_load(*args, **kwargs):
    # the tiny model is not the named architecture: that warning is tested on its own
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_clip_state_dict(*args, **kwargs)


def test_hub_cache_open_clip_safetensors_builds_an_identical_model(tiny, tmp_path):
    model, sd = tiny
    _fake_hub(tmp_path, "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors",
              lambda p: save_file(sd, str(p)))  # fmt: skip
    with pytest.warns(UserWarning, match="architecture"):
        got = load_clip_state_dict("ViT-B/16")
    assert set(got) == set(sd)
    _assert_same_outputs(model, got)


def test_hub_falls_back_to_the_pytorch_bin(tiny, tmp_path):
    model, sd = tiny
    # open_clip checkpoints may carry the causal mask as a buffer: it must be dropped, not break the build
    _fake_hub(tmp_path, "timm/vit_base_patch32_clip_224.openai", "open_clip_pytorch_model.bin",
              lambda p: torch.save({**sd, "attn_mask": torch.zeros(77, 77)}, p))  # fmt: skip
    _assert_same_outputs(model, _quiet_load("ViT-B/32"))


@pytest.mark.parametrize("fmt", ["state_dict", "wrapped", "safetensors", "jit"])
def test_local_path_formats(tiny, tmp_path, fmt):
    model, sd = tiny
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "state_dict":
        torch.save(sd, path)
    elif fmt == "wrapped":  # a training checkpoint: {"state_dict": {"module.<key>": ...}}
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    elif fmt == "safetensors":
        save_file(sd, str(path))
    else:  # OpenAI ships TorchScript archives
        images, text = torch.randn(1, 3, 32, 32), clip.tokenize(["a"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(model, (images, text), check_trace=False), str(path))
    _assert_same_outputs(model, _quiet_load("ViT-B/16", path=str(path)))


def test_local_cache_folder_file_is_used_before_the_hub(tiny, tmp_path):
    model, sd = tiny
    other = _tiny_clip(seed=7)
    _fake_hub(tmp_path, "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors",
              lambda p: save_file(dict(other.state_dict()), str(p)))  # fmt: skip
    (tmp_path / "clip").mkdir()
    torch.save(sd, tmp_path / "clip" / "ViT-B-16.pt")  # OpenAI's file name in $CASPL_CLIP_CACHE
    _assert_same_outputs(model, _quiet_load("ViT-B/16"))
    # an explicit cache_dir wins over the environment variable
    (tmp_path / "mine").mkdir()
    torch.save(dict(other.state_dict()), tmp_path / "mine" / "ViT-B-16.pt")
    _assert_same_outputs(other, _quiet_load("ViT-B/16", cache_dir=str(tmp_path / "mine")))


def test_corrupt_cache_file_is_reported_and_skipped(tiny, tmp_path):
    model, sd = tiny
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "ViT-B-16.pt").write_bytes(b"truncated download")
    with pytest.raises(CLIPWeightsNotFound, match=r"local cache file .*ViT-B-16\.pt: \w+"):
        _quiet_load("ViT-B/16")
    _fake_hub(tmp_path, "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors",
              lambda p: save_file(sd, str(p)))  # fmt: skip
    _assert_same_outputs(model, _quiet_load("ViT-B/16"))


def test_openai_url_download_verifies_sha256(tiny, tmp_path, monkeypatch):
    model, sd = tiny
    blob = tmp_path / "served.pt"
    torch.save(sd, blob)
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    served = tmp_path / "server" / sha
    served.mkdir(parents=True)
    blob.rename(served / "ViT-B-16.pt")
    src = W.CLIP_SOURCES["ViT-B/16"]
    monkeypatch.setitem(
        W.CLIP_SOURCES, "ViT-B/16", W.ClipSource(f"file://{served}/ViT-B-16.pt", src.hf_repo, src.arch)
    )
    monkeypatch.setattr(W, "_from_hub", lambda *a: pytest.fail("the hub must not be asked"))
    monkeypatch.delenv("CASPL_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    _assert_same_outputs(model, _quiet_load("ViT-B/16"))
    assert (tmp_path / "clip" / "ViT-B-16.pt").is_file()  # stored in the cache for next time

    # a checksum mismatch leaves nothing behind, not even a partial file
    target = tmp_path / "other" / "x.pt"
    with pytest.raises(ValueError, match="sha256 mismatch"):
        W._download(f"file://{served}/ViT-B-16.pt", target, "0" * 64)
    assert list(target.parent.iterdir()) == []


def test_unreachable_hub_reads_its_local_cache_without_retries(tiny, tmp_path, monkeypatch):
    model, sd = tiny
    _fake_hub(tmp_path, "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors",
              lambda p: save_file(sd, str(p)))  # fmt: skip
    src = W.CLIP_SOURCES["ViT-B/16"]
    missing = f"file://{tmp_path}/no-server/{src.sha256}/ViT-B-16.pt"  # the OpenAI step fails fast
    monkeypatch.setitem(W.CLIP_SOURCES, "ViT-B/16", W.ClipSource(missing, src.hf_repo, src.arch))
    monkeypatch.setattr(W, "_hub_reachable", lambda: False)
    monkeypatch.delenv("CASPL_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    _assert_same_outputs(model, _quiet_load("ViT-B/16"))


def test_all_places_failing_gives_one_error_listing_each(tmp_path):
    with pytest.raises(CLIPWeightsNotFound) as err:
        load_clip_state_dict("ViT-L/14@336px")
    msg = str(err.value)
    cache_file = str(tmp_path / "clip" / "ViT-L-14-336px.pt")
    assert msg.count(cache_file) == 2  # tried, and named as the place to put the file
    assert "1. local cache file" in msg
    assert (
        "2. OpenAI URL https://openaipublic.azureedge.net/clip/models/" in msg and "skipped (offline" in msg
    )
    assert "3. Hugging Face Hub timm/vit_large_patch14_clip_336.openai / open_clip_model.safetensors" in msg
    assert "4. Hugging Face Hub timm/vit_large_patch14_clip_336.openai / open_clip_pytorch_model.bin" in msg
    assert str(tmp_path / "hub") in msg and "not in the local hub cache" in msg
    assert "MODEL.BACKBONE.PATH" in msg and "hf download" in msg


def test_unknown_name_lists_known_ones():
    with pytest.raises(CLIPWeightsNotFound) as err:
        load_clip_state_dict("ViT-H/14")
    assert "ViT-H/14" in str(err.value)
    assert all(n in str(err.value) for n in ["RN50", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"])


def test_bad_explicit_path_is_named(tmp_path):
    with pytest.raises(CLIPWeightsNotFound, match=r"MODEL\.BACKBONE\.PATH=.*nope\.pt.*file not found"):
        load_clip_state_dict("ViT-B/16", path=str(tmp_path / "nope.pt"))
    torch.save({"prompt": torch.zeros(4, 8)}, tmp_path / "prompts.pt")
    with pytest.raises(CLIPWeightsNotFound, match=r"prompts\.pt.*missing.*token_embedding\.weight"):
        load_clip_state_dict("ViT-B/16", path=str(tmp_path / "prompts.pt"))


def test_wrong_shapes_name_the_tensor_and_both_shapes(tiny):
    model, _ = tiny
    wide = _tiny_clip(vision_width=128).state_dict()
    with pytest.raises(StateDictShapeError) as err:
        check_state_dict_shapes(model, wide, source="wide.pt")
    msg = str(err.value)
    assert "visual.conv1.weight: (128, 3, 8, 8) in wide.pt, model expects (64, 3, 8, 8)" in msg
    assert "ln_final.weight" not in msg  # the text tower matches and is not blamed
    with pytest.raises(StateDictShapeError, match="visual.class_embedding"):
        load_state_dict_checked(model, wide, source="wide.pt")
    with pytest.raises(KeyError, match="missing.*logit_scale"):
        load_state_dict_checked(model, {k: v for k, v in model.state_dict().items() if k != "logit_scale"})
