"""Flags shared by the commands, and argparse types that check a value's range at the boundary.

One name per concept across all commands: ``--output-dir``, ``--checkpoint``, ``--data-dir``,
``--seed``, ``--learning-rate`` (old spelling ``--lr``), ``--progress/--no-progress`` (old spelling
``--quiet``), ``--threshold``. A bad value stops with one line naming the flag and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import math

from ..data import RESIZE_MODES, TRAIN_RESIZE_MODES
from ..errors import ConfigError

class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``tfxai train: error: argument --tta: ...``);
    ``commands``: the parser of each subcommand, by name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str):  # noqa: D401 - argparse's signature
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def flag_of(parser: argparse.ArgumentParser, field: str) -> str | None:
    """The flag that sets configuration ``field`` (``--class-weights`` for ``class_weighting``), or
    None. A flag whose value goes into a config field declares that field as its ``dest``: the
    flag declarations are the one table of flags and fields."""
    for action in parser._actions:  # argparse keeps no public list of a parser's flags
        if action.dest == field and action.option_strings:
            return action.option_strings[0]
    return None


def config_error_message(parser: argparse.ArgumentParser, err: ConfigError) -> str:
    """``--learning-rate: must be ...`` when a flag of ``parser`` set the field, else the error as is."""
    flag = None if err.source else flag_of(parser, err.field)
    return f"{flag}: {err.message}" if flag else str(err)


# ----------------------------------------------------------------------------- value types
def int_range(low: int | None = None, high: int | None = None):
    """An argparse type: a whole number within [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_bounds(low, high)}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False,
                high_open: bool = False):
    """An argparse type: a finite number within [low, high] (``low_open``/``high_open`` exclude the end)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
            hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be in {lo or '(-inf'}, {hi or 'inf)'}, got {text}")
        return value
    parse.__name__ = "float"
    return parse


def _bounds(low, high) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    return f">= {low}" if low is not None else f"<= {high}"


def json_object(text: str) -> dict:
    """An argparse type: a JSON object such as ``{"width": 16}``."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected JSON such as '{{\"width\": 16}}', got {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"width\": 16}}', got {text!r}")
    return value


def file_globs(text: str) -> str:
    """An argparse type: one or more comma-separated file-name globs such as ``NORMAL2-*``."""
    if not any(g.strip() for g in text.split(",")):
        raise argparse.ArgumentTypeError(f"expected a file-name glob such as 'NORMAL2-*', got {text!r}")
    return text


def file_stem(text: str) -> str:
    """An argparse type: a plain file name stem (letters, digits, ``_ . -``), never a path."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", text):
        raise argparse.ArgumentTypeError(f"must be a plain name of letters, digits, '_', '.' or '-', got {text!r}")
    return text


def fraction(text: str) -> float:
    return float_range(0.0, 1.0)(text)


POSITIVE = int_range(1)
NON_NEGATIVE = int_range(0)
IMAGE_SIZE = int_range(16, 1024)


# ----------------------------------------------------------------------------- shared flags
def add_output_dir(p: argparse.ArgumentParser, help: str, required: bool = False, default: str | None = None) -> None:
    p.add_argument("--output-dir", required=required, default=default, metavar="DIR", help=help)


def add_checkpoint(p: argparse.ArgumentParser, help: str = "a trained model: best_model.keras or a .tflite file",
                   required: bool = True, group=None) -> None:
    (group or p).add_argument("--checkpoint", required=required if group is None else False, metavar="MODEL",
                              help=help)


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="random seed (the same seed gives the same result)")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars (--no-progress for logs and scripts)")
    p.add_argument("--quiet", dest="progress", action="store_false",
                   help="same as --no-progress (old spelling, kept for one release)")


def add_learning_rate(p: argparse.ArgumentParser, default: float, help: str = "Adam's learning rate",
                      unless: str | None = None) -> None:
    """``unless``: what else may set the rate (``"the recipe's"``): the flag is then None unless typed."""
    shown = f"default {default:g}" + (f", or {unless}" if unless else "")
    p.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float_range(0.0, 1.0, low_open=True),
                   default=None if unless else default, help=f"{help} ({shown}; --lr is the old spelling)")


def add_threshold(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=fraction,
                   help="decision threshold for the positive class (default: the one stored with the model)")
    p.add_argument("--class-names", type=lambda t: [c.strip() for c in t.split(",") if c.strip()],
                   help="comma-separated class names, for a model that carries none (with --threshold)")


def add_tta(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tta", type=int_range(1, 64), default=1,
                   help="test-time augmentation: average this many mildly shifted/contrasted views (1 = off); "
                        "the threshold (and temperature) is then chosen again on the validation split of "
                        "--data-dir under the same TTA (tfxai.tta), never the one chosen without it")


def add_resize_mode(p: argparse.ArgumentParser, unless: str | None = None) -> None:
    """``unless``: what else may set the mode (``"the recipe's"``): the flag is then None unless typed."""
    p.add_argument("--resize-mode", default=None if unless else "pad", choices=RESIZE_MODES,
                   help="pad: keep aspect ratio, pad to square (default" + (f", or {unless}" if unless else "")
                        + "); squash; crop: centre square")


def add_inference_resize_mode(p: argparse.ArgumentParser) -> None:
    """``--resize-mode`` of a command that uses a trained model: None (the model's own) unless typed."""
    p.add_argument("--resize-mode", choices=RESIZE_MODES,
                   help="how files are fitted to the model's square input (default: the model's own, chosen "
                        "at training time from its training files; override only for models trained before "
                        "tfxai chose it, e.g. squash for a model trained on square copies)")


def add_train_resize_mode(p: argparse.ArgumentParser, unless: str | None = None) -> None:
    """``--resize-mode`` of a training run, with ``auto`` (tfxai.data.geometry); ``unless`` as above."""
    p.add_argument("--resize-mode", default=None if unless else "auto", choices=TRAIN_RESIZE_MODES,
                   help="auto: squash at inference when every training file is square (pre-squashed "
                        "copies such as Kermany's 224-px set), else keep the aspect ratio and pad, in "
                        "training and inference (default" + (f", or {unless}" if unless else "")
                        + "); pad, squash, crop: used for training and inference as asked")


def add_data_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="dataset root with <split>/<class>/<image> folders (Kaggle chest_xray "
                                      "layout) or a MedMNIST .npz file")
    p.add_argument("--dataset", choices=("pneumoniamnist",),
                   help="a named dataset instead of --data-dir (PneumoniaMNIST from the cache)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=False,
                   help="allow downloading --dataset when it is not cached (off: nothing is downloaded)")


def add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback of an error")
