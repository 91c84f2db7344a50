"""Shared fixtures: tiny random CLIPs, a synthetic dataset root, and in-process train.py runs."""

import json
import os
from pathlib import Path

import pytest

# Never reach for the network from tests: weight resolution stops at the local caches.
os.environ.setdefault("CASPL_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Options that make any run CPU-sized: tiny student, 32 px inputs, no worker processes.
TINY_OPTS = [
    "MODEL.BACKBONE.NAME", "tiny-vit",
    "INPUT.SIZE", "(32, 32)",
    "DATALOADER.NUM_WORKERS", "0",
    "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
    "DATALOADER.TEST.BATCH_SIZE", "32",
    "USE_CUDA", "False",
    "TRAIN.PRINT_FREQ", "1000",
]  # fmt: skip

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A datasets folder shared by the session (Synthetic generates itself there on first use)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_clip():
    """The `tiny-vit` random CLIP (float32, eval mode), built once."""
    from caspl.vlm.build import build_clip

    return build_clip("tiny-vit")


def train_argv(
    data_root: Path, output_dir: Path, trainer: str, *opts: str, config_file: str = ""
) -> list[str]:
    """train.py arguments for a tiny run on the Synthetic dataset."""
    argv = [
        "--root", str(data_root),
        "--dataset-config-file", str(REPO / "configs/datasets/synthetic.yaml"),
        "--output-dir", str(output_dir),
        "--trainer", trainer,
        "--seed", "1",
    ]  # fmt: skip
    if config_file:
        argv += ["--config-file", config_file]
    return argv + TINY_OPTS + list(opts)


@pytest.fixture
def run_train(data_root: Path):
    """Run train.main in-process on Synthetic with tiny settings; returns results.json as a dict."""
    import train

    def _run(
        output_dir: Path, trainer: str, *opts: str, config_file: str = "", extra_argv: tuple = ()
    ) -> dict:
        argv = list(extra_argv) + train_argv(data_root, output_dir, trainer, *opts, config_file=config_file)
        assert train.main(argv) == 0
        return json.loads((Path(output_dir) / "results.json").read_text())

    return _run
