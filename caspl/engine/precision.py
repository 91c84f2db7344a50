"""Mixed precision as the CoOp family's PREC setting: fp16 | fp32 | amp (+ bf16)."""

import contextlib
from typing import Any

import torch
from clip.model import convert_weights
from torch import nn

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


def effective_precision(prec: str, device: torch.device) -> str:
    """The precision that will run: fp16/amp need a GPU; on CPU they fall back to fp32 with a note."""
    if prec not in PRECISIONS:
        raise ValueError(f"PREC must be one of {', '.join(PRECISIONS)}, got {prec!r}")
    if prec in ("fp16", "amp") and device.type != "cuda":
        print(f"Note: PREC {prec} needs a GPU; running in fp32 on {device.type}")
        return "fp32"
    return prec


def cast_frozen_clip(clip_model: nn.Module, prec: str) -> None:
    """fp16: the frozen towers in half precision as OpenAI ships them (prompt parameters stay fp32)."""
    if prec == "fp16":
        convert_weights(clip_model)


def autocast(prec: str, device: torch.device) -> Any:
    """The autocast context for a forward pass under `prec`."""
    if prec == "amp":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    if prec == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def grad_scaler(prec: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for amp (fp16 autocast); None otherwise."""
    return torch.amp.GradScaler(device.type) if prec == "amp" else None
