"""Linear-probe CLIP, CoOp's lpclip protocol: logistic regression on frozen CLIP image features.

Features of the few-shot train split and of the val split are extracted once with the test transform.
The inverse regularisation C of sklearn's L2 LogisticRegression (lbfgs, max_iter 1000) is searched on the
val split as CoOp's lpclip does: the best of a grid 1e6 ... 1e-6, then NUM_STEP rounds of a bisection in
log10(C) between 0.1x and 10x that peak. The fitted classifier becomes a linear head, checkpointed and
evaluated by the engine like any trainer (results.json).
"""

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from yacs.config import CfgNode as CN

from caspl.config import register_config
from caspl.engine.trainer import TrainerX
from caspl.registry import TRAINER_REGISTRY
from caspl.vlm.build import build_clip, freeze


@register_config
def add_linear_probe_cfg(cfg: CN) -> None:
    """TRAINER.LINEAR_PROBE: the C search of CoOp's lpclip/linear_probe.py."""
    cfg.TRAINER.LINEAR_PROBE = CN()
    cfg.TRAINER.LINEAR_PROBE.C_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)  # initial search
    cfg.TRAINER.LINEAR_PROBE.NUM_STEP = 8  # bisection rounds in log10(C) around the grid's peak
    cfg.TRAINER.LINEAR_PROBE.MAX_ITER = 1000
    # L2-normalized features (as CLIP's classifier sees them); CoOp's feat_extractor keeps them raw (False).
    cfg.TRAINER.LINEAR_PROBE.L2_NORMALIZE = True


class _ImageList(torch.utils.data.Dataset):
    """Images of a list of Datum with one transform (the train split with the test transform)."""

    def __init__(self, items: list[Any], transform: Any) -> None:
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        with Image.open(item.impath) as im:
            img = self.transform(im.convert("RGB"))
        return {"img": img, "label": item.label}


def search_c(
    fit_score: Any, grid: tuple[float, ...], num_step: int
) -> tuple[float, list[tuple[float, float]]]:
    """CoOp's lpclip search: grid peak, then `num_step` log-bisection rounds; returns (C, [(C, val acc)])."""
    history = [(c, fit_score(c)) for c in grid]
    peak = grid[int(np.argmax([acc for _, acc in history]))]
    c_left, c_right, c_final = 0.1 * peak, 10.0 * peak, peak
    for _ in range(num_step):
        acc_left, acc_right = fit_score(c_left), fit_score(c_right)
        history += [(c_left, acc_left), (c_right, acc_right)]
        log_left, log_right = math.log10(c_left), math.log10(c_right)
        if acc_left < acc_right:
            c_final = c_right
            log_left, log_right = 0.5 * (log_left + log_right), log_right
        else:
            c_final = c_left
            log_left, log_right = log_left, 0.5 * (log_left + log_right)
        c_left, c_right = 10.0**log_left, 10.0**log_right
    return c_final, history


@TRAINER_REGISTRY.register()
class LinearProbeCLIP(TrainerX):
    """Logistic regression on frozen CLIP image features (no prompts)."""

    def build_model(self) -> None:
        cfg = self.cfg
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        self.clip_model = freeze(build_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH)).to(self.device)
        dim = int(self.clip_model.visual.output_dim)
        self.head = nn.Linear(dim, self.num_classes).to(self.device)
        self.register_model("linear_probe", self.head)

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        feats = self.clip_model.encode_image(images.to(self.device)).float()
        return F.normalize(feats, dim=-1) if self.cfg.TRAINER.LINEAR_PROBE.L2_NORMALIZE else feats

    @torch.no_grad()
    def extract(self, loader: Any) -> tuple[np.ndarray, np.ndarray]:
        feats, labels = [], []
        for batch in loader:
            feats.append(self.features(batch["img"]).cpu())
            labels.append(torch.as_tensor(batch["label"]))
        return torch.cat(feats).numpy(), torch.cat(labels).numpy()

    def train_features_loader(self) -> Any:
        from caspl.data import build_transform  # noqa: PLC0415

        dataset = _ImageList(self.dm.dataset.train_x, build_transform(self.cfg, is_train=False))
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.cfg.DATALOADER.TEST.BATCH_SIZE, shuffle=False, num_workers=0
        )

    def fit(self, c: float, x: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

        max_iter = self.cfg.TRAINER.LINEAR_PROBE.MAX_ITER
        return LogisticRegression(solver="lbfgs", max_iter=max_iter, C=c).fit(x, y)

    def train(self) -> None:
        """Extract features, search C on val, fit, checkpoint the head, evaluate."""
        self.before_train()
        lp = self.cfg.TRAINER.LINEAR_PROBE
        x_train, y_train = self.extract(self.train_features_loader())
        if self.val_loader is None:
            raise ValueError(
                f"LinearProbeCLIP searches C on the val split, but dataset {self.cfg.DATASET.NAME} has none"
            )
        # The whole val split (not this process's shard under torchrun): every process picks the same C.
        x_val, y_val = self.extract(self.dm.val_loader)
        print(f"Features: train {x_train.shape}, val {x_val.shape}")

        def score(c: float) -> float:
            return float((self.fit(c, x_train, y_train).predict(x_val) == y_val).mean())

        c, history = search_c(score, tuple(lp.C_GRID), lp.NUM_STEP)
        print(f"C search (C, val acc): {[(f'{a:.3g}', round(b, 4)) for a, b in history]}")
        print(f"Chosen C: {c:.6g}")
        self.chosen_c = c
        self.set_head(self.fit(c, x_train, y_train))
        self.epoch, self.max_epoch = 0, 1
        self.save_model(1, self.output_dir)
        self.after_train()

    @torch.no_grad()
    def set_head(self, clf: Any) -> None:
        """Copy the classifier into the linear head (columns follow clf.classes_)."""
        coef = torch.as_tensor(clf.coef_, dtype=torch.float32)
        bias = torch.as_tensor(clf.intercept_, dtype=torch.float32)
        if coef.shape[0] == 1:  # binary: one decision column d; logits (0, d) give softmax = sigmoid(d)
            coef, bias = torch.cat([torch.zeros_like(coef), coef]), torch.cat([torch.zeros_like(bias), bias])
        weight = torch.full_like(self.head.weight, 0.0)
        full_bias = torch.full_like(self.head.bias, -1e4)  # classes absent from training never win
        for row, label in enumerate(clf.classes_.tolist()):
            weight[label] = coef[row]
            full_bias[label] = bias[row]
        self.head.weight.copy_(weight)
        self.head.bias.copy_(full_bias)

    def model_inference(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))

    def final_evaluation(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return super().final_evaluation({**(extra or {}), "linear_probe_C": getattr(self, "chosen_c", None)})
