"""The frozen senior teacher of CasPL's phase 1, behind one small interface.

A `Teacher` holds its class text features (computed once) and turns the *student's* augmented batch into
its own input on the tensor: undo the student's normalisation, resize to the teacher's input size with the
teacher's interpolation, normalise with the teacher's mean / std. No image is decoded twice.

Two implementations:
- OpenAI CLIP (`TRAINER.CASPL.TEACHER.NAME ViT-L/14`, ...): `FrozenTeacher` in trainers/caspl.py.
- open_clip (`TRAINER.CASPL.TEACHER.NAME open_clip:<model>[:<tag>]` + `TEACHER.PRETRAINED <tag | hf-hub:id |
  none>`): `OpenCLIPTeacher` here, built by the `open_clip_torch` library (`pip install .[openclip]`) with its
  own preprocessing, tokenizer, context length, logit scale and (SigLIP) logit bias. open_clip is imported
  only when such a teacher is asked for.

Logits for the KL (TEACHER.LOGITS):
- "scaled" (default): logit_scale * cos(image, class) (+ logit_bias). The KL takes a softmax over classes,
  so a bias (SigLIP's) is one constant per image and cancels: this is the contrastive reading.
- "sigmoid": log(sigmoid(logit_scale * cos + logit_bias)). Under the KL's softmax this gives each class
  sigmoid(z_c) / sum_j sigmoid(z_j): the sigmoid-trained teacher's own per-class probabilities, renormalised
  to a distribution. Meant for SigLIP-style teachers; for a teacher without a bias it uses bias 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

OPEN_CLIP_PREFIX = "open_clip:"
LOGIT_MODES = ("scaled", "sigmoid")
TEACHER_PRECISIONS = ("auto", "fp32", "fp16", "bf16")
TEXT_CHUNK = 512  # class prompts per teacher text-tower pass (bounds memory on 1000-class sets)
# OpenAI CLIP's normalisation (also open_clip's default when a pretrained tag names none)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocess:
    """How a model wants its images: side lengths, per-channel mean / std, resize interpolation and mode."""

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"  # bicubic | bilinear | nearest
    resize_mode: str = "shortest"  # shortest (resize + center crop) | squash (resize both sides)

    def as_dict(self) -> dict[str, Any]:
        """Plain types only: stored in boost_prompts.pt metadata (weights_only loads)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def student_preprocess(cfg: Any) -> Preprocess:
    """The student's input as the data pipeline makes it: INPUT.SIZE, normalised with PIXEL_MEAN / STD."""
    if cfg.INPUT.NO_TRANSFORM or "instance_norm" in cfg.INPUT.TRANSFORMS:
        raise ValueError(
            "CasPL_Boost maps the student's images to the teacher's input by undoing INPUT.PIXEL_MEAN / "
            "PIXEL_STD; INPUT.NO_TRANSFORM and instance_norm leave no fixed normalisation to undo"
        )
    normalised = "normalize" in cfg.INPUT.TRANSFORMS
    return Preprocess(
        size=tuple(int(s) for s in cfg.INPUT.SIZE),
        mean=tuple(float(m) for m in cfg.INPUT.PIXEL_MEAN) if normalised else (0.0, 0.0, 0.0),
        std=tuple(float(s) for s in cfg.INPUT.PIXEL_STD) if normalised else (1.0, 1.0, 1.0),
        interpolation=cfg.INPUT.INTERPOLATION,
    )


class ImageAdapter(nn.Module):
    """Student-normalised images -> the teacher's input: unnormalise, resize, renormalise (all on tensors).

    With equal sizes the result is (pixels - teacher_mean) / teacher_std of the student's own pixels, up to
    float32 rounding. Resizing uses antialiased interpolation (torch's `antialias=True`, PIL's kernels), so
    it matches the teacher's PIL pipeline up to PIL's 8-bit rounding of the resized image.
    """

    def __init__(self, student: Preprocess, teacher: Preprocess) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher
        for name, values in (
            ("student_mean", student.mean),
            ("student_std", student.std),
            ("teacher_mean", teacher.mean),
            ("teacher_std", teacher.std),
        ):
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1), False)

    def resize(self, pixels: Tensor) -> Tensor:
        """Pixels in [0, 1] (B, 3, H, W) at the teacher's size, as its resize mode does it."""
        th, tw = self.teacher.size
        h, w = pixels.shape[-2:]
        if (h, w) == (th, tw):
            return pixels
        mode = self.teacher.interpolation
        kwargs = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
        if self.teacher.resize_mode == "squash" or (h == w and th == tw):
            return F.interpolate(pixels, size=(th, tw), mode=mode, **kwargs)
        if self.teacher.resize_mode != "shortest":
            raise ValueError(
                f"teacher resize_mode {self.teacher.resize_mode!r} on non-square student images is not "
                "supported (use a square INPUT.SIZE)"
            )
        scale = max(th / h, tw / w)  # shorter side to the target, then a center crop
        rh, rw = max(th, round(h * scale)), max(tw, round(w * scale))
        pixels = F.interpolate(pixels, size=(rh, rw), mode=mode, **kwargs)
        top, left = (rh - th) // 2, (rw - tw) // 2
        return pixels[..., top : top + th, left : left + tw]

    def forward(self, images: Tensor) -> Tensor:
        pixels = images.float() * self.student_std + self.student_mean
        resized = self.resize(pixels)
        if resized is not pixels and self.teacher.interpolation == "bicubic":
            resized = resized.clamp(0.0, 1.0)  # bicubic overshoots; PIL's 8-bit images clip the same way
        return (resized - self.teacher_mean) / self.teacher_std


