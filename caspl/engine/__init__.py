"""The engine: Dassl-style trainer base classes and the trainer factory."""

from typing import Any

from caspl.registry import TRAINER_REGISTRY


def build_trainer(cfg: Any) -> Any:
    """Instantiate the trainer named cfg.TRAINER.NAME (error lists the registered ones)."""
    if not cfg.TRAINER.NAME:
        raise ValueError(
            f"no trainer given (--trainer); registered: {', '.join(TRAINER_REGISTRY.registered_names())}"
        )
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
