"""Download, check, safely extract and move dataset archives into a data root, never overwriting anything.

Used by `tools/prepare_data.py --download-archives`. An archive is streamed to a temporary file next to its
final name (`<root>/archives/<folder>/<file>`), extracted into a temporary folder inside the root (so the
final renames stay on one file system), and only then moved into place: whatever already exists is kept,
and a failed download or a bad archive leaves nothing behind in the dataset folders.
"""

import errno
import gzip
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from caspl.data.io import chmod_as_created

GDRIVE = "gdrive:"  # an Archive URL "gdrive:<id>" is a Google Drive file id, fetched with gdown
CHUNK = 1 << 20
TIMEOUT_S = 60  # per socket operation, not for the whole download
USER_AGENT = "caspl-prepare-data/1.0"  # some hosts answer 403 to urllib's default agent
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
# Errors that mean the file is not a readable archive (as opposed to, say, a full disk).
CORRUPT = (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error)

Downloader = Callable[[str, str], None]  # (Google Drive file id, output path)


class ArchiveError(Exception):
    """An archive that could not be fetched or installed; `status` is the table's status for it."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # "download failed" | "bad archive" | "extraction failed"


@dataclass(frozen=True)
class Archive:
    """One downloadable file of a dataset and where its contents go under the data root."""

    urls: tuple[str, ...]  # tried in order (mirrors of the same file); "gdrive:<id>" for Google Drive
    filename: str  # its suffix picks the format: .tar.gz/.tgz/.tar/.zip, anything else is a plain file
    moves: tuple[tuple[str, str], ...]  # (path inside the extracted archive, path under the data root)
    provides: tuple[str, ...] = ()  # paths under the root that show it is installed (default: move targets)
    inner: str = ""  # an archive inside the archive, extracted in turn (Caltech's zip holds a tar.gz)
    md5: str = ""  # checked when known

    @property
    def targets(self) -> tuple[str, ...]:
        return self.provides or tuple(dst for _, dst in self.moves)


@dataclass
class Installed:
    """What an install did: the source it used and the paths it created or left alone (under the root)."""

    source: str
    moved: list[str]
    kept: list[str]


def display_url(url: str) -> str:
    """A URL a person can open: Google Drive ids become drive.google.com links."""
    if url.startswith(GDRIVE):
        return f"https://drive.google.com/uc?id={url[len(GDRIVE) :]}"
    return url


def is_installed(archive: Archive, root: str) -> bool:
    """Whether everything the archive provides already exists under `root` (then it is not fetched)."""
    return all(os.path.lexists(os.path.join(root, p)) for p in archive.targets)


def url_download(url: str, output: str) -> None:
    """Stream `url` into `output` with urllib; a short read (dropped connection) is an error."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp, open(output, "wb") as f:
        total = int(resp.headers.get("Content-Length") or 0)
        print(
            f"downloading {url} ({total / 2**20:,.0f} MiB)" if total else f"downloading {url}",
            file=sys.stderr,
        )
        done, tenths = 0, 0
        while chunk := resp.read(CHUNK):
            f.write(chunk)
            done += len(chunk)
            if total and done * 10 // total > tenths:  # a line per 10%: big archives take a while
                tenths = done * 10 // total
                print(f"  {tenths * 10}% of {os.path.basename(output)}", file=sys.stderr)
    if total and done != total:
        raise OSError(f"connection closed after {done:,} of {total:,} bytes")