# ---------------------------------------------------------------------------- the interface
def template_list(template: str, dataset_template: str) -> list[str]:
    """TEACHER.TEMPLATE as templates: "dataset" -> the dataset's template, "ensemble" -> ImageNet's 60."""
    if template == "ensemble":
        from caspl.vlm.imagenet_templates import IMAGENET_TEMPLATES  # noqa: PLC0415

        return list(IMAGENET_TEMPLATES)
    return [dataset_template if template == "dataset" else template]


def ensemble_text_features(
    encode: Callable[[list[str]], Tensor], classnames: list[str], templates: list[str]
) -> Tensor:
    """Unit class features: each template's features normalised, averaged over templates, renormalised."""
    from caspl.vlm.templates import fill  # noqa: PLC0415

    feats = [F.normalize(encode(fill(t, classnames)).float(), dim=-1) for t in templates]
    return F.normalize(torch.stack(feats).mean(0), dim=-1)  # CLIP's template ensembling


class Teacher(nn.Module):
    """A frozen teacher: `logits(student_images)` -> (B, n_classes) logits for the KL (see module doc).

    Implementations set `adapter` (ImageAdapter), the buffer `text_features` (unit rows, one per class) and
    define `encode_image`, `logit_scale_and_bias` and `metadata`.
    """

    adapter: ImageAdapter
    text_features: Tensor
    logit_mode: str = "scaled"

    def encode_image(self, images: Tensor) -> Tensor:
        """Image features of teacher-preprocessed images (not normalised)."""
        raise NotImplementedError

    def logit_scale_and_bias(self) -> tuple[Tensor, Tensor | None]:
        """exp(logit_scale) and the logit bias (None for contrastive teachers), as float32 tensors."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """What boost_prompts.pt records about the teacher: library, model, tag, preprocessing."""
        raise NotImplementedError

    @property
    def input_dtype(self) -> torch.dtype:
        return self.text_features.dtype

    @torch.inference_mode()
    def logits(self, student_images: Tensor) -> Tensor:
        """Teacher logits for the student's (normalised, augmented) batch."""
        images = self.adapter(student_images).to(self.input_dtype)
        feats = F.normalize(self.encode_image(images).float(), dim=-1)
        scale, bias = self.logit_scale_and_bias()
        logits = scale * feats @ self.text_features.float().t()
        if self.logit_mode == "sigmoid":
            return F.logsigmoid(logits + (bias if bias is not None else 0.0))
        return logits if bias is None else logits + bias

    def forward(self, student_images: Tensor) -> Tensor:
        return self.logits(student_images)


def check_logit_mode(mode: str) -> str:
    """TEACHER.LOGITS, checked: scaled | sigmoid (see the module doc)."""
    if mode not in LOGIT_MODES:
        raise ValueError(
            f"TRAINER.CASPL.TEACHER.LOGITS must be one of {', '.join(LOGIT_MODES)}, got {mode!r}"
        )
    return mode


def teacher_dtype(prec: str, device: torch.device) -> torch.dtype:
    """TEACHER.PREC: auto = fp16 on a GPU (OpenAI's habit), fp32 elsewhere; fp16 on CPU falls back to fp32."""
    if prec not in TEACHER_PRECISIONS:
        raise ValueError(
            f"TRAINER.CASPL.TEACHER.PREC must be one of {', '.join(TEACHER_PRECISIONS)}, got {prec!r}"
        )
    if prec == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if prec == "fp16" and device.type != "cuda":
        print(f"Note: TEACHER.PREC fp16 needs a GPU; the teacher runs in fp32 on {device.type}")
        return torch.float32
    return _DTYPES[prec]


