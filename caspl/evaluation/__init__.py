"""Evaluators registered in EVALUATOR_REGISTRY and built from cfg.TEST.EVALUATOR."""

from typing import Any

from caspl.evaluation.evaluator import Classification, EvaluatorBase
from caspl.registry import EVALUATOR_REGISTRY


def build_evaluator(cfg: Any, **kwargs: Any) -> EvaluatorBase:
    """The evaluator named by cfg.TEST.EVALUATOR (unknown names list the registered ones)."""
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)


__all__ = ["EVALUATOR_REGISTRY", "Classification", "EvaluatorBase", "build_evaluator"]
