"""The ``tfxai`` command line: ``tfxai <command> [flags]``; ``main(argv) -> int`` for tests.

Each command lives in ``tfxai/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``tfxai --help``
stays fast. User errors (bad folders, missing files, out-of-range flags) print one clear line and
return 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .commands._args import Parser, add_debug, config_error_message
from .data.decode import max_file_bytes, max_pixels
from .errors import DEBUG_ENV, ConfigError, TfxaiError

COMMANDS = {
    "train": "train a pneumonia-vs-normal classifier on a folder of X-rays or a MedMNIST .npz",
    "evaluate": "clinical metrics, calibration and plots for a trained model (.keras or .tflite)",
    "predict": "classify X-ray files (JPEG/PNG/DICOM) and save Grad-CAM overlays",
    "explain": "Grad-CAM, Grad-CAM++, Score-CAM and LIME side by side, with faithfulness measures",
    "prune": "one-shot vs iterative magnitude pruning (tfmot), measured",
    "export": "TFLite export (float32/dynamic/float16/int8) and SavedModel, measured; an Android file; an offline web app",
    "ensemble": "several trained models (the folds of a k-fold run, or seeds) as one model with its own threshold",
    "demo": "generate synthetic X-rays, train, evaluate and explain in a few minutes, offline",
    "serve": "a local web page and JSON API: drop X-rays, see the class, probability and Grad-CAM (--web: an exported web app)",
}


def _command_module(name: str):
    return importlib.import_module(f"tfxai.commands.{name}")


class _Formatter(logging.Formatter):
    """Progress messages plain, problems prefixed: ``warning: skipped a.jpeg: file is empty``."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        elif record.levelno < logging.INFO:
            text = f"debug {record.name}: {text}"
        return text


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``only`` subcommand gets its arguments (and its module imported), so
    ``tfxai --help`` answers at once and one command never pays for another's imports."""
    parser = Parser(
        prog="tfxai", description="Explainable, edge-deployable chest X-ray pneumonia triage "
        "(TensorFlow/Keras 2, CPU, offline). 'tfxai <command> --help' lists a command's flags.")
    parser.add_argument("--version", action="version", version=f"tfxai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, help_text in COMMANDS.items():
        p = parser.commands[name] = sub.add_parser(name, help=help_text, description=help_text)
        add_debug(p)
        if only == name:
            _command_module(name).add_arguments(p)
    return parser


def _setup_logging(verbose: bool) -> None:
    """Progress (INFO) goes to stdout with the command's other output; warnings and errors to stderr."""
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [out, err]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # before anything loads TensorFlow: its C++ log is shown (tfxai._keras)
        os.environ[DEBUG_ENV] = "1"
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only=command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad flag (already reported in one line)
        return int(done.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    _setup_logging(args.verbose)
    prefix = f"tfxai {args.command}: error:"
    try:
        max_pixels(), max_file_bytes()  # a bad $TFXAI_MAX_PIXELS / $TFXAI_MAX_FILE_MB stops here, once
        return int(_command_module(args.command).run(args) or 0)
    except ConfigError as err:
        if args.debug:
            raise
        print(f"{prefix} {config_error_message(parser.commands[args.command], err)}", file=sys.stderr)
    except TfxaiError as err:
        if args.debug:
            raise
        print(f"{prefix} {err}", file=sys.stderr)
    except (OSError, ValueError) as err:
        # Bad input that reached a library before a check named it: one line, not a traceback.
        if args.debug:
            raise
        print(f"{prefix} {type(err).__name__}: {err} (run with --debug for the traceback)", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"tfxai {args.command}: interrupted; a training run resumes from its last completed "
              f"epoch when started again with the same --output-dir", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())


def main_entry() -> None:
    """Console-script entry point (``tfxai ...``)."""
    sys.exit(main())
