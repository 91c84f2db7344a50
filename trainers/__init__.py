"""Trainers of the project; importing this package registers them all."""

import caspl as _core  # noqa: F401  (first: it silences clip's pkg_resources warning)
from trainers import caspl, cocoop, coop, ivlp, linear_probe, maple, promptsrc, zsclip  # noqa: F401
