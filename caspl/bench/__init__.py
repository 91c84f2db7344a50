"""`python -m caspl.bench`: speed and peak memory of boosting, training steps, evaluation and inference.

Every framework measurement sits next to its compute floor (the same model's bare forward/backward on
the same batch), so the table shows what the framework adds. See docs/benchmarks.md.
"""

from caspl.bench.cli import main

__all__ = ["main"]
