"""Optimizers from cfg.OPTIM with Dassl's names and hyper-parameter keys."""

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

AVAI_OPTIMS = ("sgd", "adam", "adamw", "amsgrad", "rmsprop", "radam")


def _trainable(params: Iterable[Any]) -> list[torch.Tensor]:
    """Only tensors that want gradients: frozen towers must not sit in the optimizer's state."""
    return [p for p in params if p.requires_grad]


def _unwrap(model: nn.Module) -> nn.Module:
    """The wrapped module of DataParallel / DistributedDataParallel, else the model itself."""
    return model.module if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel) else model


def _staged_groups(model: nn.Module, optim_cfg: Any) -> list[dict[str, Any]]:
    """Dassl's STAGED_LR: children named in NEW_LAYERS get LR, all others LR * BASE_LR_MULT."""
    if not isinstance(model, nn.Module):
        raise TypeError("OPTIM.STAGED_LR needs an nn.Module (not a parameter list) to find OPTIM.NEW_LAYERS")
    new_layers = optim_cfg.NEW_LAYERS
    new_layers = [new_layers] if isinstance(new_layers, str) else list(new_layers or [])
    children = dict(_unwrap(model).named_children())
    unknown = [n for n in new_layers if n not in children]
    if unknown:
        raise ValueError(
            f"OPTIM.NEW_LAYERS names {unknown} that are not children of the model; children: {sorted(children)}"
        )
    base, new = [], []
    for name, child in children.items():
        (new if name in new_layers else base).extend(_trainable(child.parameters()))
    groups = [{"params": base, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT}, {"params": new}]
    return [g for g in groups if g["params"]]


def _filter_groups(param_groups: Iterable[Any]) -> list[Any]:
    """Drop frozen tensors from user-given groups (dicts or bare tensors), and groups left empty."""
    out: list[Any] = []
    for group in param_groups:
        if isinstance(group, dict):
            params = group["params"]
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            kept = _trainable(params)
            if kept:
                out.append({**group, "params": kept})
        elif group.requires_grad:
            out.append(group)
    return out


def build_optimizer(
    model_or_params: nn.Module | Iterable[Any], optim_cfg: Any, param_groups: Iterable[Any] | None = None
) -> torch.optim.Optimizer:
    """An optimizer over the trainable (requires_grad) parameters, configured by cfg.OPTIM as in Dassl."""
    name = str(optim_cfg.NAME).lower()
    if name not in AVAI_OPTIMS:
        raise ValueError(f"unknown OPTIM.NAME {optim_cfg.NAME!r}; valid names: {', '.join(AVAI_OPTIMS)}")

    if param_groups is not None:
        if optim_cfg.STAGED_LR:
            warnings.warn("OPTIM.STAGED_LR is ignored because explicit param_groups were given", stacklevel=2)
        groups = _filter_groups(param_groups)
    elif optim_cfg.STAGED_LR:
        groups = _staged_groups(model_or_params, optim_cfg)
    else:
        params = model_or_params.parameters() if isinstance(model_or_params, nn.Module) else model_or_params
        groups = _filter_groups(params)
    if not groups:
        raise ValueError(
            "build_optimizer: no trainable parameters (all have requires_grad=False); "
            "check which modules the trainer freezes"
        )

    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd, betas=betas)
    if name == "amsgrad":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA
        )
    # radam: torch's RAdam (Dassl ships its own copy; both fall back to a momentum step early on)
    return torch.optim.RAdam(groups, lr=lr, weight_decay=wd, betas=betas)
