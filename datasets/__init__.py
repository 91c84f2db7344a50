"""Dataset wrappers; importing this package registers every dataset in DATASET_REGISTRY."""

from datasets import synthetic  # noqa: F401
