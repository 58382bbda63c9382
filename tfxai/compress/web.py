"""``tfxai export --target web``: one static folder (a PWA) that runs the model and Grad-CAM in the
phone's browser, offline after the first visit.

The folder::

    index.html  app.js  ...        the page (tfxai/webapp/), its script, style (base.css: tfxai serve's),
                                   manifest, icons
    model.tflite                   float32; signature "serving_default", input "image" (1, S, S, C)
                                   raw pixels in [0, 255]; outputs "scores", "gradcam", "features"
                                   (:mod:`tfxai.compress.web_model`)
    model.json                     the facts the page decides with, and every file's sha256
    ood.json                       the out-of-distribution guard (both parts), when the model has one
    model_card.json                the model card (the model's own, or a minimal one from its facts)
    runtime/litert/                LiteRT.js (@litertjs/core, Apache-2.0) copied from web/node_modules
                                   (:mod:`tfxai.compress.web_runtime`)
    sw.js                          service worker: precaches the folder; cache name from the hashes
    SHA256SUMS                     ``sha256sum -c SHA256SUMS`` checks a copied folder

The folder is built under a hidden temporary name beside the output and renamed at the end
(:func:`tfxai.io.atomic.atomic_dir`): a failed or killed export leaves no half app under the final name.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ModelFileError, OutputError, TfxaiError
from ..io.atomic import atomic_dir, dumps_json, read_json
from ..io.model_files import read_model_json
from ..io.output_folder import MARKER_NAME, timestamp
from ..model_card import INTENDED_USE
from .measure import gzip_size
from .web_model import GRADCAM_DEFINITION, WebModule, convert_web, tflite_ops
from .web_runtime import RUNTIME_PACKAGE, RUNTIME_VARIANTS, RUNTIME_VERSION, Runtime, copy_runtime, find_runtime

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).resolve().parents[1] / "webapp"
BASE_CSS = Path(__file__).resolve().parents[1] / "serve" / "static" / "style.css"  # tfxai serve's look, as base.css
MODEL_FILE, FACTS_FILE, OOD_FILE, CARD_FILE = "model.tflite", "model.json", "ood.json", "model_card.json"
WEB_COMMAND = "export --target web"


# ----------------------------------------------------------------------------- facts, guard, card
def guard_json(guard) -> dict | None:
    """The OOD guard (:class:`tfxai.ood.OODGuard`) as JSON for the page: ``{"features": part,
    "pixels": part | null, "flat_std": ..., "thumbnail": 16}``, each part ``{"mean": (D,),
    "components": (k, D), "variances": (k,), "threshold"}``; None without a guard."""
    from ..ood import FLAT_STD, THUMBNAIL

    if guard is None:
        return None

    def part(g):
        return None if g is None else {"mean": g.mean.tolist(), "components": g.components.tolist(),
                                       "variances": g.variances.tolist(), "threshold": float(g.threshold),
                                       "n_train": int(g.n_train)}

    return {"features": part(guard), "pixels": part(guard.pixels), "flat_std": FLAT_STD, "thumbnail": THUMBNAIL}


def _wilson(k: int, n: int) -> list[float]:
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def validation_summary(facts: dict, card: dict | None) -> dict:
    """Validation metrics with their 95 % intervals: the model card's evaluation when it has one,
    else the stored metrics with the accuracy's Wilson interval (the only one their counts give)."""
    metrics = dict(facts.get("val_metrics") or {})
    ci = {}
    if metrics.get("n") and isinstance(metrics.get("accuracy"), (int, float)):
        ci["accuracy"] = _wilson(round(metrics["accuracy"] * metrics["n"]), metrics["n"])
    out = {"metrics": metrics, "ci95": ci, "source": "model facts (val_metrics)"}
    if card and card.get("evaluation"):
        out.update(model_card=card["evaluation"], source="model card (evaluation)")
    return out


