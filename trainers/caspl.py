"""Cascade Prompt Learning (CasPL, ECCV 2024).

Phase 1, `CasPL_Boost`: learnable boosting prompts (a deep text + vision group, IVLP format) make the
student CLIP match a larger frozen teacher CLIP's logits on unlabeled images; saved as boost_prompts.pt.
Phase 2, `CasPL_<Method>`: the frozen boosting prompts are cascaded into any prompt-learning trainer
(text: [SOS][adapting][boosting][class]; vision: [CLS][patches][boosting][adapting]); the method's own
losses are unchanged. `CasPL_ZS` evaluates the boosted CLIP alone.
"""

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from clip.model import CLIP
from torch import Tensor
from yacs.config import CfgNode as CN

import caspl
import caspl.vlm.teacher as vt
from caspl.config import register_config
from caspl.engine.clip_trainer import CLIPPromptTrainer, count_parameters
from caspl.engine.precision import autocast, cast_frozen_clip
from caspl.registry import TRAINER_REGISTRY
from caspl.utils.checkpoint import atomic_save, safe_load
from caspl.vlm.build import build_clip, freeze, input_resolution
from caspl.vlm.model import CascadeGroups, PromptedCLIP
from caspl.vlm.prompted import PromptedTextEncoder, PromptGroup, encode_texts, init_tokens_from_text
from caspl.vlm.templates import DEFAULT_TEMPLATE, fill
from trainers.cocoop import CoCoOp
from trainers.coop import CoOp
from trainers.ivlp import IVLP, check_input_size, text_width, vision_width
from trainers.maple import MaPLe
from trainers.promptsrc import PromptSRC

BOOST_FILE = "boost_prompts.pt"
TEXT_CHUNK = 512  # class prompts per teacher text-tower pass (bounds memory on 1000-class sets)
BOOST_FORMAT = 1

# The teacher's class text per dataset (TEACHER.TEMPLATE "dataset"): the paper's appendix table "Text template
# utilized by senior CLIP teacher" (the authors' code reads the same strings from CoOp's CUSTOM_TEMPLATES);
# every other dataset gets "a photo of a {}.".
TEACHER_TEMPLATES: dict[str, str] = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "Food101": "a photo of {}, a type of food.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "UCF101": "a photo of a person doing {}.",
}


def teacher_template(dataset_name: str) -> str:
    """The teacher's template for a dataset (the paper's appendix table)."""
    return TEACHER_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


