"""Trainers of the project; importing this package registers them all."""

from trainers import zsclip  # noqa: F401