# ---------------------------------------------------------------------------- open_clip
def is_open_clip_name(name: str) -> bool:
    """True for teacher names served by open_clip (`open_clip:<model>[:<tag>]`)."""
    return name.startswith(OPEN_CLIP_PREFIX)


def parse_open_clip_name(name: str, pretrained: str = "") -> tuple[str, str]:
    """(`model`, `pretrained`) from `open_clip:<model>[:<tag>]` and TEACHER.PRETRAINED (one tag, not two).

    `open_clip:hf-hub:<repo>` names a Hub repository holding config and weights (no tag).
    """
    if not is_open_clip_name(name):
        raise ValueError(f"not an open_clip teacher name: {name!r} (expected open_clip:<model>[:<tag>])")
    rest = name[len(OPEN_CLIP_PREFIX) :]
    if rest.startswith("hf-hub:"):
        model, tag = rest, ""
    else:
        model, _, tag = rest.partition(":")
    if not model:
        raise ValueError(
            f"TRAINER.CASPL.TEACHER.NAME {name!r} names no model (expected open_clip:<model>[:<tag>])"
        )
    if tag and pretrained and tag != pretrained:
        raise ValueError(
            f"TRAINER.CASPL.TEACHER.NAME {name!r} names the tag {tag!r} but TEACHER.PRETRAINED is {pretrained!r}"
        )
    return model, tag or pretrained


class OpenCLIPWeightsNotFound(RuntimeError):
    """No place yielded weights for an open_clip teacher; the message lists each place and why it failed."""


def _import_open_clip() -> Any:
    try:
        import open_clip  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(
            "open_clip teachers need the open_clip_torch library: pip install -e '.[openclip]'"
        ) from e
    return open_clip


def _hub_files(repo: str, filenames: Sequence[str], tried: list[str]) -> Path | None:
    """The local folder holding `filenames` of Hub repo `repo` (hub cache first; network unless offline)."""
    from caspl.vlm.weights import _from_hub, _hub_reachable, _reason, hf_cache_dir, is_offline  # noqa: PLC0415

    hub = hf_cache_dir()
    modes = [(True, f"local hub cache {hub}")]
    if is_offline():
        modes.append((None, "Hub download skipped (offline: CASPL_OFFLINE / HF_HUB_OFFLINE is set)"))
    elif not _hub_reachable():
        modes.append((None, "Hub download skipped (hub unreachable)"))
    else:
        modes.append((False, f"Hugging Face Hub download into {hub}"))
    for local_only, where in modes:
        if local_only is None:
            tried.append(f"hf-hub:{repo}: {where}")
            continue
        try:
            paths = [_from_hub(repo, f, local_only) for f in filenames]
        except Exception as e:
            tried.append(f"hf-hub:{repo} / {', '.join(filenames)} ({where}): {_reason(e)}")
            continue
        return paths[0].parent
    return None


@dataclass(frozen=True)
class OpenCLIPSource:
    """What open_clip.create_model gets: a model id (or local-dir:), a weights file, tag overrides."""

    model: str
    weights: str | None  # a file for create_model(pretrained=...); None: from local-dir / random
    preprocess: dict[str, Any]  # the tag's preprocessing (mean, std, interpolation, resize_mode)
    quick_gelu: bool
    origin: str  # where the weights came from, for the log and metadata