@register_config
def add_caspl_cfg(cfg: CN) -> None:
    """TRAINER.CASPL: phase-1 boosting (BOOST, TEACHER) and phase-2 cascade settings.

    The defaults are the authors' (github Martinser/CasPL: train.py's KD node, trainers/caspl.py and
    configs/trainers/CasPL/vit_b16_c2_ep20_batch4_8+8ctx_l12.yaml; the paper's appendix).
    """
    cfg.TRAINER.CASPL = CN()
    cfg.TRAINER.CASPL.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (fp16/amp fall back to fp32 on CPU)
    cfg.TRAINER.CASPL.BOOST = CN()
    cfg.TRAINER.CASPL.BOOST.N_CTX_TEXT = 8
    cfg.TRAINER.CASPL.BOOST.N_CTX_VISION = 8
    cfg.TRAINER.CASPL.BOOST.PROMPT_DEPTH_TEXT = 12
    cfg.TRAINER.CASPL.BOOST.PROMPT_DEPTH_VISION = 12
    # Initialises the layer-0 text tokens only when N_CTX_TEXT <= 4 (the IVLP family's rule); with more
    # tokens every token starts from N(0, 0.02^2) and the log says so.
    cfg.TRAINER.CASPL.BOOST.CTX_INIT = "a photo of a"
    cfg.TRAINER.CASPL.BOOST.TEMPERATURE = 1.0
    cfg.TRAINER.CASPL.BOOST.KD_WEIGHT = 1.0
    # batchmean: sum over classes, mean over images (the KL's definition; the authors' loss);
    # numel: mean over images x classes (PromptKD), i.e. batchmean / n_classes. LR x KD_WEIGHT sets the step
    # size (SGD), so batchmean with KD_WEIGHT w equals numel with KD_WEIGHT w * n_classes.
    cfg.TRAINER.CASPL.BOOST.KD_REDUCTION = "batchmean"
    # Unlabeled pool (labels dropped): "train" = the dataset's train split (+ every image under
    # DATASET.UNLABELED_DIR when set); "dir" = DATASET.UNLABELED_DIR alone; a dataset name (e.g. "ImageNet" or
    # its config name "imagenet") = that dataset's train split under DATASET.ROOT (+ UNLABELED_DIR), the
    # paper's out-of-domain boosting. The class names are always the target dataset's.
    cfg.TRAINER.CASPL.BOOST.UNLABELED = "train"
    # > 0: only N train images per class (seeded by SEED; the paper's partial-data ablation on DTD).
    cfg.TRAINER.CASPL.BOOST.UNLABELED_PER_CLASS = 0
    # Class names on the text side: all (PromptKD's protocol) | base (never sees new-class names).
    cfg.TRAINER.CASPL.BOOST.CLASSES = "all"
    cfg.TRAINER.CASPL.TEACHER = CN()
    cfg.TRAINER.CASPL.TEACHER.NAME = "ViT-L/14"
    # NAME: an OpenAI CLIP (ViT-L/14, ...) or open_clip:<model>[:<tag>] (README "Choosing a teacher").
    # PRETRAINED (open_clip): a pretrained tag, hf-hub:<repo id>, or none (random weights, for tests).
    cfg.TRAINER.CASPL.TEACHER.PRETRAINED = ""
    # auto (fp16 on GPU, fp32 on CPU) | fp32 | fp16 | bf16 (open_clip only; an OpenAI teacher runs fp32)
    cfg.TRAINER.CASPL.TEACHER.PREC = "auto"
    # scaled: logit_scale * cos (+ bias, which the KL's softmax cancels) | sigmoid: log sigmoid(scale * cos
    # + bias), i.e. a sigmoid-trained teacher's (SigLIP's) per-class probabilities renormalised.
    cfg.TRAINER.CASPL.TEACHER.LOGITS = "scaled"
    cfg.TRAINER.CASPL.TEACHER.PATH = ""
    # "dataset" (one template per dataset: the paper's appendix table, CoOp's templates) | a template such as
    # "a photo of a {}." | "ensemble" (PromptSRC's 60 ImageNet templates)
    cfg.TRAINER.CASPL.TEACHER.TEMPLATE = "dataset"
    # Phase 2: a boost_prompts.pt file or the phase-1 output folder holding one.
    cfg.TRAINER.CASPL.BOOST_PROMPTS = ""
    cfg.TRAINER.CASPL.BOOST_TRAINABLE = False  # the paper's ablation: fine-tune the boosting prompts too
    # PromptSRC's frozen reference: plain CLIP (the authors' CasPL_PromptSRC) or the boosted CLIP.
    cfg.TRAINER.CASPL.REG_REFERENCE = "clip"
    # Boosting prompts whose depth differs from an IVLP-style method's (CasPL_PromptSRC, CasPL_IVLP), where the
    # authors' phase 2 pads missing boosting layers with frozen random tokens or drops extra ones:
    # "error" refuses the run; "keep" runs with the boosting prompts at the depth phase 1 trained (a warning).
    cfg.TRAINER.CASPL.DEPTH_MISMATCH = "error"


