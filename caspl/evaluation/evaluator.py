"""Classification evaluator: accuracy, error, macro-F1 and per-class accuracy, printed in Dassl's form."""

import json
import os
from collections import OrderedDict, defaultdict
from typing import Any

import numpy as np
import torch

from caspl.registry import EVALUATOR_REGISTRY
from caspl.utils.checkpoint import atomic_write_text


# sklearn.metrics would compute the two below, but importing it costs every train.py process about a second.
def macro_f1_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over the classes present in the ground truth (Dassl's sklearn call: labels=unique(y_true),
    zero_division=0); a class never predicted right scores 0. Per class F1 = 2TP / (2TP + FP + FN)."""
    size = int(max(y_true.max(), y_pred.max())) + 1
    tp = np.bincount(y_true[y_true == y_pred], minlength=size)
    true_count = np.bincount(y_true, minlength=size)  # TP + FN
    pred_count = np.bincount(y_pred, minlength=size)  # TP + FP
    labels = np.unique(y_true)
    return float(np.mean(2.0 * tp[labels] / (true_count[labels] + pred_count[labels])))


def row_normalised_confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confusion matrix over the sorted `labels` (rows: truth, columns: prediction), each row divided by its
    count; a class that is only ever predicted has an empty row: 0, not NaN."""
    counts = np.zeros((len(labels), len(labels)), dtype=np.float64)
    np.add.at(counts, (np.searchsorted(labels, y_true), np.searchsorted(labels, y_pred)), 1.0)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)


class EvaluatorBase:
    """Interface of an evaluator: reset(), process(model_output, ground_truth), evaluate()."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        """Forget every processed batch."""
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """Accumulate one batch of model outputs and labels."""
        raise NotImplementedError

    def evaluate(self) -> "OrderedDict[str, float]":
        """Metrics over everything processed since reset(); the first one is the headline number."""
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Top-1 classification metrics; the printed lines are the ones the CoOp family's parse_test_res.py greps."""

    def __init__(self, cfg: Any, lab2cname: dict[int, str] | None = None, **kwargs: Any) -> None:
        super().__init__(cfg)
        self._lab2cname = lab2cname
        self._per_class = bool(cfg.TEST.PER_CLASS_RESULT)
        if self._per_class and lab2cname is None:
            raise ValueError("TEST.PER_CLASS_RESULT needs the label -> class name map (lab2cname)")
        self.reset()

    def reset(self) -> None:
        """Forget every processed batch."""
        self._y_true: list[np.ndarray] = []
        self._y_pred: list[np.ndarray] = []

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """Add a batch: `mo` logits [B, C], `gt` integer labels [B]."""
        if mo.dim() != 2 or gt.dim() != 1 or mo.shape[0] != gt.shape[0]:
            raise ValueError(
                f"Classification.process expects logits [B, C] and labels [B], got {tuple(mo.shape)} "
                f"and {tuple(gt.shape)}"
            )
        self._y_pred.append(mo.detach().argmax(dim=1).cpu().numpy().astype(np.int64))
        self._y_true.append(gt.detach().cpu().numpy().astype(np.int64))

    def evaluate(self) -> "OrderedDict[str, float]":
        """accuracy, error, macro_f1 (+ perclass_accuracy) in percent; prints Dassl's result lines."""
        if not self._y_true or sum(len(y) for y in self._y_true) == 0:
            raise RuntimeError(
                "Classification.evaluate: no samples were processed (is the test split empty?)"
            )
        y_true = np.concatenate(self._y_true)
        y_pred = np.concatenate(self._y_pred)
        total = int(y_true.size)
        correct = int((y_true == y_pred).sum())
        acc = 100.0 * correct / total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(y_true, y_pred)

        results: OrderedDict[str, float] = OrderedDict()
        results["accuracy"] = acc  # first: the number trainer.test() returns
        results["error"] = err
        results["macro_f1"] = macro_f1
        print(
            "=> result\n"
            f"* total: {total:,}\n"
            f"* correct: {correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )

        if self._per_class:
            results["perclass_accuracy"] = self._print_per_class(y_true, y_pred)
        if self.cfg.TEST.COMPUTE_CMAT:
            self._save_confusion_matrix(y_true, y_pred)
        return results

    def _print_per_class(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """Print one line per ground-truth class and their mean accuracy; returns that mean."""
        hits: dict[int, list[bool]] = defaultdict(list)
        for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True):
            hits[t].append(t == p)
        print("=> per-class result")
        accs = []
        for label in sorted(hits):
            name = self._lab2cname.get(label, str(label)) if self._lab2cname else str(label)
            total, correct = len(hits[label]), sum(hits[label])
            acc = 100.0 * correct / total
            accs.append(acc)
            print(f"* class: {label} ({name})\ttotal: {total:,}\tcorrect: {correct:,}\tacc: {acc:.1f}%")
        mean_acc = float(np.mean(accs))
        print(f"* average: {mean_acc:.1f}%")
        return mean_acc

    def _save_confusion_matrix(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Row-normalised confusion matrix as JSON (Dassl writes a cmat.pt object file instead)."""
        labels = np.union1d(y_true, y_pred)
        cmat = row_normalised_confusion(y_true, y_pred, labels)
        path = os.path.join(self.cfg.OUTPUT_DIR, "cmat.json")
        atomic_write_text(json.dumps({"labels": labels.tolist(), "matrix": cmat.tolist()}), path)
        print(f"Confusion matrix is saved to {path}")