def minimal_card(facts: dict, checkpoint: str) -> dict:
    """A model card built from a model's stored facts, for models trained before tfxai wrote one.
    Top-level keys as tfxai.model_card's; what the facts do not say is said to be unknown."""
    names = list(facts.get("class_names") or [])
    return {
        "schema": "tfxai minimal model card (from the model's facts; the model has no model_card.json)",
        "model_details": {"file": os.path.basename(checkpoint), "model_type": facts.get("model_type", "unknown"),
                          "input": f"{facts.get('image_size')} px, {facts.get('channels')} channel(s), resize mode "
                                   f"{facts.get('resize_mode', 'pad')}",
                          "preprocessing": facts.get("preprocessing", ""), "trained": facts.get("trained", "unknown"),
                          "classes": names},
        "intended_use": INTENDED_USE,
        "training_data": {"data": os.path.basename(str(facts.get("data", ""))) or "unknown"},
        "evaluation": {"validation": facts.get("val_metrics") or "not stored with the model"},
        "decision_threshold": {"threshold": facts.get("threshold", 0.5),
                               "policy": (facts.get("arguments") or {}).get("threshold_policy", "unknown")},
        "ood_guard": facts.get("ood") or "none stored with the model",
        "limitations": ["Checked only on the data named above; validate prospectively at the site of use.",
                        "Heatmaps show where the model looked, not where the disease is."],
        "ethical_considerations": ["Decision support only, not a diagnosis: a clinician must read every X-ray."],
    }


def read_card(checkpoint: str) -> dict | None:
    """The model card stored inside the ``.keras`` file (``model_card.json``), or beside it; None
    when there is neither. :class:`ModelFileError` for a card that is not a JSON object."""
    card = read_model_json(checkpoint, CARD_FILE, "model card's fields")
    beside = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), CARD_FILE)
    if card is None and os.path.isfile(beside):
        card = read_json(beside, "model card")
    return card


def web_facts(clf, module: WebModule, checkpoint: str, card: dict | None, has_guard: bool) -> dict:
    """``model.json`` without its file list: what the page decides and shows with."""
    facts = dict(clf.facts)
    names = list(clf.class_names)
    return {
        "format": "tfxai-web/1", "tfxai_version": __version__, "exported": timestamp(),
        "source_model": os.path.basename(checkpoint), "model_file": MODEL_FILE,
        "class_names": names, "positive_class": names[1] if len(names) == 2 else None,
        "threshold": float(clf.threshold) if len(names) == 2 else None,
        "threshold_policy": (facts.get("arguments") or {}).get("threshold_policy", "unknown"),
        "temperature": clf.temperature, "temperature_inside": bool(clf.temperature),
        "image_size": int(clf.image_size), "channels": int(clf.channels), "resize_mode": clf.resize_mode,
        "preprocessing": facts.get("preprocessing", ""), "model_type": facts.get("model_type", ""),
        "trained": facts.get("trained", ""),
        "input": {"name": "image", "shape": [1, clf.image_size, clf.image_size, clf.channels],
                  "dtype": "float32", "range": "raw pixels 0-255 (preprocessing inside the model)"},
        "outputs": {"scores": "(1, K) probabilities" + (" (temperature-scaled)" if clf.temperature else ""),
                    "gradcam": f"(1, K, S, S) raw Grad-CAM map per class: {GRADCAM_DEFINITION}",
                    **({"features": "(1, D) penultimate features (OOD guard)"} if module.with_features else {})},
        "gradcam_layer": "/".join(module.layer_path),
        "intended_use": INTENDED_USE,
        "validation": validation_summary(facts, card),
        "ood": OOD_FILE if has_guard else None,
        "model_card": CARD_FILE,
        "runtime": {"package": RUNTIME_PACKAGE, "version": RUNTIME_VERSION, "license": "Apache-2.0",
                    "variants": {k: f"runtime/litert/wasm/{v}.js" for k, v in RUNTIME_VARIANTS.items()}},
    }