# ---------------------------------------------------------------------------- loss
def kd_loss(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float, reduction: str = "batchmean"
) -> Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, reduced per `reduction` (batchmean | numel)."""
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    total = (log_p_t.exp() * (log_p_t - log_p_s)).sum() * temperature**2
    if reduction == "batchmean":
        return total / student_logits.shape[0]
    if reduction == "numel":
        return total / student_logits.numel()
    raise ValueError(f"TRAINER.CASPL.BOOST.KD_REDUCTION must be batchmean or numel, got {reduction!r}")


# ---------------------------------------------------------------------------- boosting prompts
def make_boost_groups(clip_model: CLIP, boost_cfg: Any) -> CascadeGroups:
    """Fresh boosting prompts in the IVLP format: deep text group (CTX_INIT at layer 0 when it has <= 4
    tokens, else random) + deep vision group (random)."""
    n_text = boost_cfg.N_CTX_TEXT
    init = None
    if boost_cfg.CTX_INIT and n_text > 4:
        # The IVLP family's rule, which the authors' phase 1 follows: CTX_INIT only for <= 4 tokens.
        print(
            f"Boosting prompts: CTX_INIT {boost_cfg.CTX_INIT!r} not used: N_CTX_TEXT {n_text} > 4, "
            "so every text token starts from N(0, 0.02^2) (random initialisation)"
        )
    elif boost_cfg.CTX_INIT and n_text:
        words = init_tokens_from_text(clip_model, boost_cfg.CTX_INIT)
        if len(words) != n_text:
            raise ValueError(
                f"TRAINER.CASPL.BOOST.CTX_INIT {boost_cfg.CTX_INIT!r} has {len(words)} tokens but N_CTX_TEXT is {n_text}"
            )
        init = words
    text = PromptGroup(n_text, text_width(clip_model), boost_cfg.PROMPT_DEPTH_TEXT, init=init)
    vision = PromptGroup(boost_cfg.N_CTX_VISION, vision_width(clip_model), boost_cfg.PROMPT_DEPTH_VISION)
    return CascadeGroups(text, vision)


def _widths(clip_model: CLIP) -> dict[str, int]:
    """The token widths of both towers: what boosting prompts must match."""
    return {"text_width": text_width(clip_model), "vision_width": vision_width(clip_model)}


def save_boost_prompts(path: str | Path, groups: CascadeGroups, meta: dict[str, Any]) -> None:
    """boost_prompts.pt: per-layer token tensors of both towers + metadata (loads with weights_only=True)."""
    payload = {
        "format": BOOST_FORMAT,
        "text": [t.detach().float().cpu().clone() for t in groups.text()],
        "vision": [t.detach().float().cpu().clone() for t in groups.vision()],
        "meta": meta,
    }
    atomic_save(payload, path)


def resolve_boost_path(path: str) -> Path:
    """A boost_prompts.pt file, or the phase-1 output folder that holds one; errors say how to make it."""
    if not path:
        raise ValueError(
            "CasPL phase 2 needs TRAINER.CASPL.BOOST_PROMPTS (a boost_prompts.pt from phase 1). Make one with:\n"
            "  python train.py --trainer CasPL_Boost --config-file configs/trainers/CasPL_Boost/<config>.yaml "
            "--dataset-config-file configs/datasets/<dataset>.yaml --root DATA --output-dir output/boost/..."
        )
    p = Path(path)
    if p.is_dir():
        p = p / BOOST_FILE
    if not p.is_file():
        raise FileNotFoundError(
            f"boosting prompts not found: {p}. Run phase 1 first, e.g.\n"
            "  python train.py --trainer CasPL_Boost --config-file configs/trainers/CasPL_Boost/<config>.yaml "
            f"--dataset-config-file configs/datasets/<dataset>.yaml --root DATA --output-dir {p.parent}"
        )
    return p


def load_boost_prompts(path: str, clip_model: CLIP, backbone: str) -> tuple[CascadeGroups, dict[str, Any]]:
    """Frozen CascadeGroups from boost_prompts.pt, refusing a file made for another backbone/width/depth."""
    p = resolve_boost_path(path)
    payload = safe_load(p)
    if not isinstance(payload, dict) or payload.get("format") != BOOST_FORMAT:
        raise ValueError(f"{p} is not a boost_prompts.pt of format {BOOST_FORMAT}")
    meta = payload["meta"]
    student = meta.get("student", {})
    expected = {"backbone": backbone, **_widths(clip_model)}
    for key, want in expected.items():
        if student.get(key) != want:
            raise ValueError(
                f"{p} was made for {key}={student.get(key)!r} but this run's student has {key}={want!r}; "
                "run phase 1 with the same MODEL.BACKBONE.NAME"
            )
    n_layers = {
        "text": len(clip_model.transformer.resblocks),
        "vision": len(clip_model.visual.transformer.resblocks),
    }
    groups = []
    for tower, width in (("text", expected["text_width"]), ("vision", expected["vision_width"])):
        layers = payload[tower]
        if len(layers) > n_layers[tower]:
            raise ValueError(
                f"{p}: {tower} prompt depth {len(layers)} exceeds the {n_layers[tower]} layers of {backbone}"
            )
        n = layers[0].shape[-2] if layers else 0
        group = PromptGroup(n, width, len(layers))
        with torch.no_grad():
            for param, tokens in zip(group.tokens, layers):
                if tokens.shape != param.shape:
                    raise ValueError(
                        f"{p}: {tower} tokens of shape {tuple(tokens.shape)}, expected {tuple(param.shape)}"
                    )
                param.copy_(tokens)
        groups.append(freeze(group))
    return CascadeGroups(*groups), meta


# ---------------------------------------------------------------------------- phase 1: unlabeled pool
DATASET_CONFIGS = Path(__file__).resolve().parents[1] / "configs/datasets"


def pick_per_class(items: list[Any], n: int, seed: int) -> list[Any]:
    """`n` items per label (all of a smaller class), drawn with their own seeded RNG (global RNG untouched)."""
    import random  # noqa: PLC0415

    by_label: dict[int, list[Any]] = {}
    for item in sorted(items, key=lambda d: d.impath):
        by_label.setdefault(int(item.label), []).append(item)
    rng = random.Random(seed)
    return [
        d for label in sorted(by_label) for d in rng.sample(by_label[label], min(n, len(by_label[label])))
    ]


def _other_dataset(cfg: Any, name: str) -> Any:
    """The dataset named `name` (registry name or configs/datasets/<name>.yaml) at DATASET.ROOT, all classes."""
    from caspl.data.loader import build_dataset  # noqa: PLC0415
    from caspl.registry import DATASET_REGISTRY  # noqa: PLC0415

    registered = name
    if name not in DATASET_REGISTRY and (DATASET_CONFIGS / f"{name}.yaml").is_file():
        registered = CN.load_cfg((DATASET_CONFIGS / f"{name}.yaml").read_text()).DATASET.NAME
    other = cfg.clone()
    other.defrost()
    other.DATASET.NAME = registered
    other.DATASET.NUM_SHOTS = -1
    other.DATASET.SUBSAMPLE_CLASSES = "all"
    try:
        return build_dataset(other)
    except KeyError as err:
        raise ValueError(
            f"TRAINER.CASPL.BOOST.UNLABELED {name!r} is neither train, dir, a registered dataset nor a "
            f"configs/datasets/<name>.yaml"
        ) from err


def unlabeled_pool(cfg: Any, dataset: Any) -> tuple[list[str], dict[str, Any]]:
    """Phase 1's image paths per TRAINER.CASPL.BOOST.UNLABELED / UNLABELED_PER_CLASS, and what to record."""
    from caspl.data.io import find_images  # noqa: PLC0415

    boost, extra_dir = cfg.TRAINER.CASPL.BOOST, cfg.DATASET.UNLABELED_DIR
    source, per_class = boost.UNLABELED, int(boost.UNLABELED_PER_CLASS)
    if per_class < 0:
        raise ValueError(f"TRAINER.CASPL.BOOST.UNLABELED_PER_CLASS must be >= 0, got {per_class}")
    record: dict[str, Any] = {
        "source": source,
        "per_class": per_class,
        "seed": cfg.SEED,
        "unlabeled_dir": extra_dir,
    }
    if source == "dir":
        if not extra_dir:
            raise ValueError(
                "TRAINER.CASPL.BOOST.UNLABELED dir needs DATASET.UNLABELED_DIR (a folder of images)"
            )
        if per_class:
            raise ValueError(
                "TRAINER.CASPL.BOOST.UNLABELED_PER_CLASS needs a labelled train split, not UNLABELED dir"
            )
        paths: list[str] = []
    else:
        pool_set = dataset if source == "train" else _other_dataset(cfg, source)
        items = getattr(pool_set, "_full_train", None) or pool_set.train_x
        if per_class:
            items = pick_per_class(items, per_class, cfg.SEED)
            root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT or "."))
            record["images"] = sorted(os.path.relpath(d.impath, root) for d in items)
        paths = [d.impath for d in items]
    if extra_dir:
        folder = os.path.abspath(os.path.expanduser(extra_dir))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"DATASET.UNLABELED_DIR {folder} does not exist")
        paths += find_images(folder)
    if not paths:
        raise ValueError(f"the unlabeled pool of phase 1 is empty (TRAINER.CASPL.BOOST.UNLABELED {source!r})")
    record["n_images"] = len(paths)
    return paths, record


