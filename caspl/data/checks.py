"""Checks of split and annotation reads: a contradiction is an error naming the file, the entry and what was expected.

A label outside the classes, a gap in the train labels, two class names for one label or one name for two
labels would otherwise change the class count, the base/new split or the text classifier without a word.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from caspl.data.datum import Datum

MAX_LISTED = 5


class SplitError(ValueError):
    """A split or annotation file contradicts itself or another; the message names the file and the entry."""


def _show(d: Datum) -> str:
    return f"[{d.impath!r}, {d.label}, {d.classname!r}]"


def _listed(values: Sequence[Any]) -> str:
    head = ", ".join(str(v) for v in values[:MAX_LISTED])
    return head + (f" ... ({len(values)} in all)" if len(values) > MAX_LISTED else "")


def check_labels(parts: Mapping[str, Sequence[Datum]], source: str) -> int:
    """The number of classes K; SplitError unless every label is an integer >= 0, the first part's (train)
    labels are 0..K-1 with none missing, and every other part's labels lie in 0..K-1."""
    names = list(parts)
    for part, items in parts.items():
        for i, d in enumerate(items):
            if isinstance(d.label, bool) or not isinstance(d.label, int) or d.label < 0:
                raise SplitError(f"{source}: {part} entry {i} {_show(d)}: expected an integer label >= 0")
    train_name = names[0]
    train = parts[train_name]
    if not train:
        raise SplitError(f"{source}: the {train_name} list is empty; expected at least one image per class")
    present = {d.label for d in train}
    n_classes = max(present) + 1
    missing = sorted(set(range(n_classes)) - present)
    if missing:
        i, d = next((i, d) for i, d in enumerate(train) if d.label > missing[0])
        raise SplitError(
            f"{source}: {train_name} entry {i} {_show(d)}: label {d.label} leaves label(s) {_listed(missing)} "
            f"without any {train_name} image; expected {train_name} labels 0..K-1 with none missing"
        )
    for part in names[1:]:
        for i, d in enumerate(parts[part]):
            if d.label >= n_classes:
                raise SplitError(
                    f"{source}: {part} entry {i} {_show(d)}: label {d.label} is outside 0..{n_classes - 1} "
                    f"(the {train_name} list has {n_classes} classes)"
                )
    return n_classes


def check_names(
    parts: Mapping[str, Sequence[Datum]], source: str, allowed_duplicate_names: Iterable[str] = ()
) -> None:
    """SplitError unless each label has one class name across all parts and no two labels share a name
    (except the names in `allowed_duplicate_names`)."""
    first: dict[int, tuple[str, str, int]] = {}  # label -> (class name, part, entry) where first seen
    for part, items in parts.items():
        for i, d in enumerate(items):
            seen = first.setdefault(d.label, (d.classname, part, i))
            if seen[0] != d.classname:
                raise SplitError(
                    f"{source}: {part} entry {i} {_show(d)}: class name {d.classname!r} differs from "
                    f"{seen[0]!r} given to label {d.label} at {seen[1]} entry {seen[2]}; expected one class "
                    "name per label"
                )
    allowed = set(allowed_duplicate_names)
    by_name: dict[str, int] = {}
    for label in sorted(first):
        name, part, i = first[label]
        other = by_name.setdefault(name, label)
        if other != label and name not in allowed:
            raise SplitError(
                f"{source}: {part} entry {i}: class name {name!r} is given to label {label} and to label "
                f"{other}; expected a distinct name per class"
            )


def check_split(
    parts: Mapping[str, Sequence[Datum]], source: str, allowed_duplicate_names: Iterable[str] = ()
) -> int:
    """check_labels + check_names: the parts (the first is the train list) form one labelling of K classes.

    `allowed_duplicate_names`: the published CLIP ImageNet list names two pairs of wnids alike.
    """
    n_classes = check_labels(parts, source)
    check_names(parts, source, allowed_duplicate_names)
    return n_classes


def class_index(lines: Sequence[tuple[int, str]], source: str) -> dict[str, int]:
    """name -> label (its position) of a class list read as (line number, name) pairs; a repeated name is
    an error naming both lines."""
    out: dict[str, int] = {}
    line_of: dict[str, int] = {}
    for line, name in lines:
        if name in out:
            raise SplitError(
                f"{source}, line {line}: class {name!r} repeats line {line_of[name]}; expected each class once"
            )
        out[name] = len(out)
        line_of[name] = line
    return out


def numbered_lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of a text file."""
    with open(path) as f:
        return [(n, text) for n, line in enumerate(f, start=1) if (text := line.strip())]


def lookup_class(index: Mapping[str, int], name: str, source: str, line: int, listing: str) -> int:
    """The label of `name` in a class list, or a SplitError naming the file, the line and the list."""
    try:
        return index[name]
    except KeyError:
        raise SplitError(
            f"{source}, line {line}: class {name!r} is not in {listing}; expected one of its "
            f"{len(index)} classes"
        ) from None
