"""Dassl-style logging: everything printed goes to the console and to <output>/log.txt."""

import sys
import time
from pathlib import Path
from typing import TextIO


class Tee:
    """A stdout stand-in writing to the console and to a log file."""

    def __init__(self, console: TextIO, fpath: Path) -> None:
        self.console = console
        self.file = open(fpath, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, msg: str) -> None:
        self.console.write(msg)
        self.file.write(msg)

    def flush(self) -> None:
        self.console.flush()
        self.file.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.file.close()


def setup_logger(output_dir: str) -> Tee:
    """Tee stdout into <output_dir>/log.txt; an existing log.txt is kept as log.txt-<time>."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fpath = out / "log.txt"
    if fpath.exists():
        fpath.rename(out / f"log.txt-{time.strftime('%Y-%m-%d-%H-%M-%S')}")
    tee = Tee(sys.stdout, fpath)
    sys.stdout = tee
    return tee


class _Quiet:
    """Swallows writes (non-zero ranks under torchrun)."""

    def __init__(self, console: TextIO) -> None:
        self.console = console

    def write(self, msg: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        pass


def silence_stdout() -> "_Quiet":
    """Discard prints until close_logger."""
    quiet = _Quiet(sys.stdout)
    sys.stdout = quiet
    return quiet


def close_logger(tee: "Tee | _Quiet") -> None:
    """Undo setup_logger (tests run several trainings in one process)."""
    if sys.stdout is tee:
        sys.stdout = tee.console
    tee.close()
