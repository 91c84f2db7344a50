"""Name -> class registries for trainers, datasets and evaluators (Dassl's TRAINER_REGISTRY & co.)."""

from collections.abc import Callable
from typing import Any


class Registry:
    """A named table of classes, filled by the `register()` decorator."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: dict[str, Any] = {}

    def register(self, obj: Any = None, name: str | None = None, force: bool = False) -> Any:
        """Register `obj` under its __name__ (or `name`); usable as a decorator with or without args."""

        def _do(o: Any) -> Any:
            key = name or o.__name__
            if key in self._obj_map and not force and self._obj_map[key] is not o:
                raise KeyError(f"{key!r} is already registered in the {self._name} registry")
            self._obj_map[key] = o
            return o

        return _do if obj is None else _do(obj)

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            raise KeyError(
                f"{self._name} {name!r} is not registered. Registered {self._name}s: "
                f"{', '.join(sorted(self._obj_map)) or '(none)'}"
            )
        return self._obj_map[name]

    def registered_names(self) -> list[str]:
        return sorted(self._obj_map)

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map


TRAINER_REGISTRY = Registry("trainer")
DATASET_REGISTRY = Registry("dataset")
EVALUATOR_REGISTRY = Registry("evaluator")


def build_from(registry: Registry, name: str, *args: Any, **kwargs: Any) -> Any:
    """Instantiate the class registered under `name`."""
    builder: Callable[..., Any] = registry.get(name)
    return builder(*args, **kwargs)
