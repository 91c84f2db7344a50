"""CasPL toolkit: a lean Dassl-style engine for CLIP prompt learning and Cascade Prompt Learning."""

__version__ = "0.1.0"