def _tag_weights(open_clip: Any, model: str, tag: str, tried: list[str]) -> str | None:
    """A local file with the weights of open_clip tag `tag`: cache, hub cache, then the network."""
    from caspl.vlm.weights import _reason, clip_cache_dir, is_offline  # noqa: PLC0415

    cfg = open_clip.get_pretrained_cfg(model, tag)
    url, hf_hub = cfg.get("url", ""), cfg.get("hf_hub", "")
    cache_file = clip_cache_dir() / os.path.basename(url) if url else None
    if cache_file is not None:
        if cache_file.is_file():
            return str(cache_file)
        tried.append(f"local cache file {cache_file}: file not found")
    if hf_hub:
        # "org/repo/" names the default file (safetensors preferred, as open_clip); "org/repo/file" one file
        repo, filename = os.path.split(hf_hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            folder = _hub_files(repo, [name], tried)
            if folder is not None:
                return str(folder / name)
    if url:
        if is_offline():
            tried.append(f"URL {url}: skipped (offline: CASPL_OFFLINE / HF_HUB_OFFLINE is set)")
        else:
            try:
                return open_clip.pretrained.download_pretrained_from_url(url, cache_dir=str(clip_cache_dir()))
            except Exception as e:
                tried.append(f"URL {url}: {_reason(e)}")
    return None


def resolve_open_clip(model: str, pretrained: str, path: str = "") -> OpenCLIPSource:
    """Where an open_clip teacher's weights come from: TEACHER.PATH, the caches, then the Hub / URL.

    - `path`: a folder with open_clip_config.json (+ weights) or a weights file for `model`; must work.
    - `pretrained` "none": random weights (tests). "hf-hub:<repo>": config + weights of that Hub repo.
    - otherwise an open_clip pretrained tag of `model`: its cache file ($CASPL_CLIP_CACHE or ~/.cache/clip,
      open_clip's own folder), the hub cache, then the network (none with CASPL_OFFLINE / HF_HUB_OFFLINE).
    """
    open_clip = _import_open_clip()
    tag_cfg = {} if model.startswith("hf-hub:") else open_clip.get_pretrained_cfg(model, pretrained or "")
    preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    if path:
        p = Path(path).expanduser()
        if p.is_dir() and (p / "open_clip_config.json").is_file():
            return OpenCLIPSource(f"local-dir:{p}", None, {}, False, f"local folder {p}")
        if p.is_file():
            return OpenCLIPSource(model, str(p), preprocess, quick_gelu, f"local file {p}")
        raise OpenCLIPWeightsNotFound(
            f"TRAINER.CASPL.TEACHER.PATH={path!r}: no such file, and not a folder with open_clip_config.json"
        )
    hub_repo = (
        model if model.startswith("hf-hub:") else pretrained if pretrained.startswith("hf-hub:") else ""
    )
    if not hub_repo and model not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip model {model!r} (open_clip.list_models() names the known ones, e.g. ViT-H-14, "
            "EVA02-L-14, ViT-SO400M-14-SigLIP); or give TEACHER.PRETRAINED hf-hub:<repo> / TEACHER.PATH <folder>"
        )
    if pretrained.lower() == "none" and not hub_repo:
        return OpenCLIPSource(model, None, {}, False, "random weights (PRETRAINED none)")
    tried: list[str] = []
    if hub_repo:
        repo = hub_repo[len("hf-hub:") :]
        for weights in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            folder = _hub_files(repo, ["open_clip_config.json", weights], tried)
            if folder is not None:
                return OpenCLIPSource(f"local-dir:{folder}", None, {}, False, f"hf-hub:{repo}")
    else:
        if not pretrained:
            raise ValueError(
                f"open_clip teacher {model!r} needs a pretrained tag: TRAINER.CASPL.TEACHER.PRETRAINED <tag> "
                f"or NAME open_clip:{model}:<tag>; known tags: {', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none'}"
            )
        if not tag_cfg:
            known = open_clip.list_pretrained_tags_by_model(model)
            raise ValueError(
                f"unknown open_clip pretrained tag {pretrained!r} for {model!r}; known: {', '.join(known) or 'none'} "
                "(or hf-hub:<repo>, none, or TEACHER.PATH to a local file)"
            )
        file = _tag_weights(open_clip, model, pretrained, tried)
        if file is not None:
            return OpenCLIPSource(model, file, preprocess, quick_gelu, f"{model}:{pretrained} ({file})")
    places = "\n".join(f"  {i}. {t}" for i, t in enumerate(tried, 1))
    raise OpenCLIPWeightsNotFound(
        f"no weights found for open_clip teacher {model!r} (pretrained {pretrained!r}). Tried, in order:\n{places}\n"
        "Fill the hub cache on a machine with network (the same HF_HOME / HF_HUB_CACHE), put the file in the "
        "cache folder above, or set TRAINER.CASPL.TEACHER.PATH to a local weights file or open_clip folder"
    )


def _text_tower(model: nn.Module) -> nn.Module:
    """The module holding the text tower's parts (the model itself for open_clip.CLIP, else `.text`)."""
    return model.text if hasattr(model, "text") else model


def causal_text_tower(model: nn.Module) -> bool:
    """True when features read at EOT depend only on the positions up to it (causal mask, EOT pooling).

    Not causal: SigLIP / SigLIP 2 (no causal mask, last-token pooling), HF text towers (XLM-R, ...), CoCa.
    """
    tower = _text_tower(model)
    pool = getattr(tower, "text_pool_type", getattr(tower, "pool_type", None))
    return (
        getattr(tower, "attn_mask", None) is not None
        and pool in ("argmax", "eos")
        and getattr(tower, "cls_emb", None) is None
        and not getattr(tower, "use_pad_mask", False)
        and hasattr(tower, "positional_embedding")
    )


def encode_text_exact_context(model: nn.Module, tokens: Tensor) -> Tensor:
    """open_clip's encode_text on the first max(EOT)+1 positions when the tower is causal (same result)."""
    if not causal_text_tower(model):
        return model.encode_text(tokens)
    from open_clip.transformer import text_global_pool  # noqa: PLC0415

    tower = _text_tower(model)
    pool = getattr(tower, "text_pool_type", getattr(tower, "pool_type", None))
    eos_id = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
    ends = tokens.argmax(dim=-1) if pool == "argmax" else (tokens == eos_id).int().argmax(dim=-1)
    n = int(ends.max()) + 1
    tokens = tokens[:, :n]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(tokens).to(cast_dtype) + tower.positional_embedding[:n].to(cast_dtype)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:n, :n])
    x = text_global_pool(tower.ln_final(x), tokens, pool, eos_token_id=eos_id)
    proj = tower.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


