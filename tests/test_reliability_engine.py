"""Reliability of runs (issue 11, engine side): every item reproduced, kill points simulated
deterministically (a write made to fail), never by sleeping."""

import os
import stat

import pytest
import torch

from caspl.utils.checkpoint import atomic_save, atomic_write_text


# ---------------------------------------------------------------------------- 17: outputs respect the umask
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_save({"w": torch.ones(2)}, tmp_path / "a.pth")
        atomic_write_text("x\n", tmp_path / "b.txt")
        with open(tmp_path / "plain.txt", "w") as f:  # what an ordinary open() gives under this umask
            f.write("x")
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~umask
    for name in ("a.pth", "b.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
