"""Everything tfxai writes to disk, written so that a user's mistake cannot destroy data.

- :func:`write_atomic` (and :func:`write_json`, :func:`write_csv`, :func:`save_model`): a crash
  never leaves half a file under the final name.
- :func:`write_atomic_dir` (and :func:`atomic_dir`): the same for a folder (a SavedModel, a web
  app): a temporary sibling folder renamed onto the final name once complete.
- :class:`OutputFolder`: the folders tfxai writes into. It refuses a folder that is, contains or
  lies inside an input, records every entry it writes in a marker file, never replaces a file
  that tfxai (or this command) did not write, and ``--overwrite`` removes only recorded entries.
  :meth:`OutputFolder.lock` holds it for one command (:class:`FolderLock`), so two commands never
  write into one folder at once.
- :func:`write_csv` neutralises spreadsheet formulas in text cells (OWASP CSV injection).
- Models: ``.keras`` files carry the facts needed to decide (class names, threshold,
  preprocessing, image size, temperature) inside the file (``tfxai.json`` in the zip), so a model
  copied without its ``run_config.json`` still decides the same way.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import logging
import os
import platform
import secrets
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from . import __version__
from .errors import FolderBusyError, ModelFileError, OutputError

log = logging.getLogger(__name__)

RUN_CONFIG_NAME = "run_config.json"
BEST_MODEL_NAME = "best_model.keras"
MARKER_NAME = ".tfxai-output.json"
LOCK_NAME = ".tfxai-lock"
MODEL_FACTS_NAME = "tfxai.json"  # entry inside a .keras zip
_TMP_PREFIX = ".tmp-"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


# ----------------------------------------------------------------------------- atomic writes
def _tmp_prefix() -> str:
    # The writer's pid in the name: a temporary entry left by a killed process can be told from
    # one being written now (remove_stale_temps).
    return f"{_TMP_PREFIX}{os.getpid()}-"


def is_disk_full(err: BaseException | None) -> bool:
    """True for a full disk or an exhausted quota, or an error caused by one: ``OSError``
    ENOSPC/EDQUOT, or TensorFlow's ``ResourceExhaustedError`` from a checkpoint save ("No space
    left on device")."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in _DISK_FULL:
            return True
        text = str(err)
        if type(err).__name__ == "ResourceExhaustedError" and ("No space left" in text or "quota" in text.lower()):
            return True
        err = err.__cause__
    return False


def free_bytes(path: str) -> int:
    """Bytes free for this user on the filesystem holding ``path`` (its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"`` (powers of 1024)."""
    if abs(n) < 1024:
        return f"{n:.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if abs(n) < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def _disk_full_error(path: str) -> OutputError:
    return OutputError(f"the disk is full while writing {path!r} ({format_bytes(free_bytes(path))} free); free "
                       f"some space and run the same command again")


