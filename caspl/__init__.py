"""CasPL toolkit: a lean Dassl-style engine for CLIP prompt learning and Cascade Prompt Learning."""

import warnings

__version__ = "0.1.0"

# OpenAI's `clip` package imports pkg_resources, whose deprecation warning would print on every run.
# Every import of clip in this project comes after this package's (trainers/ imports it first).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