# ---------------------------------------------------------------------------- phase 1
class BoostStudent(PromptedCLIP):
    """The student of phase 1: CLIP + learnable boosting prompts (text and vision)."""

    def __init__(self, clip_model: CLIP, classnames: list[str], boost_cfg: Any) -> None:
        groups = make_boost_groups(clip_model, boost_cfg)
        texts = [f"{name.replace('_', ' ')}." for name in classnames]
        super().__init__(clip_model, texts, [groups.text.n_tokens])
        self.prompt_learner.text = groups.text
        self.prompt_learner.vision = groups.vision

    def method_text_tokens(self) -> list[list[Tensor]]:
        return [self.prompt_learner.text()]

    def method_vision_tokens(self) -> list[list[Tensor]]:
        return [self.prompt_learner.vision()]

    def boost_groups(self) -> CascadeGroups:
        return CascadeGroups(self.prompt_learner.text, self.prompt_learner.vision)


class FrozenTeacher(vt.Teacher):
    """The OpenAI-CLIP teacher: a frozen CLIP with fixed, precomputed class text features."""

    def __init__(
        self,
        clip_model: CLIP,
        classnames: list[str],
        template: str,
        dataset_name: str,
        student: vt.Preprocess | None = None,
    ) -> None:
        super().__init__()
        self.clip = freeze(clip_model)
        self.resolution = input_resolution(clip_model)
        self.preprocess = vt.Preprocess((self.resolution,) * 2, vt.OPENAI_MEAN, vt.OPENAI_STD, "bicubic")
        # The student's batch -> this teacher's input (default: a student normalised as OpenAI's CLIP).
        self.adapter = vt.ImageAdapter(student or self.preprocess, self.preprocess)
        self.register_buffer(
            "text_features", self._text_features(classnames, template, dataset_name), persistent=False
        )

    @torch.no_grad()
    def _text_features(self, classnames: list[str], template: str, dataset_name: str) -> Tensor:
        templates = vt.template_list(template, teacher_template(dataset_name))
        self.templates = templates if template != "ensemble" else ["ensemble"]
        feats = []
        for t in templates:
            f = encode_texts(self.clip, fill(t, classnames))  # on the teacher's device, short-context
            feats.append(F.normalize(f.float(), dim=-1))
        return F.normalize(torch.stack(feats).mean(0), dim=-1)  # CLIP's template ensembling

    @property
    def input_dtype(self) -> torch.dtype:
        return self.clip.dtype

    def encode_image(self, images: Tensor) -> Tensor:
        return self.clip.encode_image(images)

    def logit_scale_and_bias(self) -> tuple[Tensor, None]:
        return self.clip.logit_scale.exp().float(), None

    def metadata(self) -> dict[str, Any]:
        return {
            "library": "openai-clip",
            "logits": self.logit_mode,
            "preprocess": self.preprocess.as_dict(),
            "dtype": str(self.clip.dtype).replace("torch.", ""),
        }


