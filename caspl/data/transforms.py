"""Image transforms from INPUT.TRANSFORMS with Dassl's vocabulary and ordering."""

import random
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}
_PIL_INTERP = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}

AVAILABLE_TRANSFORMS = (
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",
    "cutout",
    "randaugment",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
    "gaussian_noise",
)


class Random2DTranslation:
    """With probability p, enlarge by 1/8 and crop a random (height, width) window; else plain resize."""

    def __init__(self, height: int, width: int, p: float = 0.5, interpolation: Any = Image.BILINEAR) -> None:
        self.height, self.width, self.p, self.interpolation = height, width, p, interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.uniform(0, 1) > self.p:
            return img.resize((self.width, self.height), self.interpolation)
        new_w, new_h = int(round(self.width * 1.125)), int(round(self.height * 1.125))
        resized = img.resize((new_w, new_h), self.interpolation)
        x1 = int(round(random.uniform(0, new_w - self.width)))
        y1 = int(round(random.uniform(0, new_h - self.height)))
        return resized.crop((x1, y1, x1 + self.width, y1 + self.height))


class Cutout:
    """Zero `n_holes` random square patches of side `length` in a CHW tensor."""

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        self.n_holes, self.length = n_holes, length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1:3]
        mask = torch.ones(h, w, dtype=img.dtype)
        for _ in range(self.n_holes):
            y, x = random.randrange(h), random.randrange(w)
            half = self.length // 2
            mask[max(0, y - half) : min(h, y + half), max(0, x - half) : min(w, x + half)] = 0
        return img * mask


class GaussianNoise:
    """Add N(mean, std) noise to a tensor."""

    def __init__(self, mean: float = 0.0, std: float = 0.15) -> None:
        self.mean, self.std = mean, std

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return img + torch.randn_like(img) * self.std + self.mean


class InstanceNormalization:
    """Normalize each channel of one image by its own mean/std."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        mean = img.mean(dim=(1, 2), keepdim=True)
        std = img.std(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        return (img - mean) / std


def build_transform(cfg: Any, is_train: bool = True, choices: list[str] | None = None) -> Any:
    """The train or test transform for cfg.INPUT (Dassl's build_transform); None with INPUT.NO_TRANSFORM."""
    if cfg.INPUT.NO_TRANSFORM:
        return None
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    unknown = [c for c in choices if c not in AVAILABLE_TRANSFORMS]
    if unknown:
        raise ValueError(
            f"INPUT.TRANSFORMS has unsupported entries {unknown}; available: {', '.join(AVAILABLE_TRANSFORMS)}"
        )
    interp_name = cfg.INPUT.INTERPOLATION
    if interp_name not in INTERPOLATION_MODES:
        raise ValueError(
            f"INPUT.INTERPOLATION must be one of {', '.join(INTERPOLATION_MODES)}, got {interp_name!r}"
        )
    interp = INTERPOLATION_MODES[interp_name]
    size = tuple(int(s) for s in cfg.INPUT.SIZE)
    normalize = T.Normalize(mean=list(cfg.INPUT.PIXEL_MEAN), std=list(cfg.INPUT.PIXEL_STD))
    tfms: list[Any] = []
    if not is_train:
        tfms += [T.Resize(max(size), interpolation=interp), T.CenterCrop(size), T.ToTensor()]
        if "normalize" in choices:
            tfms.append(normalize)
        if "instance_norm" in choices:
            tfms.append(InstanceNormalization())
        return T.Compose(tfms)

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        tfms.append(T.Resize(size, interpolation=interp))
    if "random_translation" in choices:
        tfms.append(Random2DTranslation(size[0], size[1], interpolation=_PIL_INTERP[interp_name]))
    if "random_crop" in choices:
        tfms.append(T.RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        tfms.append(T.RandomResizedCrop(size, scale=tuple(cfg.INPUT.RRCROP_SCALE), interpolation=interp))
    if "center_crop" in choices:
        tfms.append(T.CenterCrop(size))
    if "random_flip" in choices:
        tfms.append(T.RandomHorizontalFlip())
    if "randaugment" in choices:
        tfms.append(T.RandAugment(num_ops=cfg.INPUT.RANDAUGMENT_N, magnitude=cfg.INPUT.RANDAUGMENT_M))
    if "colorjitter" in choices:
        tfms.append(
            T.ColorJitter(
                brightness=cfg.INPUT.COLORJITTER_B,
                contrast=cfg.INPUT.COLORJITTER_C,
                saturation=cfg.INPUT.COLORJITTER_S,
                hue=cfg.INPUT.COLORJITTER_H,
            )
        )
    if "randomgrayscale" in choices:
        tfms.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        tfms.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    tfms.append(T.ToTensor())
    if "cutout" in choices:
        tfms.append(Cutout(cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN))
    if "normalize" in choices:
        tfms.append(normalize)
    if "gaussian_noise" in choices:
        tfms.append(GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD))
    if "instance_norm" in choices:
        tfms.append(InstanceNormalization())
    return T.Compose(tfms)
