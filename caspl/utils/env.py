"""Environment report printed at the start of a run (Dassl prints torch's collect_env)."""

import platform
import sys

import torch


def collect_env_info() -> str:
    """Python, torch, CUDA and device facts in a few lines (cheap: no subprocesses)."""
    import torchvision  # noqa: PLC0415

    lines = [
        f"Python: {sys.version.split()[0]} ({platform.platform()})",
        f"PyTorch: {torch.__version__}  torchvision: {torchvision.__version__}",
        f"CUDA available: {torch.cuda.is_available()}",
        f"CPU threads: {torch.get_num_threads()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}")
    return "\n".join(lines)