def _temp_beside(path: str, make: Callable[[str], str]) -> str:
    """``make(folder)``: a new temporary entry in ``path``'s folder (created if needed); a full
    disk or an unwritable folder is an :class:`OutputError` naming it."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        return make(folder)
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise _disk_full_error(path) from err
        raise OutputError(f"cannot write in {folder!r}: {err.strerror or err}") from err


@contextlib.contextmanager
def _disk_full_named(path: str):
    """A full disk inside the block is an :class:`OutputError` naming ``path``."""
    try:
        yield
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise _disk_full_error(path) from err
        raise


def _temp_file(folder: str, suffix: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(), suffix=suffix, dir=folder)
    os.close(fd)
    return tmp


def _temp_dir(folder: str) -> str:
    """A new empty folder with a temporary name in ``folder``; unlike ``mkdtemp`` (0700) it gets
    the usual permissions, which the final folder keeps after the rename."""
    while True:
        tmp = os.path.join(folder, f"{_tmp_prefix()}{secrets.token_hex(4)}")
        try:
            os.mkdir(tmp)
            return tmp
        except FileExistsError:
            continue


def write_atomic(path: str, writer: Callable[[str], object]) -> str:
    """Call ``writer(tmp_path)`` then rename onto ``path``: a crash never leaves half a file.

    A full disk raises :class:`OutputError` naming ``path`` (the old file, if any, is intact).
    """
    tmp = _temp_beside(path, lambda folder: _temp_file(folder, os.path.splitext(path)[1]))
    try:
        with _disk_full_named(path):
            writer(tmp)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


@contextlib.contextmanager
def atomic_dir(path: str):
    """Yield a new, empty temporary folder beside ``path`` to write into; when the block ends
    without an error it is renamed onto ``path`` (a SavedModel, a web app), else removed. A crash
    or a kill, even SIGKILL, leaves either no folder or a complete one under ``path``, never half
    of one.

    An existing ``path`` (an earlier export) is replaced: it is renamed aside and removed after
    the new folder is in place, so a kill between the two renames leaves no folder, not a mixed
    one. A full disk raises :class:`OutputError` naming ``path``.
    """
    path = os.path.abspath(path)
    tmp, old = _temp_beside(path, _temp_dir), None
    try:
        with _disk_full_named(path):
            yield tmp
            if os.path.lexists(path):
                old = _temp_dir(os.path.dirname(path))
                os.replace(path, old)  # onto the empty folder just made: a name no one else uses
            os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover and os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


def write_atomic_dir(path: str, writer: Callable[[str], object]) -> str:
    """Call ``writer(tmp_folder)`` and rename the folder onto ``path`` (see :func:`atomic_dir`).
    Returns ``path``."""
    with atomic_dir(path) as tmp:
        writer(tmp)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_temps(folder: str) -> list[str]:
    """Remove the temporary entries (``.tmp-<pid>-...``) that killed tfxai processes left in
    ``folder``; entries of running processes are kept. Returns the names removed."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        pid_text = name[len(_TMP_PREFIX):].split("-", 1)[0]
        if not name.startswith(_TMP_PREFIX) or not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        p = os.path.join(folder, name)
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.remove(p)
            removed.append(name)
        except OSError as err:
            log.debug("could not remove the stale temporary %s: %s", p, err)
    if removed:
        log.info("removed %d unfinished temporary file(s) of killed runs in %s", len(removed), folder)
    return removed


def write_bytes(path: str, data: bytes) -> str:
    """Write ``data`` atomically (a TFLite flatbuffer, an encoded PNG)."""
    def writer(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    return write_atomic(path, writer)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def dumps_json(obj) -> str:
    """``obj`` as indented JSON (numpy values and objects with ``to_dict`` allowed)."""
    return json.dumps(obj, indent=2, default=_json_default) + "\n"


def write_text(path: str, text: str) -> str:
    """Write ``text`` (UTF-8) atomically; file names that are not valid UTF-8 are backslash-escaped."""
    def writer(tmp):
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            f.write(text)
    return write_atomic(path, writer)


def write_json(path: str, obj) -> str:
    return write_text(path, dumps_json(obj))


def read_json(path: str, what: str = "file") -> dict:
    """A JSON object from ``path``; a clear :class:`ModelFileError` when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            out = json.load(f)
    except (ValueError, OSError) as err:
        raise ModelFileError(f"{path!r} is not a valid JSON {what}: {err}") from err
    if not isinstance(out, dict):
        raise ModelFileError(f"{path!r} is not a valid JSON {what}: expected an object, got "
                             f"{type(out).__name__}")
    return out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """A CSV cell that a spreadsheet will not run: text starting with = + - @ (or a tab/CR) gets a
    leading apostrophe (OWASP). Numbers, including negative ones, are left alone. File names that
    are not valid UTF-8 get ``\\xNN`` escapes."""
    if isinstance(value, str):
        value = display_path(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


def write_csv(path: str, rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Write ``rows`` (dicts) as CSV atomically; columns default to the keys in first-seen order.
    Every text cell passes :func:`safe_cell`."""
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))

    def writer(tmp):
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writerow({c: safe_cell(c) for c in columns})
            for r in rows:
                w.writerow({k: safe_cell(v) for k, v in r.items()})
    return write_atomic(path, writer)


