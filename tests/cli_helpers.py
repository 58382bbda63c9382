"""Helpers for the tests of the command line's promises: a one-line error, a few X-ray files."""
from __future__ import annotations

import os

import cv2


def one_line_error(capsys, flag: str | None = None) -> str:
    """The command's error as printed: exactly one line with "error:" (naming ``flag`` when given),
    no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    if flag:
        assert flag in lines[0], err
    return lines[0]


def write_xrays(folder, n: int = 3, size: int = 40, names=None) -> list[str]:
    """A few grey synthetic X-ray-like PNGs in ``folder`` (``names`` may hold subfolders); their paths."""
    from tfxai.synthetic import make_synthetic_xrays

    os.makedirs(folder, exist_ok=True)
    data = make_synthetic_xrays(n, size, seed=3)
    names = names or [f"scan{i}.png" for i in range(n)]
    paths = []
    for img, name in zip(data.images, names):
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        assert cv2.imwrite(path, img)
        paths.append(path)
    return paths
