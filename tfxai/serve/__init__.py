"""``tfxai serve``: a local web page and JSON API for triage with a trained model.

* :mod:`tfxai.serve.engine`: :class:`Engine` holds the classifier and one worker thread that
  sends whatever uploads are waiting through the model together (one model call, one OOD check
  and one Grad-CAM pass per batch), and renders overlays on the original image.
* :mod:`tfxai.serve.jobs`: :class:`ExplainJobs`, the other explanation methods (Grad-CAM++,
  Faster Score-CAM, LIME) run one job at a time in the background, with progress.
* :mod:`tfxai.serve.app`: :func:`create_app`, the FastAPI application (page, static files, API,
  limits, token, security headers).

Importing this package loads neither TensorFlow nor FastAPI.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"engine": ("Engine", "ServeSettings", "Upload", "Outcome"),
            "jobs": ("ExplainJobs",),
            "app": ("create_app", "serve_forever")}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
