"""User-facing errors: the CLI prints their message and exits with status 2, no traceback."""

# Set by `tfxai --debug` before TensorFlow loads: tracebacks, and TensorFlow's C++ log (tfxai._keras).
DEBUG_ENV = "TFXAI_DEBUG"


class TfxaiError(Exception):
    """An error caused by the user's input or environment; its message says what to do."""


class DataError(TfxaiError, ValueError):
    """A dataset folder, file or array is not what tfxai expects."""


class ModelFileError(TfxaiError, ValueError):
    """A model file is missing, unreadable, or unsafe to load."""


class MissingDownloadError(TfxaiError, FileNotFoundError):
    """A file that would have to be downloaded is not on this machine."""


class OutputError(TfxaiError, OSError):
    """An output cannot be written where asked, or would destroy something tfxai did not write."""


class FolderBusyError(OutputError):
    """An output folder is in use by another running tfxai command: ``holder`` says which
    (``tfxai train (pid 4121, since ...)``), ``pid`` is its process id when known."""

    def __init__(self, folder: str, holder: str, pid: int | None):
        super().__init__(f"output folder {folder!r} is in use by {holder}; wait for it to finish or choose "
                         f"another output folder")
        self.folder = folder
        self.holder = holder
        self.pid = pid


class ConfigError(TfxaiError, ValueError):
    """A setting is out of range (:mod:`tfxai.checks`). ``field`` names the configuration field
    (``learning_rate``); the CLI rewrites it as the flag that sets it (``--learning-rate``).
    ``source``: where the value was read (a model file), when no flag set it."""

    def __init__(self, field: str, message: str, source: str | None = None):
        super().__init__(f"{source + ': ' if source else ''}{field}: {message}")
        self.field = field
        self.message = message
        self.source = source