# ----------------------------------------------------------------------------- the folder
def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _page_files() -> list[str]:
    names = sorted(p.name for p in PAGE_DIR.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if "index.html" not in names or "sw.js" not in names:
        raise TfxaiError(f"the page's files are missing from {PAGE_DIR} (expected index.html, sw.js, ...): "
                         f"reinstall tfxai")
    return names


def _icon_png(size: int) -> bytes:
    """A plain app icon (a dark square, a white rib-cage-like outline), drawn here so that no
    binary image sits in the repository."""
    import cv2

    img = np.full((size, size, 3), (64, 42, 20), np.uint8)
    c, s = size // 2, size / 192
    for k in range(4):
        axes = (int((38 - 4 * k) * s), int((22 - 2 * k) * s))
        for side in (-1, 1):
            centre = (c + side * int(26 * s), int((70 + 22 * k) * s))
            cv2.ellipse(img, centre, axes, 0, 180, 360, (255, 255, 255), max(2, int(5 * s)), cv2.LINE_AA)
    cv2.line(img, (c, int(40 * s)), (c, int(160 * s)), (255, 255, 255), max(2, int(7 * s)), cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OutputError("could not encode the app icon as PNG")
    return buf.tobytes()


def _manifest(facts: dict) -> dict:
    return {"name": f"tfxai chest X-ray triage ({', '.join(facts['class_names'])})", "short_name": "tfxai",
            "description": "Runs a tfxai model and its Grad-CAM on this device, offline. " + INTENDED_USE,
            "start_url": "./index.html", "scope": "./", "display": "standalone",
            "background_color": "#ffffff", "theme_color": "#142a40",
            "icons": [{"src": f"icon-{n}.png", "sizes": f"{n}x{n}", "type": "image/png", "purpose": "any"}
                      for n in (192, 512)]}


def _write(folder: str, name: str, data: bytes | str) -> None:
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def _service_worker(template: str, cache: str, shell: list[str], variants: dict[str, list[str]]) -> str:
    marker = "/*__TFXAI_PRECACHE__*/"
    if template.count(marker) != 1:
        raise TfxaiError(f"{PAGE_DIR / 'sw.js'} must contain {marker} once: reinstall tfxai")
    config = json.dumps({"cache": cache, "shell": shell, "variants": variants}, indent=1)
    return template.replace(marker, f"const PRECACHE = {config};")


def write_app(folder: str, tflite: bytes, facts: dict, guard: dict | None, card: dict, runtime: Runtime) -> dict:
    """Write the whole app into the empty ``folder``; returns ``model.json`` as written."""
    files = copy_runtime(runtime, folder)
    for name in _page_files():
        if name != "sw.js":
            shutil.copyfile(PAGE_DIR / name, os.path.join(folder, name))
            files.append(name)
    shutil.copyfile(BASE_CSS, os.path.join(folder, "base.css"))
    files.append("base.css")
    generated = {MODEL_FILE: tflite, CARD_FILE: dumps_json(card), "manifest.webmanifest": dumps_json(_manifest(facts)),
                 "icon-192.png": _icon_png(192), "icon-512.png": _icon_png(512)}
    if guard is not None:
        generated[OOD_FILE] = dumps_json(guard)
    for name, data in generated.items():
        _write(folder, name, data)
        files.append(name)
    listed = {n: {"bytes": os.path.getsize(os.path.join(folder, n)), "sha256": sha256_file(os.path.join(folder, n))}
              for n in sorted(files)}
    facts = {**facts, "files": listed}
    _write(folder, FACTS_FILE, dumps_json(facts))
    files.append(FACTS_FILE)
    hashes = {n: sha256_file(os.path.join(folder, n)) for n in sorted(files)}
    # The cache name changes whenever any file does, so a phone drops the old copy for the new one.
    digest = hashlib.sha256("".join(f"{n}:{h}\n" for n, h in sorted(hashes.items())).encode()).hexdigest()
    variant_files = {k: [f"runtime/litert/wasm/{v}.js", f"runtime/litert/wasm/{v}.wasm"]
                     for k, v in RUNTIME_VARIANTS.items()}
    in_variant = {f for names in variant_files.values() for f in names}
    shell = ["./"] + [n for n in sorted(files) if n not in in_variant and not n.endswith("LICENSE.txt")]
    sw = _service_worker((PAGE_DIR / "sw.js").read_text(encoding="utf-8"), f"tfxai-{digest[:16]}", shell, variant_files)
    _write(folder, "sw.js", sw)
    hashes["sw.js"] = sha256_file(os.path.join(folder, "sw.js"))
    _write(folder, "SHA256SUMS", "".join(f"{h}  {n}\n" for n, h in sorted(hashes.items())))
    _write(folder, MARKER_NAME, dumps_json({"tool": "tfxai", "version": __version__, "note": "written by tfxai: "
                                            "the files and folders it created here (used by --overwrite)",
                                            "entries": {n.split("/")[0]: WEB_COMMAND for n in [*hashes, "SHA256SUMS"]}}))
    return facts


def check_app_target(path: str) -> None:
    """Refuse an output that exists and is not an app this command wrote (a file, a folder of
    other things), before any work: :class:`OutputError` naming it."""
    real = os.path.realpath(path)
    for what, p in (("the current directory", os.getcwd()), ("your home directory", os.path.expanduser("~"))):
        if os.path.realpath(p) == real or os.path.realpath(p).startswith(real.rstrip(os.sep) + os.sep):
            raise OutputError(f"output folder {path!r} is or contains {what}; the web app replaces its folder as "
                              f"a whole: choose a new folder such as app/")
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise OutputError(f"output {path!r} exists and is not a folder; choose a new folder name for the web app")
    if not os.listdir(path):
        return
    marker = os.path.join(path, MARKER_NAME)
    try:
        with open(marker, encoding="utf-8") as f:
            entries = json.load(f).get("entries", {})
    except (OSError, ValueError, AttributeError):
        entries = {}
    others = sorted(e for e in os.listdir(path) if e != MARKER_NAME and entries.get(e) != WEB_COMMAND)
    if others:
        raise OutputError(f"output folder {path!r} holds {', '.join(others[:3])}{', ...' if len(others) > 3 else ''}, "
                          f"which 'tfxai {WEB_COMMAND}' did not write; choose a new folder for the web app")


@dataclass(frozen=True)
class WebExport:
    """What :func:`export_web` wrote: the folder, ``model.json`` as written, the Grad-CAM layer and
    the op list of the ``.tflite`` file."""

    folder: str
    facts: dict
    layer: str
    ops: tuple[str, ...]


def export_web(checkpoint: str, output_dir: str, layer: str | None = None, clf=None) -> WebExport:
    """Write the web app for the ``.keras`` model at ``checkpoint`` into ``output_dir`` (replaced
    atomically; see :func:`tfxai.io.atomic.atomic_dir`). ``clf``: the already loaded classifier (with any
    ``--threshold``/``--class-names`` given), else loaded from ``checkpoint``.

    One-line :class:`TfxaiError` (nothing written) for a missing runtime, an output that holds
    other files, a model without a Grad-CAM layer, or a head TFLite cannot run."""
    from ..classifier import load_classifier

    runtime = find_runtime()
    check_app_target(output_dir)
    clf = clf or load_classifier(checkpoint)
    if clf.model is None:
        raise ModelFileError(f"{checkpoint!r}: the web export takes the trained .keras model, not a .tflite file")
    try:
        module = WebModule(clf.model, layer, clf.temperature)
    except ValueError as err:
        raise ModelFileError(f"{checkpoint!r}: no Grad-CAM layer for the web export: {err}") from None
    tflite = convert_web(module)
    card = read_card(checkpoint)
    facts = web_facts(clf, module, checkpoint, card, clf.ood is not None)
    with atomic_dir(output_dir) as tmp:
        written = write_app(tmp, tflite, facts, guard_json(clf.ood),
                            card or minimal_card(clf.facts, checkpoint), runtime)
        ops = tuple(tflite_ops(os.path.join(tmp, MODEL_FILE)))
    log.debug("wrote the web app to %s (%d files)", output_dir, len(written["files"]))
    return WebExport(os.path.abspath(output_dir), written, "/".join(module.layer_path), ops)


def download_sizes(folder: str) -> dict:
    """Bytes a browser downloads to install the app in ``folder``, for each runtime variant (it
    fetches one): ``{variant: {"raw": bytes, "gzip": bytes}}`` plus ``"files"``: per file."""
    facts = json.loads(Path(folder, FACTS_FILE).read_text())
    names = [*facts["files"], FACTS_FILE, "sw.js"]
    per_file = {n: (os.path.getsize(os.path.join(folder, n)), gzip_size(os.path.join(folder, n)))
                for n in names if not n.endswith("LICENSE.txt")}
    out = {"files": per_file}
    variant_stems = {k: f"runtime/litert/wasm/{v}" for k, v in RUNTIME_VARIANTS.items()}
    for variant, stem in variant_stems.items():
        others = [s for k, s in variant_stems.items() if k != variant]
        chosen = [n for n in per_file if not any(n.startswith(s + ".") for s in others)]
        out[variant] = {"raw": sum(per_file[n][0] for n in chosen), "gzip": sum(per_file[n][1] for n in chosen)}
    return out
