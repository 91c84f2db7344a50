"""Dassl-style logging: everything a run says (stdout and stderr: prints, warnings, errors) goes to the
console and to <output>/log.txt; progress bars stay on the console."""

import sys
import time
import traceback
from pathlib import Path
from typing import TextIO


class Tee:
    """A stdout/stderr stand-in writing to the console and to a log file."""

    def __init__(self, console: TextIO, file: TextIO, skip_progress: bool = False) -> None:
        self.console = console
        self.file = file
        self.skip_progress = skip_progress  # tqdm redraws its bar with "\r": console only

    def write(self, msg: str) -> None:
        self.console.write(msg)
        if not (self.skip_progress and "\r" in msg):
            self.file.write(msg)

    def flush(self) -> None:
        self.console.flush()
        self.file.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> object:  # fileno, encoding, ...: the console's
        return getattr(self.console, name)


class LogSession:
    """stdout and stderr teed into one log file; `close` restores both."""

    def __init__(self, fpath: Path) -> None:
        self.file = open(fpath, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.stdout = Tee(sys.stdout, self.file)
        self.stderr = Tee(sys.stderr, self.file, skip_progress=True)
        sys.stdout, sys.stderr = self.stdout, self.stderr

    def log_exception(self) -> None:
        """The traceback of the exception being handled, into the log only (the console gets it anyway)."""
        self.file.write(traceback.format_exc())
        self.file.flush()

    def close(self) -> None:
        if sys.stdout is self.stdout:
            sys.stdout = self.stdout.console
        if sys.stderr is self.stderr:
            sys.stderr = self.stderr.console
        self.file.close()


def setup_logger(output_dir: str) -> LogSession:
    """Tee stdout and stderr into <output_dir>/log.txt; an existing log.txt is kept as log.txt-<time>."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fpath = out / "log.txt"
    if fpath.exists():
        fpath.rename(out / f"log.txt-{time.strftime('%Y-%m-%d-%H-%M-%S')}")
    return LogSession(fpath)


class _Quiet:
    """Swallows stdout writes (non-zero ranks under torchrun); their stderr stays on the console."""

    def __init__(self, console: TextIO) -> None:
        self.console = console

    def write(self, msg: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def log_exception(self) -> None:
        pass

    def close(self) -> None:
        if sys.stdout is self:
            sys.stdout = self.console


def silence_stdout() -> "_Quiet":
    """Discard prints until close_logger."""
    quiet = _Quiet(sys.stdout)
    sys.stdout = quiet
    return quiet


def close_logger(session: "LogSession | _Quiet") -> None:
    """Undo setup_logger / silence_stdout (tests run several trainings in one process)."""
    session.close()
