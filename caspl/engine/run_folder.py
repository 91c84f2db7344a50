"""One writer per run folder: an exclusive lock held for the life of a run.

The lock is `<output>/.run.lock`, a file locked with flock(2) and holding its owner's pid, host and
command. The kernel drops the flock when the owner dies (even by SIGKILL), so a lock file nobody holds is a
stale one: the next run takes it over and says whose it was. Under torchrun only rank 0 takes the lock (it
is the only writer); the other ranks stop with it, because torchrun ends the job when a worker fails.
"""

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from caspl.utils.checkpoint import clean_stale_temp_files

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows: only the pid check below)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".run.lock"
RESULTS_FILE = "results.json"  # written last by every kind of run: its presence means "finished"


def read_results(path: str | os.PathLike) -> dict[str, Any] | None:
    """A finished run's results.json, or None (absent or unreadable: not finished)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class RunFolderLocked(RuntimeError):
    """Another live run writes into this output folder."""


def _process_start(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot (Linux), to tell a reused pid from its owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(owner: dict[str, Any]) -> str:
    if not owner:
        return "an unknown process"
    cmd = owner.get("command", "")
    started = owner.get("started", "?")
    return (
        f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')} (started {started}"
        + (f": {cmd}" if cmd else "")
        + ")"
    )


class RunLock:
    """Exclusive lock on an output folder; `acquire` raises RunFolderLocked naming the folder and owner."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self.previous_owner: dict[str, Any] | None = None  # a stale lock taken over

    def _read_owner(self, fd: int | None = None) -> dict[str, Any]:
        try:
            if fd is not None:
                os.lseek(fd, 0, os.SEEK_SET)
                raw = os.read(fd, 65536).decode("utf-8", "replace")
            else:
                raw = self.path.read_text(encoding="utf-8", errors="replace")
            return json.loads(raw) if raw.strip() else {}
        except (OSError, ValueError):
            return {}

    def _owner_is_live(self, owner: dict[str, Any]) -> bool:
        """Without flock: the owner is live when it runs on this host with the same start time."""
        if not owner:
            return False
        if owner.get("host") != socket.gethostname():
            return True  # cannot be checked from here: assume live
        pid = int(owner.get("pid", -1))
        if pid <= 0 or not _alive(pid):
            return False
        return owner.get("pid_start") in (None, _process_start(pid))

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                locked = self._flock(fd)
            except BaseException:
                os.close(fd)
                raise
            owner = self._read_owner(fd)
            if locked is False or (locked is None and self._owner_is_live(owner)):
                os.close(fd)
                raise RunFolderLocked(
                    f"output folder {self.folder} is in use by another run: {_describe(owner)}. "
                    f"Wait for it to finish, or choose another --output-dir; if that run is dead (e.g. on "
                    f"another host), delete {self.path}"
                )
            # We hold it; make sure the path was not unlinked (by a releasing owner) since we opened it.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        if owner:
            self.previous_owner = owner
        me = {
            "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        os.fsync(fd)
        self._fd = fd
        return self

    @staticmethod
    def _flock(fd: int) -> bool | None:
        """True: locked; False: held by another process; None: the file system has no flock."""
        if fcntl is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise

    def release(self) -> None:
        """Delete the lock file (while still holding it, so nobody sees a half-released lock) and unlock."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class RunFolder:
    """What surrounds a run in its output folder: the lock (rank 0), and notes to print once log.txt is open."""

    def __init__(self, folder: str | os.PathLike, is_main: bool = True) -> None:
        self.folder = Path(folder)
        self.lock = RunLock(folder) if is_main else None
        self.notes: list[str] = []

    def __enter__(self) -> "RunFolder":
        if self.lock is not None:
            self.lock.acquire()
            if self.lock.previous_owner:
                self.notes.append(
                    f"Took over the stale lock of {self.folder} left by {_describe(self.lock.previous_owner)}"
                )
            # Holding the lock, no one else writes here: temp files of dead writers are leftovers of kills.
            for path in clean_stale_temp_files(self.folder):
                self.notes.append(f"Removed {path} (a temp file left by a killed write)")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.lock is not None:
            self.lock.release()

    def finished(self) -> dict[str, Any] | None:
        """results.json of a finished run in this folder (it is written last), else None."""
        return read_results(self.folder / RESULTS_FILE)

    def say_finished(self, record: dict[str, Any]) -> None:
        """The console line for a finished run that is left alone (its log.txt is not touched)."""
        metrics = record.get("metrics") or {}
        acc = (
            f", accuracy {metrics['accuracy']:.2f}%"
            if isinstance(metrics.get("accuracy"), int | float)
            else ""
        )
        print(
            f"{self.folder} holds a finished run ({record.get('trainer')}, epoch {record.get('epoch')}{acc}; "
            f"{RESULTS_FILE} exists): left as it is. Pass --re-evaluate to evaluate it again."
        )

    def print_notes(self) -> None:
        for note in self.notes:
            print(note)
