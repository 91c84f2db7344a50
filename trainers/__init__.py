"""Trainers of the project; importing this package registers them all."""

from trainers import caspl, cocoop, coop, ivlp, linear_probe, maple, promptsrc, zsclip  # noqa: F401