def fetch(archive: Archive, dest: str, gdrive: Downloader | None) -> str:
    """Download the archive to `dest` through a temp file next to it, trying each URL; returns the one used."""
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)
    errors = []
    for url in archive.urls:
        fd, tmp = tempfile.mkstemp(prefix=f".{archive.filename}.", suffix=".part", dir=folder)
        os.close(fd)
        chmod_as_created(tmp)  # a kept archive is read by the group like the data
        try:
            if url.startswith(GDRIVE):
                if gdrive is None:
                    raise RuntimeError("no Google Drive downloader")
                gdrive(url[len(GDRIVE) :], tmp)
            else:
                url_download(url, tmp)
            if os.path.lexists(dest):  # appeared meanwhile (another run): keep that one
                return url
            os.replace(tmp, dest)
            return url
        except Exception as e:  # noqa: BLE001  (try the next mirror; the table reports them all)
            errors.append(f"{display_url(url)}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise ArchiveError("download failed", "; ".join(errors))


def md5sum(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _escapes(name: str) -> bool:
    """An absolute path (POSIX or Windows drive) or one with a '..' component."""
    p = name.replace("\\", "/")
    return p.startswith("/") or (len(p) > 1 and p[1] == ":") or ".." in p.split("/")


def _unsafe(name: str, why: str) -> ArchiveError:
    return ArchiveError("bad archive", f"refused unsafe member {name!r}: {why}")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _member_target(root: str, name: str) -> str:
    """Where member `name` goes under the real folder `root`: its parent resolved on disk (through the links
    made so far) must lie inside `root`, and the member itself is never written through a link."""
    if not name or _escapes(name):
        raise _unsafe(name, "absolute or '..' path")
    full = os.path.join(root, *[p for p in name.replace("\\", "/").split("/") if p not in ("", ".")])
    parent = os.path.realpath(os.path.dirname(full))
    if not _inside(root, parent):
        raise _unsafe(name, f"its folder resolves to {parent}, outside the extraction folder")
    target = os.path.join(parent, os.path.basename(full))
    if os.path.islink(target):
        raise _unsafe(name, "it would be written through a link of the archive")
    return target


def _link_escapes(root: str) -> str:
    """The first symlink under `root` whose target resolves outside it (after the whole archive), or ""."""
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = os.path.join(dirpath, entry)
            if os.path.islink(path) and not _inside(root, os.path.realpath(path)):
                return os.path.relpath(path, root)
    return ""


def _extract_tar(path: str, dest: str) -> None:
    """Extract regular files, folders and links whose targets stay inside `dest`, one member at a time.

    Nothing depends on the interpreter's `tarfile.data_filter` (absent before Python 3.10.12 / 3.11.4):
    each member's folder is resolved on disk, through the links extracted before it, so a chain of links
    (`a -> b/..`, `a2 -> a/..`, then `a2/x`) cannot lead a write outside; a link's target is resolved the
    same way, no member replaces an existing entry (but a folder may repeat), and special files are
    refused. Files are created with the process umask.
    """
    root = os.path.realpath(dest)
    with tarfile.open(path, "r:*") as tar:
        # members checked one by one as the (possibly compressed) stream is read, so it is read once
        for m in tar:
            target = _member_target(root, m.name)
            if m.isdir():
                if os.path.lexists(target) and not os.path.isdir(target):
                    raise _unsafe(m.name, "a folder over an existing entry")
                os.makedirs(target, exist_ok=True)
                continue
            if os.path.lexists(target):
                raise _unsafe(m.name, "it would replace an entry extracted before it")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if m.issym():
                resolved = os.path.realpath(os.path.join(os.path.dirname(target), m.linkname))
                if m.linkname.startswith("/") or not _inside(root, resolved):
                    raise _unsafe(m.name, f"link to {m.linkname!r} leaves the extraction folder")
                os.symlink(m.linkname, target)
            elif m.islnk():  # a hard link names another member, relative to the archive root
                try:
                    source = _member_target(root, m.linkname)
                except ArchiveError:
                    raise _unsafe(
                        m.name, f"hard link to {m.linkname!r} leaves the extraction folder"
                    ) from None
                if not os.path.isfile(source):
                    raise _unsafe(
                        m.name, f"hard link to {m.linkname!r}, which is not a file extracted before it"
                    )
                os.link(source, target)
            elif m.isfile():
                src = tar.extractfile(m)
                assert src is not None  # a regular file member always has data
                with src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                os.utime(target, (m.mtime, m.mtime))
            else:
                raise _unsafe(m.name, "special file (device, fifo, ...)")
    escaped = _link_escapes(root)  # a dangling link made real by a later member
    if escaped:
        raise _unsafe(escaped, "its link resolves outside the extraction folder")


def _extract_zip(path: str, dest: str) -> None:
    with zipfile.ZipFile(path) as z:
        # zipfile would silently rewrite such names; refuse the archive instead
        for name in z.namelist():
            if _escapes(name):
                raise _unsafe(name, "absolute or '..' path")
        z.extractall(dest)  # checks each member's CRC as it goes


def extract(path: str, dest: str, filename: str) -> None:
    """Extract `path` (format from `filename`) into the folder `dest`; a plain file is copied there."""
    if filename.endswith(TAR_SUFFIXES):
        _extract_tar(path, dest)
    elif filename.endswith(".zip"):
        _extract_zip(path, dest)
    else:
        shutil.copy2(path, os.path.join(dest, filename))


def _rename(src: str, dst: str) -> None:
    """os.rename, or across file systems (a symlinked dataset folder) a copy to a hidden sibling, then rename."""
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        stage = tempfile.mkdtemp(prefix=".partial-", dir=os.path.dirname(dst))
        try:
            staged = os.path.join(stage, "x")
            if os.path.isdir(src):
                shutil.copytree(src, staged, symlinks=True)
            else:
                shutil.copy2(src, staged)
            os.rename(staged, dst)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def _merge(src: str, dst: str, moved: list[str], kept: list[str]) -> None:
    """Move `src` to `dst`; into an existing folder only what it lacks; an existing file is never replaced."""
    if not os.path.lexists(dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        _rename(src, dst)
        moved.append(dst)
    elif os.path.isdir(dst) and os.path.isdir(src) and not os.path.islink(src):
        for name in sorted(os.listdir(src)):
            _merge(os.path.join(src, name), os.path.join(dst, name), moved, kept)
    else:
        kept.append(dst)


def extract_and_move(archive: Archive, path: str, root: str) -> tuple[list[str], list[str]]:
    """Extract into a temp folder inside `root`, check every move source is there, then move them into place."""
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=root)
    try:
        extract(path, tmp, archive.filename)
        if archive.inner:
            inner = os.path.join(tmp, archive.inner)
            if not os.path.isfile(inner):
                raise ArchiveError("bad archive", f"no {archive.inner} inside (its layout may have changed)")
            extract(inner, tmp, archive.inner)
            os.remove(inner)
        absent = [src for src, _ in archive.moves if not os.path.lexists(os.path.join(tmp, src))]
        if absent:  # checked before moving anything, so a changed layout installs nothing
            raise ArchiveError("bad archive", f"no {absent[0]} inside (its layout may have changed)")
        moved: list[str] = []
        kept: list[str] = []
        for src, dst in archive.moves:
            _merge(os.path.join(tmp, src), os.path.join(root, dst), moved, kept)
        return moved, kept
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install(
    archive: Archive, root: str, store: str, gdrive: Downloader | None = None, keep: bool = False
) -> Installed:
    """Fetch `archive` into the folder `store` (unless it is there already), check and install it under `root`.

    The archive file is deleted after a successful install unless `keep`; a corrupt one is deleted only if
    this call downloaded it. Raises ArchiveError.
    """
    path = os.path.join(store, archive.filename)
    downloaded = not os.path.isfile(path)
    source = fetch(archive, path, gdrive) if downloaded else path
    try:
        if archive.md5 and (got := md5sum(path)) != archive.md5:
            raise ArchiveError("bad archive", f"md5 {got} differs from the published {archive.md5}")
        moved, kept = extract_and_move(archive, path, root)
    except (ArchiveError, *CORRUPT) as e:
        if downloaded and os.path.exists(path):
            os.remove(path)
        if isinstance(e, ArchiveError):
            raise
        raise ArchiveError("bad archive", f"corrupt or truncated {archive.filename}: {e}") from None
    except OSError as e:  # e.g. a full disk: the archive itself may be fine, so it stays for the next run
        raise ArchiveError("extraction failed", f"could not extract {path}: {e}") from None
    if not keep:
        os.remove(path)
    return Installed(display_url(source), moved, kept)
