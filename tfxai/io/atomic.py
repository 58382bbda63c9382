"""Files written so that a crash never leaves half of one under the final name.

- :func:`write_atomic` (and :func:`write_bytes`, :func:`write_text`, :func:`write_json`,
  :func:`write_csv`): the file is written under a temporary name beside the target and renamed onto it.
- :func:`write_atomic_dir` (and :func:`atomic_dir`): the same for a folder (a SavedModel, a web
  app): a temporary sibling folder renamed onto the final name once complete.
- :func:`remove_stale_temps`: the temporary entries that killed processes left behind.
- A full disk is an :class:`~tfxai.errors.OutputError` naming the path (:func:`is_disk_full`).
- :func:`write_csv` neutralises spreadsheet formulas in text cells (OWASP CSV injection);
  :func:`display_path` makes any file name printable.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import ModelFileError, OutputError

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"  # temporary entries: ".tmp-<pid>-..." (see remove_stale_temps)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _tmp_prefix() -> str:
    # The writer's pid in the name: a temporary entry left by a killed process can be told from
    # one being written now (remove_stale_temps).
    return f"{TMP_PREFIX}{os.getpid()}-"


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


@contextlib.contextmanager
def _disk_full_named(path: str):
    """A full disk inside the block is an :class:`OutputError` naming ``path``."""
    try:
        yield
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise _disk_full_error(path) from err
        raise


def _temp_beside(path: str, make: Callable[[str], str]) -> str:
    """``make(folder)``: a new temporary entry in ``path``'s folder (created if needed); a full
    disk or an unwritable folder is an :class:`OutputError` naming it."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with _disk_full_named(path):
            os.makedirs(folder, exist_ok=True)
            return make(folder)
    except OutputError:  # a full disk, named (OutputError is an OSError too)
        raise
    except OSError as err:
        raise OutputError(f"cannot write in {folder!r}: {err.strerror or err}") from err


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
        pid_text = name[len(TMP_PREFIX):].split("-", 1)[0]
        if not name.startswith(TMP_PREFIX) or not pid_text.isdigit() or _pid_alive(int(pid_text)):
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
