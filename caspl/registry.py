"""Name -> class registries for trainers, datasets and evaluators (Dassl's TRAINER_REGISTRY & co.)."""

import ast
import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' Did you mean X?' for the closest choices to a mistyped name (case-insensitive), else ''."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(by_lower[c] for c in close)}?" if close else ""


class Registry:
    """A named table of classes, filled by the `register()` decorator."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.name = f"{name.upper()}_REGISTRY"  # the module-level variable that holds it
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
                f"{', '.join(sorted(self._obj_map)) or '(none)'}.{did_you_mean(name, self._obj_map)}"
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


def _is_register_call(node: ast.AST, registry: str) -> bool:
    """`<registry>.register(...)` (or the bare attribute, as a decorator without parentheses)."""
    target = node.func if isinstance(node, ast.Call) else node
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "register"
        and isinstance(target.value, ast.Name)
        and target.value.id == registry
    )


def declared_names(package_dir: str | Path, registry: str) -> set[str]:
    """Names a package registers in `registry`, read from its source without importing it (no torch).

    Two forms are recognised: a class decorated with `<registry>.register()`, and a module-level
    `Name = factory(...)` where `factory` is a function of the same module that returns
    `<registry>.register(...)` (CasPL's `cascaded`). The test suite checks the result against the live
    registry, so a third form shows up there first.
    """
    names: set[str] = set()
    for path in sorted(Path(package_dir).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        factories = {
            fn.name
            for fn in tree.body
            if isinstance(fn, ast.FunctionDef)
            and any(
                isinstance(n, ast.Return) and n.value is not None and _is_register_call(n.value, registry)
                for n in ast.walk(fn)
            )
        }
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                _is_register_call(d, registry) for d in node.decorator_list
            ):
                names.add(node.name)
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name)
                and node.value.func.id in factories
            ):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names
