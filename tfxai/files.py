"""Everything tfxai writes to disk, written so that a user's mistake cannot destroy data.

- :func:`write_atomic` (and :func:`write_json`, :func:`write_csv`, :func:`save_model`): a crash
  never leaves half a file under the final name.
- :class:`OutputFolder`: the folders tfxai writes into. It refuses a folder that is, contains or
  lies inside an input, records every entry it writes in a marker file, never replaces a file
  that tfxai (or this command) did not write, and ``--overwrite`` removes only recorded entries.
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
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from . import __version__
from .errors import ModelFileError, OutputError

log = logging.getLogger(__name__)

RUN_CONFIG_NAME = "run_config.json"
BEST_MODEL_NAME = "best_model.keras"
MARKER_NAME = ".tfxai-output.json"
MODEL_FACTS_NAME = "tfxai.json"  # entry inside a .keras zip
_TMP_PREFIX = ".tmp-"


# ----------------------------------------------------------------------------- atomic writes
def write_atomic(path: str, writer: Callable[[str], object]) -> str:
    """Call ``writer(tmp_path)`` then rename onto ``path``: a crash never leaves half a file.

    A full disk raises :class:`OutputError` naming ``path`` (the old file, if any, is intact).
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=os.path.splitext(path)[1], dir=folder)
    except OSError as err:
        raise OutputError(f"cannot write in {folder!r}: {err.strerror or err}") from err
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(f"the disk is full while writing {path!r}; free some space and run "
                              f"the same command again") from err
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


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
        if not os.path.exists(self.marker_path) and not os.listdir(self.root):
            self._record([])  # a new folder is marked at once, so scans skip it from the start

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
        for e in sorted(os.listdir(self.root)):
            if e == MARKER_NAME or e in written or e.startswith(_TMP_PREFIX):
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
            if not os.listdir(self.root):
                return
            raise OutputError(f"--overwrite refuses {self.root!r}: it is not a folder tfxai wrote "
                              f"(no {MARKER_NAME}); remove it yourself if you mean it")
        unknown = self.unknown_entries()
        if unknown:
            raise OutputError(f"--overwrite refuses {self.root!r}: it holds {len(unknown)} file(s) tfxai "
                              f"did not write ({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''})")
        for entry in os.listdir(self.root):
            p = os.path.join(self.root, entry)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.remove(p)
        log.info("removed the earlier tfxai outputs in %s (--overwrite)", self.root)


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
    from .preprocessing import SERIALIZABLE_LAYERS

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
