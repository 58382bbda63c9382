"""``tfxai serve``: a local web page and JSON API for triage with a trained model.

* :mod:`tfxai.serve.engine`: :class:`Engine` holds the classifier and one worker thread that
  sends whatever uploads are waiting through the model together (one model call, one OOD check
  and one Grad-CAM pass per batch), and renders overlays on the original image.
* :mod:`tfxai.serve.jobs`: :class:`ExplainJobs`, the other explanation methods (Grad-CAM++,
  Faster Score-CAM, LIME) run one job at a time in the background, with progress.
* :mod:`tfxai.serve.app`: :func:`create_app`, the FastAPI application (page, static files, API
  routes on one router, errors).
* :mod:`tfxai.serve.guard`: the middleware in front of it (Host check, token, body limit,
  security headers).
* :mod:`tfxai.serve.site`: ``tfxai serve --web``, an exported web app served as static files.

Importing this package loads neither TensorFlow nor FastAPI.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {".engine": ("Engine", "ServeSettings", "Upload", "Outcome"),
            ".jobs": ("ExplainJobs",),
            ".app": ("create_app", "serve_forever")}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