@TRAINER_REGISTRY.register()
class CasPL_Boost(CLIPPromptTrainer):  # noqa: N801 (registered name)
    """Phase 1: distil a frozen teacher CLIP into boosting prompts on unlabeled images."""

    cfg_node = "CASPL"
    resumable_attrs = ("kd_before", "final_kd_loss")  # measured before epoch 1 / in the last epoch
    kd_before: float | None = None
    final_kd_loss: float | None = None
    # The current epoch's KD loss sum (a device tensor once a step ran) and image count.
    _kd_sum: Tensor | float = 0.0
    _kd_count = 0

    def check_cfg(self, cfg: Any) -> None:
        if cfg.TRAINER.CASPL.BOOST.CLASSES not in ("all", "base"):
            raise ValueError(
                f"TRAINER.CASPL.BOOST.CLASSES must be all or base, got {cfg.TRAINER.CASPL.BOOST.CLASSES!r}"
            )
        if cfg.DATASET.SUBSAMPLE_CLASSES != "all":
            raise ValueError(
                "CasPL_Boost uses the unlabeled images of every class; choose the class names with "
                "TRAINER.CASPL.BOOST.CLASSES instead of DATASET.SUBSAMPLE_CLASSES"
            )

    def build_data_loader(self) -> None:
        from caspl.data import build_transform, build_unlabeled_loader  # noqa: PLC0415

        super().build_data_loader()
        boost = self.cfg.TRAINER.CASPL.BOOST
        impaths, self.pool_record = unlabeled_pool(self.cfg, self.dm.dataset)
        print(
            f"Unlabeled pool: {len(impaths):,} images (labels dropped; source {self.pool_record['source']}"
            + (f", {boost.UNLABELED_PER_CLASS} per class" if boost.UNLABELED_PER_CLASS else "")
            + ")"
        )
        self.train_loader_x = self.prepare_train_loader(
            build_unlabeled_loader(
                self.cfg,
                impaths,
                build_transform(self.cfg, is_train=True),
                self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
            )
        )
        n = len(self.classnames)
        self.boost_classnames = (
            self.classnames if boost.CLASSES == "all" else self.classnames[: math.ceil(n / 2)]
        )

    def build_prompt_model(
        self, clip_model: CLIP, classnames: list[str], cascade: CascadeGroups | None
    ) -> PromptedCLIP:
        cfg = self.cfg
        check_input_size(cfg, clip_model)  # the student's resolution and the boosting depths, in one message
        teacher_cfg = cfg.TRAINER.CASPL.TEACHER
        if teacher_cfg.NAME == cfg.MODEL.BACKBONE.NAME and not teacher_cfg.PATH:
            print("Warning: the teacher is the student's own backbone; boosting then has little to distil")
        print(f"Loading teacher CLIP ({teacher_cfg.NAME})")
        student_input = vt.student_preprocess(cfg)  # the teacher maps the student's batch to its own input
        if vt.is_open_clip_name(teacher_cfg.NAME):  # caspl/vlm/teacher.py; imports open_clip only here
            templates = vt.template_list(teacher_cfg.TEMPLATE, teacher_template(cfg.DATASET.NAME))
            self.teacher: vt.Teacher = vt.build_open_clip_teacher(
                teacher_cfg, self.boost_classnames, templates, student_input, self.device
            )
        else:
            # On the device before its class text features are computed (once, in fp32), then halved on GPU.
            teacher_clip = build_clip(teacher_cfg.NAME, teacher_cfg.PATH).to(self.device)
            self.teacher = FrozenTeacher(
                teacher_clip, self.boost_classnames, teacher_cfg.TEMPLATE, cfg.DATASET.NAME, student_input
            )
            half = vt.teacher_dtype(teacher_cfg.PREC, self.device) == torch.float16
            cast_frozen_clip(self.teacher.clip, "fp16" if half else "fp32")  # OpenAI CLIP: fp16 or fp32
        self.teacher.logit_mode = vt.check_logit_mode(teacher_cfg.LOGITS)
        self.teacher.to(self.device).eval()
        self.student_clip = clip_model
        student = BoostStudent(clip_model, self.boost_classnames, cfg.TRAINER.CASPL.BOOST)
        # Strict "base" protocol: training never encodes new-class names; evaluation scores every class.
        self.eval_text_encoder = None
        if len(self.boost_classnames) != len(classnames):
            texts = [f"{name.replace('_', ' ')}." for name in classnames]
            self.eval_text_encoder = PromptedTextEncoder(
                clip_model, texts, [student.prompt_learner.text.n_tokens]
            )
        n = count_parameters(student.prompt_learner)
        print(
            f"Boosting prompts: {n:,} parameters ({100.0 * n / count_parameters(clip_model):.4f}% of the student)"
        )
        return student

    def kd(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        boost = self.cfg.TRAINER.CASPL.BOOST
        return boost.KD_WEIGHT * kd_loss(
            student_logits, teacher_logits, boost.TEMPERATURE, boost.KD_REDUCTION
        )

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, Any]:
        images = self.to_device_images(batch["img"])  # the batch carries no labels
        teacher_logits = self.teacher(images)
        with autocast(self.prec, self.device):
            loss = self.kd(self.model(images), teacher_logits)
        self.model_backward_and_update(loss)
        # The epoch's mean KD loss for boost_prompts.pt, summed on the device (read once per epoch).
        n = images.shape[0]
        self._kd_sum = self._kd_sum + loss.detach().float() * n
        self._kd_count += n
        return {"loss": loss.detach()}

    def run_epoch(self) -> None:
        self._kd_sum, self._kd_count = 0.0, 0
        super().run_epoch()
        total, count = self.dist.sum(float(self._kd_sum), self._kd_count)
        self.final_kd_loss = total / max(count, 1)

    @torch.no_grad()
    def heldout_kd(self, loader: Any) -> float:
        """Mean KL(teacher || student) (T^2-scaled, batchmean) over a labelled split, labels unused."""
        self.set_model_mode("eval")
        text = self.model.encode_text()
        total, count = 0.0, 0
        temperature = self.cfg.TRAINER.CASPL.BOOST.TEMPERATURE
        for batch in loader:
            images = batch["img"].to(self.device)
            s = self.model(images, text)
            total += kd_loss(s, self.teacher(images), temperature, "batchmean").item() * images.shape[0]
            count += images.shape[0]
        total, count = self.dist.sum(total, count)  # torchrun: each process scored a shard
        return total / max(count, 1)

    def before_evaluation(self) -> None:
        if self.eval_text_encoder is None:
            return super().before_evaluation()
        with autocast(self.prec, self.device):
            self._text_features = self.eval_text_encoder.to(self.device)(self.model.text_tokens())
        return None

    def heldout_loader(self) -> Any:
        return self.val_loader if self.val_loader is not None else self.test_loader

    def before_train(self) -> None:
        super().before_train()
        if self.start_epoch == 0:  # a resumed run got it back from its checkpoint
            self.kd_before = self.heldout_kd(self.heldout_loader())
        if self.kd_before is not None:
            print(f"Held-out KL to the teacher before boosting: {self.kd_before:.4f}")

    def after_train(self) -> None:
        if (
            not self.cfg.TEST.NO_TEST
            and self.cfg.TEST.FINAL_MODEL == "best_val"
            and self.val_loader is not None
        ):
            self.load_model(self.output_dir)  # the prompts saved and reported are the ones evaluated
        self.kd_after = self.heldout_kd(self.heldout_loader())
        print(f"Held-out KL to the teacher after boosting: {self.kd_after:.4f}")
        if self.dist.is_main:  # torchrun: one writer
            self.write_boost_file()
        super().after_train()

    def final_evaluation(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        extra = {**(extra or {}), "kd_heldout_before": getattr(self, "kd_before", None)}
        extra["kd_heldout_after"] = getattr(self, "kd_after", None)
        extra["teacher"] = {"name": self.cfg.TRAINER.CASPL.TEACHER.NAME, **self.teacher.metadata()}  # tables
        return super().final_evaluation(extra)

    def write_boost_file(self) -> Path:
        cfg = self.cfg
        meta = {
            "student": {"backbone": cfg.MODEL.BACKBONE.NAME, **_widths(self.student_clip)},
            "n_ctx_text": cfg.TRAINER.CASPL.BOOST.N_CTX_TEXT,
            "n_ctx_vision": cfg.TRAINER.CASPL.BOOST.N_CTX_VISION,
            "depth_text": cfg.TRAINER.CASPL.BOOST.PROMPT_DEPTH_TEXT,
            "depth_vision": cfg.TRAINER.CASPL.BOOST.PROMPT_DEPTH_VISION,
            "teacher": {
                "name": cfg.TRAINER.CASPL.TEACHER.NAME,
                "template": cfg.TRAINER.CASPL.TEACHER.TEMPLATE,
                "class_text": self.teacher.templates,
                **self.teacher.metadata(),  # library, model, tag, preprocessing
            },
            "dataset": cfg.DATASET.NAME,
            "classes": cfg.TRAINER.CASPL.BOOST.CLASSES,
            "unlabeled": getattr(self, "pool_record", None),
            "seed": cfg.SEED,
            "epochs": self.max_epoch,
            "final_kd_loss": getattr(self, "final_kd_loss", None),  # last epoch's mean training loss
            "kd_heldout_before": self.kd_before,
            "kd_heldout_after": self.kd_after,
            "version": caspl.__version__,
        }
        path = Path(self.output_dir) / BOOST_FILE
        save_boost_prompts(path, self.model.boost_groups(), meta)
        n = count_parameters(self.model.prompt_learner)
        print(
            f"Saved boosting prompts to {path} ({n:,} parameters, {100.0 * n / self.clip_size:.4f}% of the student)"
        )
        return path


# ---------------------------------------------------------------------------- phase 2
class CascadeMixin:
    """Puts the frozen boosting prompts of TRAINER.CASPL.BOOST_PROMPTS into a prompt-learning trainer."""

    cfg: Any
    extra_fingerprint_nodes = ("TRAINER.CASPL",)  # checkpoints record the cascade's settings too

    @property
    def cascade_trainable(self) -> bool:
        return bool(self.cfg.TRAINER.CASPL.BOOST_TRAINABLE)

    def build_cascade(self, clip_model: CLIP) -> CascadeGroups:
        groups, meta = load_boost_prompts(
            self.cfg.TRAINER.CASPL.BOOST_PROMPTS, clip_model, self.cfg.MODEL.BACKBONE.NAME
        )
        print(
            f"Cascading boosting prompts from {self.cfg.TRAINER.CASPL.BOOST_PROMPTS} "
            f"(teacher {meta.get('teacher', {}).get('name')}, dataset {meta.get('dataset')}, classes {meta.get('classes')})"
        )
        path = resolve_boost_path(self.cfg.TRAINER.CASPL.BOOST_PROMPTS)
        self.check_boost_depth(groups, path)
        # results.json says which phase-1 run this run used (the sweeps share one run among seeds).
        self.boost_record = {
            "boost_prompts": str(path),
            "boost_run": {
                "dir": str(path.parent),
                **{k: meta.get(k) for k in ("dataset", "seed", "epochs", "classes")},
                "unlabeled": {k: v for k, v in (meta.get("unlabeled") or {}).items() if k != "images"},
                "tokens": [meta.get("n_ctx_text"), meta.get("n_ctx_vision")],
                "depth": [len(groups.text.tokens), len(groups.vision.tokens)],
            },
        }
        return groups

    def final_evaluation(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return super().final_evaluation({**(extra or {}), **getattr(self, "boost_record", {})})  # type: ignore[misc]

    def check_boost_depth(self, groups: CascadeGroups, path: Path) -> None:
        """TRAINER.CASPL.DEPTH_MISMATCH for methods with IVLP-style per-tower depths (PromptSRC, IVLP).

        Our boosting prompts always act at the depth phase 1 trained them at (the boosted CLIP of phase 2 is
        the phase-1 student). The authors' CasPL_PromptSRC instead gives the boosting prompts the method's
        depth: layers phase 1 did not train stay at their random initialisation, extra trained layers are
        dropped. Where the two would differ, refuse (default) or keep ours with a warning. Shallow methods
        (CoOp, CoCoOp) and MaPLe run the boosting prompts at their own depth in the authors' code too.
        """
        policy = self.cfg.TRAINER.CASPL.DEPTH_MISMATCH
        if policy not in ("error", "keep"):
            raise ValueError(f"TRAINER.CASPL.DEPTH_MISMATCH must be error or keep, got {policy!r}")
        node, key = self.method_cfg, f"TRAINER.{self.cfg_node}"  # type: ignore[attr-defined]
        if not all(hasattr(node, k) for k in ("PROMPT_DEPTH_TEXT", "PROMPT_DEPTH_VISION")):
            return
        boost = (len(groups.text.tokens), len(groups.vision.tokens))
        method = (node.PROMPT_DEPTH_TEXT, node.PROMPT_DEPTH_VISION)
        if boost == method:
            return
        what = (
            f"the boosting prompts of {path} have depth {boost[0]} (text) / {boost[1]} (vision) but "
            f"{key}.PROMPT_DEPTH_TEXT / _VISION are {method[0]} / {method[1]}"
        )
        if policy == "error":
            raise ValueError(
                f"{what}. The authors' code would pad missing boosting layers with frozen random tokens or drop "
                "extra ones. Run phase 1 with the same depth (e.g. the phase-1 config the sweep scripts pick), "
                "or set TRAINER.CASPL.DEPTH_MISMATCH keep to use the boosting prompts at their trained depth"
            )
        print(
            f"Warning: {what}; the boosting prompts act at their trained depth (TRAINER.CASPL.DEPTH_MISMATCH keep)"
        )

    def reference_cascade(self) -> CascadeGroups | None:
        """PromptSRC's frozen reference: plain CLIP (default, as the authors) or the boosted CLIP."""
        choice = self.cfg.TRAINER.CASPL.REG_REFERENCE
        if choice not in ("boosted", "clip"):
            raise ValueError(f"TRAINER.CASPL.REG_REFERENCE must be boosted or clip, got {choice!r}")
        return self.model.cascade if choice == "boosted" else None


def cascaded(base: type) -> type:
    """Register CasPL_<base>: the base trainer with the boosting prompts cascaded in. One line per method."""
    cls = type(
        f"CasPL_{base.__name__}",
        (CascadeMixin, base),
        {"__doc__": f"{base.__name__} + CasPL boosting prompts."},
    )
    return TRAINER_REGISTRY.register(cls)


@TRAINER_REGISTRY.register()
class CasPL_ZS(CascadeMixin, CLIPPromptTrainer):  # noqa: N801 (registered name)
    """Zero-shot evaluation of the boosted CLIP ("CLIP + boost"): nothing trains."""

    cfg_node = "CASPL"

    def build_prompt_model(
        self, clip_model: CLIP, classnames: list[str], cascade: CascadeGroups | None
    ) -> PromptedCLIP:
        # The phase-1 text layout: [SOS][boosting tokens][class.]; CTX_INIT made them the template.
        return PromptedCLIP(clip_model, [f"{n.replace('_', ' ')}." for n in classnames], cascade=cascade)

    def build_optim_sched(self, module: Any) -> tuple[Any, Any]:
        return None, None

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        # --eval-only (the sweeps' new-class / target runs): nothing trained, so no checkpoint to read;
        # the boosted CLIP is fully defined by TRAINER.CASPL.BOOST_PROMPTS.
        print(f"CasPL_ZS has no trained weights: nothing to load from {directory or '--model-dir'}")

    def train(self) -> None:
        self.max_epoch = 0
        self.before_train()
        self.after_train()


# ---------------------------------------------------------------------------- registrations
# CasPL applied to each method: one line per method, the cascade mechanism above does the rest.
CasPL_CoOp = cascaded(CoOp)
CasPL_CoCoOp = cascaded(CoCoOp)
CasPL_IVLP = cascaded(IVLP)
CasPL_MaPLe = cascaded(MaPLe)
CasPL_PromptSRC = cascaded(PromptSRC)
