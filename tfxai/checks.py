"""One way to check a setting: every configuration (``TrainConfig``, ``AugmentConfig``,
``ServeSettings``, ``ExplainSettings``, ``ExperimentConfig``, the model options and the model facts)
checks its fields with these functions when it is built. Each raises
:class:`tfxai.errors.ConfigError` naming the field and the value it got
(``epochs: must be a whole number >= 1, got 0``); the CLI rewrites the field as its flag.

Plain functions rather than a validation library: the messages stay the one-line, value-naming
ones the command line prints; nothing is coerced (``"5"`` or ``True`` is not a number here); and
this module imports nothing heavy, so flags and configs are checked before TensorFlow loads.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Collection

from .errors import ConfigError


def check_number(field: str, value, low: float | None = None, high: float | None = None, *,
                 whole: bool = False, low_open: bool = False, high_open: bool = False,
                 optional: bool = False, item: str | None = None) -> None:
    """``value`` is a finite real number (an integer when ``whole``; never a bool) within [``low``,
    ``high``] (an end is excluded when ``low_open``/``high_open``; None: unbounded). ``optional``:
    None passes too. ``item``: which part of ``field`` this is (``'noise'`` of ``augment_config``)."""
    if value is None and optional:
        return
    # bool is an int to Python, but True is never meant as a number of epochs.
    number = not isinstance(value, bool) and isinstance(value, numbers.Integral if whole else numbers.Real)
    ok = number and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        what = "a whole number" if whole else "a finite number"
        _fail(field, item, f"{what}{_range(low, high, low_open, high_open)}", value)


def check_choice(field: str, value, choices: Collection, *, item: str | None = None) -> None:
    """``value`` is one of ``choices`` (``model_type: 'vgg' is not one of (...)``)."""
    if isinstance(value, bool) or value not in choices:
        what = f"{item} is {value!r}," if item else f"{value!r} is"
        raise ConfigError(field, f"{what} not one of {tuple(choices)}")


def check_bool(field: str, value, *, item: str | None = None) -> None:
    """``value`` is True or False (not 0, 1 or "yes")."""
    if not isinstance(value, bool):
        _fail(field, item, "true or false", value)


def check_text(field: str, value, *, optional: bool = False, item: str | None = None) -> None:
    """``value`` is a string with something in it (None passes when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        _fail(field, item, "a non-empty text" + (" or None" if optional else ""), value)


def _range(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def _fail(field: str, item: str | None, expected: str, value) -> None:
    raise ConfigError(field, f"{item + ' ' if item else ''}must be {expected}, got {value!r}")
