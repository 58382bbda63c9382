"""The folders tfxai writes into: :class:`OutputFolder` and its :class:`FolderLock`.

:class:`OutputFolder` refuses a folder that is, contains or lies inside an input, records every
entry it writes in a marker file (``MARKER_NAME``), never replaces a file that tfxai (or this
command) did not write, and ``--overwrite`` removes only recorded entries.
:meth:`OutputFolder.lock` holds it for one command (:class:`FolderLock`), so two commands never
write into one folder at once. :func:`check_output_file` checks a single output file.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable

from .. import __version__
from ..errors import FolderBusyError, OutputError
from .atomic import TMP_PREFIX, remove_stale_temps, write_json

log = logging.getLogger(__name__)

MARKER_NAME = ".tfxai-output.json"
LOCK_NAME = ".tfxai-lock"


def timestamp() -> str:
    """Now, as ``2026-01-05T10:00:00+0000`` (local time with its offset): when a lock was taken,
    when an app was exported."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inside(child: str, parent: str) -> bool:
    """True when ``child`` is ``parent`` or lies below it (both real paths)."""
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


class FolderLock:
    """An exclusive hold on an output folder for one command: ``fcntl.flock`` on ``LOCK_NAME``
    inside it, which names the holder (pid, command, host, start time).

    ``acquire()`` never waits: a folder held by another process (or another hold in this one)
    raises :class:`tfxai.errors.FolderBusyError` naming the folder and the holder's pid. The
    kernel drops the lock when the process ends however it ends (a crash, SIGKILL, a power cut
    leaves no process), so a stale lock file never blocks anyone; ``release()`` (or leaving the
    ``with`` block) removes the file.
    """

    def __init__(self, folder: str, command: str):
        self.folder = os.path.abspath(folder)
        self.command = command
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path!r} is already held by this FolderLock")
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise OutputError(f"cannot lock output folder {self.folder!r}: {err.strerror or err}") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                os.close(fd)
                raise FolderBusyError(self.folder, self._describe(holder), holder.get("pid")) from None
            # The file may have been removed by its last holder between our open and our lock:
            # then we hold a lock on a name no one else sees; start again on the current file.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        info = {"pid": os.getpid(), "command": self.command, "host": platform.node(), "started": timestamp()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError as err:  # a full disk: the lock holds without the note naming its holder
            log.debug("could not write %s: %s", self.path, err)
        remove_stale_temps(self.folder)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # while still locked: no one can hold this file any more
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "FolderLock":
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @staticmethod
    def _holder(fd: int) -> dict:
        # The holder writes its note right after locking: wait a moment for it.
        for _ in range(20):
            try:
                info = json.loads(os.pread(fd, 4096, 0) or b"null")
            except (ValueError, OSError):
                info = None
            if isinstance(info, dict):
                return info
            time.sleep(0.01)
        return {}

    @staticmethod
    def _describe(holder: dict) -> str:
        """``tfxai train (pid 4121, since 2026-01-05T10:00:00+0000)`` from the holder's note."""
        who = f"tfxai {holder['command']}" if holder.get("command") else "another tfxai command"
        details = ", ".join(part for part in (
            f"pid {holder['pid']}" if holder.get("pid") else "",
            f"on {holder['host']}" if holder.get("host") and holder.get("host") != platform.node() else "",
            f"since {holder['started']}" if holder.get("started") else "") if part)
        return f"{who} ({details})" if details else who


