"""The MediaPipe virtualenv: where it is, and calling :mod:`tfxai.compress.mediapipe_helper` inside it.

Why a second environment: the TFLite metadata writer and the Tasks ``ImageClassifier`` come from
``mediapipe`` 0.10.21, which needs numpy < 2 and protobuf 4; TensorFlow 2.21 needs numpy 2 and
protobuf >= 5 (and ``mediapipe`` 1.x, which does install beside it, pulls opencv-contrib-python
over opencv-python-headless and cannot import its metadata writer). ``make install`` creates
``.venv-mediapipe/`` in the repository from ``requirements-mediapipe.txt`` (pinned, installed
with ``--no-deps``: no jax, no opencv); one venv serves both the writer and the classifier.
``$TFXAI_MEDIAPIPE_PYTHON`` points elsewhere (the venv's ``bin/python``).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from ..errors import TfxaiError

ENV_VAR = "TFXAI_MEDIAPIPE_PYTHON"
VENV_NAME = ".venv-mediapipe"
HELPER = Path(__file__).with_name("mediapipe_helper.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


class MediaPipeError(TfxaiError):
    """The MediaPipe virtualenv is missing or the helper failed inside it."""


def venv_python() -> str:
    """Path of the MediaPipe venv's Python: ``$TFXAI_MEDIAPIPE_PYTHON``, else
    ``<repo>/.venv-mediapipe/bin/python``. Raises :class:`MediaPipeError` (one line saying how
    to create it) when it does not exist."""
    configured = os.environ.get(ENV_VAR)
    path = Path(configured) if configured else REPO_ROOT / VENV_NAME / "bin" / "python"
    if not path.exists():
        where = f"${ENV_VAR}={configured}" if configured else str(path)
        raise MediaPipeError(
            f"the MediaPipe virtualenv is missing ({where} does not exist); run `make install` in "
            f"the repository (or: python3 -m venv {VENV_NAME} && {VENV_NAME}/bin/pip install --no-deps "
            f"-r requirements-mediapipe.txt) and try again")
    return str(path)


def available() -> bool:
    """True when :func:`venv_python` finds the venv."""
    try:
        venv_python()
    except MediaPipeError:
        return False
    return True


def run_helper(command: str, argument: str | dict, timeout: float = 600.0) -> dict:
    """Run ``mediapipe_helper.py <command> <argument>`` in the venv and return its JSON answer.

    ``argument``: a path (read-metadata) or a dict, written to a temporary JSON request file.
    Raises :class:`MediaPipeError` with the helper's last error line when it fails.
    """
    python = venv_python()
    with tempfile.TemporaryDirectory(prefix="tfxai-mp-") as tmp:
        if isinstance(argument, dict):
            request = os.path.join(tmp, "request.json")
            with open(request, "w") as f:
                json.dump(argument, f)
            argument = request
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["GLOG_minloglevel"] = "2"
        try:
            done = subprocess.run([python, str(HELPER), command, str(argument)], capture_output=True,
                                  text=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired as err:
            raise MediaPipeError(f"MediaPipe helper '{command}' took more than {timeout:.0f} s") from err
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise MediaPipeError(f"MediaPipe helper '{command}' failed (exit {done.returncode}): "
                             f"{lines[-1] if lines else 'no message'}")
    try:
        return json.loads(done.stdout)
    except ValueError as err:
        raise MediaPipeError(f"MediaPipe helper '{command}' printed no JSON: {done.stdout[-200:]!r}") from err
