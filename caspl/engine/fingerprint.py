"""What a checkpoint was trained as: the trainer and the config keys that define its model.

Every checkpoint records them, so resuming or evaluating can refuse another run's weights with a list of
the keys that differ (instead of loading same-shaped tensors of another method or setting).
"""

import json
from typing import Any

# Define the weights wherever they are used.
MODEL_KEYS = ("TRAINER.NAME", "MODEL.BACKBONE.NAME")
# Define the run: must match to resume; an evaluation may legitimately differ (new classes, another
# dataset, another seed's data), so --model-dir does not compare them.
RUN_KEYS = ("DATASET.NAME", "DATASET.SUBSAMPLE_CLASSES", "DATASET.NUM_SHOTS", "SEED")
# Leaves of a trainer's node that do not change what is learned: precision, and file locations (a moved
# folder is the same model).
IGNORED_LEAVES = ("PREC", "PATH", "BOOST_PROMPTS")


def _leaves(node: Any, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            out.update(_leaves(value, name))
        elif key not in IGNORED_LEAVES:
            out[name] = value
    return out


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def config_fingerprint(cfg: Any, nodes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The model- and run-defining keys of `cfg` + every leaf of the trainer's config `nodes`
    (e.g. "TRAINER.PROMPTSRC": prompt sizes, depths, initialisation, loss weights), as plain JSON values."""
    fp = {key: _get(cfg, key) for key in MODEL_KEYS + RUN_KEYS}
    for node in nodes:
        try:
            fp.update(_leaves(_get(cfg, node), node))
        except KeyError:
            continue
    return json.loads(json.dumps(fp, sort_keys=True))  # tuples -> lists: comparable with a loaded copy


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any], resume: bool) -> list[str]:
    """'KEY: checkpoint X, this run Y' for each differing key (RUN_KEYS only when resuming)."""
    lines = []
    for key in sorted(set(saved) | set(current)):
        if not resume and key in RUN_KEYS:
            continue
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if a != b:
            lines.append(f"{key}: checkpoint {a!r}, this run {b!r}")
    return lines
