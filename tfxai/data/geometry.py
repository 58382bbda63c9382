"""The shape of the training files, and the inference resize that shows a model what it learned from.

A model learns the geometry of its training images. Kermany's widely shared 224-px copies were
*squashed* to squares by a third party, while a hospital's films are 1.2-1.5 times wider than tall.
Letterboxing such a film (``pad``) shows a model trained on the squashed copies black bars and
narrow lungs it never saw: measured on the 40 native originals of the Kermany data, the default
model's out-of-distribution guard fired on 37 and labels flipped; squashed like the training
copies, on none. So the resize used at inference is chosen from the training files themselves:

* ``auto`` (the default of ``tfxai train``): when every training file is square (within
  ``SQUARE_TOLERANCE``, i.e. pre-squashed copies), inference squashes (``squash``), as the copies
  were made; otherwise training and inference both keep the aspect ratio (``pad``), so the model
  learns the letterbox it will be shown.
* ``pad``, ``squash``, ``crop``: used for training and inference alike, as asked.

The summary (:func:`describe_geometry`) and the reason (:func:`choose_resize`) are stored with the
model's facts, so `predict`, `evaluate`, `explain`, `serve` and the exports all resize the same way.
"""
from __future__ import annotations

import numpy as np

from .decode import RESIZE_MODES

TRAIN_RESIZE_MODES = ("auto", *RESIZE_MODES)
SQUARE_TOLERANCE = 0.02  # |width / height - 1| below this counts as square


def training_decode_mode(requested: str) -> str:
    """How training images are decoded for ``requested`` (one of TRAIN_RESIZE_MODES): ``auto``
    decodes with ``pad``, which leaves square files as they are (the same as ``squash``) and
    keeps the aspect ratio of the others."""
    if requested not in TRAIN_RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {TRAIN_RESIZE_MODES}, got {requested!r}")
    return "pad" if requested == "auto" else requested


def _quantiles(values: np.ndarray, digits: int) -> dict:
    q = np.quantile(values, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {k: round(float(v), digits) for k, v in zip(("min", "p05", "median", "p95", "max"), q)}


def describe_geometry(source_hw) -> dict:
    """Summary of source image shapes ``source_hw`` int (N, 2) = (height, width), N >= 1:
    ``images``, ``square`` (count within SQUARE_TOLERANCE), ``all_square``, and the quantiles of
    ``aspect_w_over_h``, ``height_px`` and ``width_px``."""
    hw = np.asarray(source_hw, np.float64).reshape(-1, 2)
    if not len(hw) or (hw <= 0).any():
        raise ValueError(f"source_hw must be positive (height, width) pairs, got shape {hw.shape}")
    aspect = hw[:, 1] / hw[:, 0]
    square = int((np.abs(aspect - 1.0) <= SQUARE_TOLERANCE).sum())
    return {"images": int(len(hw)), "square": square, "all_square": square == len(hw),
            "aspect_w_over_h": _quantiles(aspect, 3), "height_px": _quantiles(hw[:, 0], 0),
            "width_px": _quantiles(hw[:, 1], 0)}


def choose_resize(requested: str, geometry: dict | None) -> tuple[str, str]:
    """(the resize mode inference uses, a sentence saying which and why) for a run asked to use
    ``requested`` on training files described by ``geometry`` (None: unknown)."""
    training_decode_mode(requested)  # checks the name
    if geometry is None:
        mode = "pad" if requested == "auto" else requested
        return mode, f"the training files' shapes are unknown; inference uses {mode!r}"
    n, square = geometry["images"], geometry["square"]
    a = geometry["aspect_w_over_h"]
    shapes = (f"all {n:,} training images are square" if geometry["all_square"] else
              f"{n - square:,} of {n:,} training images are not square (width/height {a['p05']:.2f}-"
              f"{a['p95']:.2f}, median {a['median']:.2f})")
    if requested == "auto":
        if geometry["all_square"]:
            return "squash", (f"{shapes}, so they were resized without keeping the aspect ratio "
                              f"(pre-squashed copies); inference squashes too (resize mode 'squash')")
        return "pad", (f"{shapes}; training and inference keep the aspect ratio and pad to a square "
                       f"(resize mode 'pad')")
    note = ""
    if requested == "pad" and geometry["all_square"]:
        note = ("; but the model never sees padding in training, so wider films will look unlike "
                "its training images (--resize-mode auto squashes them)")
    return requested, f"{shapes}; training and inference use resize mode {requested!r}, as asked{note}"