class OpenCLIPTeacher(Teacher):
    """An open_clip model as the teacher, with its own preprocessing, tokenizer and logit scale / bias."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Callable[[list[str]], Tensor],
        classnames: list[str],
        templates: list[str],
        student: Preprocess,
        describe: dict[str, Any] | None = None,
        logit_mode: str = "scaled",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        from open_clip import get_model_preprocess_cfg  # noqa: PLC0415

        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.logit_mode = check_logit_mode(logit_mode)
        pre = get_model_preprocess_cfg(model)
        size = pre.get("size", 224)
        self.preprocess = Preprocess(
            size=(size, size) if isinstance(size, int) else tuple(size),
            mean=tuple(float(m) for m in pre.get("mean", OPENAI_MEAN)),
            std=tuple(float(s) for s in pre.get("std", OPENAI_STD)),
            interpolation=pre.get("interpolation", "bicubic"),
            resize_mode=pre.get("resize_mode", "shortest"),
        )
        if self.preprocess.interpolation not in ("bicubic", "bilinear", "nearest"):
            raise ValueError(f"teacher interpolation {self.preprocess.interpolation!r} is not supported")
        self.adapter = ImageAdapter(student, self.preprocess)
        self.describe = dict(describe or {})
        self.templates = list(templates)
        # Class features once, in fp32 on the teacher's device; then the towers go to `dtype`.
        with torch.inference_mode():
            feats = ensemble_text_features(self.encode_texts, classnames, templates)
        self.model.to(dtype)
        self.register_buffer("text_features", feats.to(dtype), persistent=False)

    def encode_texts(self, texts: list[str]) -> Tensor:
        """Text features of `texts`, in chunks, on the exact context where the tower is causal."""
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(texts)
        return torch.cat(
            [encode_text_exact_context(self.model, c.to(device)) for c in tokens.split(TEXT_CHUNK)]
        )

    def encode_image(self, images: Tensor) -> Tensor:
        return self.model.encode_image(images)

    def logit_scale_and_bias(self) -> tuple[Tensor, Tensor | None]:
        bias = getattr(self.model, "logit_bias", None)
        return self.model.logit_scale.exp().float(), None if bias is None else bias.float()

    def metadata(self) -> dict[str, Any]:
        return {
            "library": "open_clip",
            **self.describe,
            "causal_text": causal_text_tower(self.model),
            "logit_bias": getattr(self.model, "logit_bias", None) is not None,
            "logits": self.logit_mode,
            "preprocess": self.preprocess.as_dict(),
            "dtype": str(self.text_features.dtype).replace("torch.", ""),
        }


def build_open_clip_teacher(
    teacher_cfg: Any,
    classnames: list[str],
    templates: list[str],
    student: Preprocess,
    device: torch.device,
) -> OpenCLIPTeacher:
    """The open_clip teacher of TRAINER.CASPL.TEACHER (NAME open_clip:..., PRETRAINED, PATH, PREC, LOGITS)."""
    open_clip = _import_open_clip()
    model_name, pretrained = parse_open_clip_name(teacher_cfg.NAME, teacher_cfg.PRETRAINED)
    source = resolve_open_clip(model_name, pretrained, teacher_cfg.PATH)
    print(f"Loading open_clip teacher {model_name} ({source.origin})")
    model = open_clip.create_model(
        source.model,
        pretrained=source.weights,
        force_quick_gelu=source.quick_gelu,
        force_preprocess_cfg=source.preprocess or None,
        device=device,
    )
    tokenizer = open_clip.get_tokenizer(source.model)
    dtype = teacher_dtype(teacher_cfg.PREC, device)
    describe = {"model": model_name, "pretrained": pretrained, "weights": source.origin}
    return OpenCLIPTeacher(
        model, tokenizer, classnames, templates, student, describe, teacher_cfg.LOGITS, dtype
    ).to(device)