class OutputFolder:
    """A folder tfxai writes into, with a marker file recording what it wrote.

    ``OutputFolder(path, command, inputs=(...))`` checks, before any work: that ``path`` is not a
    file; that it is not, does not contain and does not lie inside an input *folder*, and is not
    an input file; that it can be written. ``path(name)`` gives the path for an entry and refuses
    a name that exists but was not written by tfxai, or was written by another command (a training
    run's ``run_config.json`` is safe from ``export``). ``claim(names)`` checks several names up
    front, so a run stops before the work, not after. ``allow_inside``: the folder may lie inside an
    input folder whose scans skip tfxai output folders (explain, predict). ``clear()`` (``--overwrite``) removes only
    entries the marker records and refuses a folder that holds anything else, or that is or
    contains the current or home directory.
    """

    def __init__(self, path: str, command: str, inputs: Iterable[str] = (), create: bool = True,
                 allow_inside: bool = False):
        if not path:
            raise OutputError("the output folder name is empty")
        self.root = os.path.abspath(path)
        self.command = command
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise OutputError(f"output folder {path!r} is an existing file, expected a folder")
        real = _real(self.root)
        for inp in inputs:
            if not inp or not os.path.exists(inp):
                continue
            r = _real(inp)
            if os.path.isdir(r):
                if allow_inside and real != r and _inside(real, r):
                    continue  # scans skip output folders (they hold the marker)
                if _inside(real, r) or _inside(r, real):
                    where = ("is" if real == r else "lies inside" if _inside(real, r) else "contains")
                    raise OutputError(f"output folder {path!r} {where} the input folder {inp!r}; "
                                      f"choose an output folder outside the data")
            elif real == r:
                raise OutputError(f"output folder {path!r} is the input file {inp!r}")
        if create:
            self._create()

    def _create(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(prefix=TMP_PREFIX, dir=self.root, delete=True)
            probe.close()
        except OSError as err:
            raise OutputError(f"cannot write in output folder {self.root!r}: {err.strerror or err}") from err
        if not os.path.exists(self.marker_path) and not _entries(self.root):
            self._record([])  # a new folder is marked at once, so scans skip it from the start

    def lock(self) -> FolderLock:
        """Create the folder (checked as in the constructor) and hold it for this command: a
        :class:`FolderLock`, to use as ``with folder.lock(): ...``. Another command holding it
        raises :class:`tfxai.errors.FolderBusyError` naming the folder and its pid."""
        self._create()
        return FolderLock(self.root, self.command).acquire()

    # -- the marker
    @property
    def marker_path(self) -> str:
        return os.path.join(self.root, MARKER_NAME)

    def written(self) -> dict[str, str]:
        """{entry name: command that wrote it} from the marker ({} when there is none)."""
        if not os.path.exists(self.marker_path):
            return {}
        try:
            with open(self.marker_path, encoding="utf-8") as f:
                entries = json.load(f).get("entries", {})
        except (ValueError, OSError, AttributeError):
            return {}
        return {str(k): str(v) for k, v in entries.items()} if isinstance(entries, dict) else {}

    @property
    def is_tfxai(self) -> bool:
        return os.path.exists(self.marker_path)

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _record(self, names: Iterable[str]) -> None:
        with self._locked():
            entries = self.written()
            new = {n: self.command for n in names if entries.get(n) != self.command}
            if not new and os.path.exists(self.marker_path):
                return
            entries.update(new)
            write_json(self.marker_path, {"tool": "tfxai", "version": __version__,
                                          "note": "written by tfxai: the files and folders it "
                                                  "created here (used by --overwrite)",
                                          "entries": dict(sorted(entries.items()))})

    # -- entries
    def entries(self) -> list[str]:
        """What the folder holds (sorted), without tfxai's lock file and temporary entries; [] when
        it does not exist."""
        return _entries(self.root) if os.path.isdir(self.root) else []

    def _check_name(self, name: str, written: dict[str, str]) -> str:
        if not name or os.path.isabs(name) or name.split(os.sep)[0] in ("", ".", ".."):
            raise ValueError(f"entry name must be a plain relative name, got {name!r}")
        top = name.split(os.sep)[0]
        target = os.path.join(self.root, top)
        if os.path.lexists(target):
            owner = written.get(top)
            if owner is None:
                raise OutputError(f"{target!r} exists and was not written by tfxai; refusing to "
                                  f"replace it (choose another output folder)")
            if owner != self.command:
                raise OutputError(f"{target!r} was written by 'tfxai {owner}'; 'tfxai {self.command}' "
                                  f"will not replace it (choose another output folder)")
        return top

    def claim(self, names: Iterable[str]) -> None:
        """Check that every entry in ``names`` may be written here, and record them."""
        written = self.written()
        tops = [self._check_name(n, written) for n in names]
        self._record(tops)

    def path(self, name: str) -> str:
        """The path of entry ``name`` (a file, or ``sub/folder/file``: the top entry is what counts),
        checked and recorded."""
        self.claim([name])
        return os.path.join(self.root, name)

    def unknown_entries(self) -> list[str]:
        """Entries of the folder that tfxai did not record (its own temp files aside). A subfolder
        that is itself a tfxai output folder with nothing unknown (``eval-test`` inside a run
        folder) counts as tfxai's."""
        written = self.written()
        out = []
        for e in _entries(self.root):
            if e == MARKER_NAME or e in written:
                continue
            sub = os.path.join(self.root, e)
            if (os.path.isdir(sub) and not os.path.islink(sub) and is_output_folder(sub)
                    and not OutputFolder(sub, self.command, create=False).unknown_entries()):
                continue
            out.append(e)
        return out

    def clear(self) -> None:
        """Remove what tfxai wrote here (``--overwrite``). Refuses when the folder holds anything
        else, has no marker, or is (or contains) the current or home directory."""
        real = _real(self.root)
        for what, p in (("the current directory", os.getcwd()), ("your home directory", os.path.expanduser("~"))):
            if _inside(_real(p), real):
                raise OutputError(f"--overwrite refuses {self.root!r}: it is or contains {what}")
        if real == os.path.sep:
            raise OutputError("--overwrite refuses the filesystem root")
        if not os.path.isdir(self.root):
            return
        if not self.is_tfxai:
            if not _entries(self.root):
                return
            raise OutputError(f"--overwrite refuses {self.root!r}: it is not a folder tfxai wrote "
                              f"(no {MARKER_NAME}); remove it yourself if you mean it")
        unknown = self.unknown_entries()
        if unknown:
            raise OutputError(f"--overwrite refuses {self.root!r}: it holds {len(unknown)} file(s) tfxai "
                              f"did not write ({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''})")
        for entry in os.listdir(self.root):
            if entry == LOCK_NAME:
                continue  # held by this command (see FolderLock.release)
            p = os.path.join(self.root, entry)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.remove(p)
        log.info("removed the earlier tfxai outputs in %s (--overwrite)", self.root)


def _entries(folder: str) -> list[str]:
    """The entries of ``folder``, sorted, without tfxai's lock file and temporary entries."""
    return sorted(e for e in os.listdir(folder) if e != LOCK_NAME and not e.startswith(TMP_PREFIX))


def is_output_folder(path: str) -> bool:
    """True for a folder tfxai writes into (it holds the marker): scans of inputs skip these."""
    return os.path.isfile(os.path.join(path, MARKER_NAME))


def check_output_file(path: str, inputs: Iterable[str] = ()) -> str:
    """A single output file (``--output x.png``): refused when it is an input file, an existing
    folder, or lies inside an input folder's tree of images. Returns the absolute path."""
    if os.path.isdir(path):
        raise OutputError(f"output {path!r} is a folder, expected a file name")
    real = _real(path)
    for inp in inputs:
        if inp and os.path.exists(inp) and _real(inp) == real:
            raise OutputError(f"output {path!r} is the input {inp!r}; choose another output name")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(folder) and not os.access(folder, os.W_OK):
        raise OutputError(f"cannot write {path!r}: folder {folder!r} is not writable")
    return os.path.abspath(path)
