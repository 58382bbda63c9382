"""The ``tfxai`` command line: ``tfxai <command> [flags]``; ``main(argv) -> int`` for tests.

Each command lives in ``tfxai/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``tfxai --help``
stays fast. User errors (bad folders, missing files) print one clear line and return 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import TfxaiError

COMMANDS = {
    "train": "train a pneumonia-vs-normal classifier on a folder of X-rays or a MedMNIST .npz",
    "evaluate": "clinical metrics, calibration and plots for a trained model (.keras or .tflite)",
    "predict": "classify X-ray files (JPEG/PNG/DICOM) and save Grad-CAM overlays",
    "explain": "Grad-CAM, Grad-CAM++, Score-CAM and LIME side by side, with faithfulness measures",
    "prune": "one-shot vs iterative magnitude pruning (tfmot), measured",
    "export": "TFLite export (float32/dynamic/float16/int8) and SavedModel, measured",
    "demo": "generate synthetic X-rays, train, evaluate and explain in a few minutes, offline",
}


def _command_module(name: str):
    return importlib.import_module(f"tfxai.commands.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``only`` subcommand gets its arguments (and its module imported), so
    ``tfxai --help`` answers at once and one command never pays for another's imports."""
    parser = argparse.ArgumentParser(
        prog="tfxai", description="Explainable, edge-deployable chest X-ray pneumonia triage "
        "(TensorFlow/Keras 2, CPU, offline). 'tfxai <command> --help' lists a command's flags.")
    parser.add_argument("--version", action="version", version=f"tfxai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only == name:
            _command_module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(_command_module(args.command).run(args) or 0)
    except TfxaiError as err:
        print(f"tfxai {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tfxai {args.command}: interrupted; a training run resumes from its last completed "
              f"epoch when started again with the same --output-dir", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())


def main_entry() -> None:
    """Console-script entry point (``tfxai ...``)."""
    sys.exit(main())