def display_path(path: str) -> str:
    """A file name that can always be printed: bytes that are not UTF-8 become \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# ----------------------------------------------------------------------------- output folders
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
            probe = tempfile.NamedTemporaryFile(prefix=_TMP_PREFIX, dir=self.root, delete=True)
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
    return sorted(e for e in os.listdir(folder) if e != LOCK_NAME and not e.startswith(_TMP_PREFIX))


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


# ----------------------------------------------------------------------------- models
def save_model(model, path: str, facts: dict | None = None) -> str:
    """Save a Keras model atomically (``.keras``), with ``facts`` (class names, threshold, image
    size, preprocessing, temperature ...) stored inside the file as ``tfxai.json``."""
    if not path.endswith(".keras"):
        raise ValueError(f"model path must end in .keras, got {path!r}")

    def writer(tmp):
        model.save(tmp)
        if facts is not None:
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(MODEL_FACTS_NAME, dumps_json(facts))
    return write_atomic(path, writer)


def set_model_entry(path: str, name: str, data: bytes) -> None:
    """Add or replace the extra entry ``name`` (tfxai's facts, the OOD guard) inside the ``.keras``
    zip at ``path``, atomically; Keras ignores entries it does not know."""
    def writer(tmp):
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                if item.filename != name:
                    dst.writestr(item, src.read(item.filename))
            dst.writestr(name, data)
    write_atomic(path, writer)


def read_model_entry(path: str, name: str) -> bytes | None:
    """The bytes of the extra entry ``name`` inside a ``.keras`` zip, or None when absent."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(name) if name in z.namelist() else None
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelFileError(f"{path!r} is not a readable Keras model file: {err}") from err


def update_model_facts(path: str, facts: dict) -> None:
    """Replace the facts stored inside the ``.keras`` file at ``path`` (atomically)."""
    set_model_entry(path, MODEL_FACTS_NAME, dumps_json(facts).encode())


def read_model_json(path: str, name: str, what: str) -> dict | None:
    """The JSON object stored as entry ``name`` inside a ``.keras`` file, or None when absent;
    :class:`ModelFileError` naming ``what`` when it is not a JSON object."""
    data = read_model_entry(path, name)
    if data is None:
        return None
    try:
        out = json.loads(data)
    except ValueError as err:
        raise ModelFileError(f"{path!r}: the {what} stored in the model are not valid JSON: {err}") from err
    if not isinstance(out, dict):
        raise ModelFileError(f"{path!r}: the {what} stored in the model are not a JSON object")
    return out


def read_model_facts(path: str) -> dict | None:
    """The facts stored inside a ``.keras`` file, or None for a model saved without them."""
    return read_model_json(path, MODEL_FACTS_NAME, "facts")


def load_model(path: str):
    """Load a ``.keras`` model with ``safe_mode=True`` (refuses embedded Python code)."""
    from ._keras import keras
    from .layers import SERIALIZABLE_LAYERS

    if not os.path.exists(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    if os.path.isdir(path) or not path.endswith(".keras"):
        raise ModelFileError(
            f"{path!r}: tfxai loads .keras model files (and .tflite through the classifier "
            f"interface); other formats such as .h5 or pickles can carry code and are refused")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True, custom_objects=SERIALIZABLE_LAYERS)
    except ValueError as err:
        if "safe_mode" in str(err) or "lambda" in str(err).lower():
            raise ModelFileError(f"{path!r} contains Python code (a Lambda layer); refusing to "
                                 f"load it: {err}") from err
        raise ModelFileError(f"{path!r} is not a readable Keras model: {err}") from err
    except (OSError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise ModelFileError(f"{path!r} is not a readable Keras model: {err}") from err


def read_run_config(model_path: str) -> dict:
    """The ``run_config.json`` beside a model file, or {} if there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), RUN_CONFIG_NAME)
    if not os.path.exists(path):
        return {}
    return read_json(path, "run configuration")


def library_versions() -> dict[str, str]:
    """Versions of Python, tfxai and the libraries that decide a model's numbers (for run configs)."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform(), "tfxai": __version__}
    for pkg in ("tensorflow", "tf-keras", "numpy", "scikit-learn", "opencv-python-headless",
                "tensorflow-model-optimization", "pydicom", "ai-edge-litert", "tf-keras-vis", "lime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
