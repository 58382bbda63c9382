"""Explaining a set of images end to end, or comparing two models' explanations.

:func:`explain_images` writes per image ``xai_comparison.png`` (+ ``faithfulness_curves.png``),
and for the run ``sample_xray.png``, ``explanations.json``, ``metrics.csv``,
``metrics_summary.csv`` and optionally ``report.html``; it returns the JSON document.
:func:`compare_models` explains the same images with two models (Keras or ``.tflite``: CAM
methods need Keras, LIME works with both) and reports how far the explanations moved.
A file that cannot be read is skipped and listed; the others are kept. Which images, with their
true labels and lesion masks: :func:`tfxai.explain.inputs.collect_images`.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..classifier import Classifier, load_classifier
from ..data.decode import heatmap_to_original, load_image
from ..errors import TfxaiError
from ..io.atomic import display_path, write_csv, write_json
from . import quality as xm
from .factory import make_explainer
from .figures import comparison_figure, curves_figure, sample_figure
from .inputs import ImageItem, resolve_target
from .lime import keras_predict_fn
from .lungs import lung_mask
from .report import ReportEntry, write_report
from .settings import SANITY_METHODS, ExplainSettings
from .types import CAM_METHODS, METHOD_TITLES

log = logging.getLogger(__name__)


def _load_mask(item: ImageItem, clf: Classifier) -> np.ndarray | None:
    if item.mask_path is None:
        return None
    try:
        mask, _, _ = load_image(item.mask_path, clf.image_size, 1, clf.resize_mode)
    except (ValueError, OSError) as err:
        log.warning("ignoring unreadable mask %s: %s", item.mask_path, err)
        return None
    return mask[..., 0] > 127


# ----------------------------------------------------------------------------- one model
class ModelExplainers:
    """A classifier, its batched predict function and one explainer per usable method
    (CAM methods need a Keras model; ``skipped`` lists those dropped for a .tflite file)."""

    def __init__(self, path: str, settings: ExplainSettings, clf: Classifier | None = None):
        self.clf = clf or load_classifier(path)
        self.settings = settings
        keras_model = self.clf.model if self.clf.kind == "keras" else None
        self.skipped = [m for m in settings.methods if m in CAM_METHODS and keras_model is None]
        self.methods = [m for m in settings.methods if m not in self.skipped]
        if keras_model is not None:
            self.predict_fn = keras_predict_fn(keras_model, settings.batch_size)
        else:
            self.predict_fn = lambda x: self.clf.predict_proba(x, batch_size=settings.batch_size)
        self.explainers = {}
        for m in self.methods:
            options = {"n_segments": settings.n_segments} if m == "lime" else (
                {"max_n": settings.max_n} if m == "faster-scorecam" else {})
            try:
                self.explainers[m] = make_explainer(
                    m, keras_model, predict_fn=self.predict_fn if m == "lime" else None, layer=settings.layer,
                    num_samples=settings.num_samples, seed=settings.seed, batch_size=settings.batch_size, **options)
            except ValueError as err:
                raise TfxaiError(f"{METHOD_TITLES[m]} on {path}: {err}") from None

    def load(self, item: ImageItem):
        return load_image(item.path, self.clf.image_size, self.clf.channels, self.clf.resize_mode)

    def explain(self, x: np.ndarray, target: int | None, mask: np.ndarray | None = None):
        """(probabilities (K,), predicted, target, {method: Explanation}, {method: measures},
        {method: faithfulness curves}). Measures: seconds, deletion/insertion areas, the share of
        heatmap energy inside the estimated lung fields (``lung_energy``, with the fields' share of
        the image, ``lung_area``, as the level a location-blind map reaches), and pointing game and
        energy in ``mask`` when a lesion mask is known."""
        s = self.settings
        proba = np.asarray(self.predict_fn(x[None].astype(np.float32)))[0]
        predicted = int(self.clf.decide(proba[None])[0])
        target = predicted if target is None else target
        lungs = lung_mask(x) if s.metrics else None
        explanations, measures, curves = {}, {}, {}
        for m, explainer in self.explainers.items():
            exp = explainer.explain(x[None].astype(np.float32), [target])[0]
            explanations[m] = exp
            row = {"seconds": exp.seconds}
            if s.metrics:
                faith = xm.faithfulness(self.predict_fn, x, exp.heatmap, target, s.steps, s.deletion_baseline,
                                        s.insertion_baseline, seed=s.seed)
                curves[m] = faith
                row.update(deletion_auc=faith["deletion"].auc, insertion_auc=faith["insertion"].auc,
                           lung_energy=xm.energy_in_mask(exp.heatmap, lungs), lung_area=float(lungs.mean()))
                if mask is not None and mask.any():
                    row.update(pointing_game=xm.pointing_game(exp.heatmap, mask),
                               energy_in_mask=xm.energy_in_mask(exp.heatmap, mask))
            measures[m] = row
        return proba, predicted, target, explanations, measures, curves


def mean_table(rows: dict[str, list[dict]]) -> dict[str, dict]:
    """{key: [row dicts]} -> {key: {column: mean, "n": count}}."""
    out = {}
    for key, items in rows.items():
        keys = list(dict.fromkeys(k for r in items for k in r))
        out[key] = {k: float(np.mean([float(r[k]) for r in items if k in r])) for k in keys}
        out[key]["n"] = len(items)
    return out


def _progress(items, settings: ExplainSettings, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="image", disable=not settings.progress)


def _sanity(model: ModelExplainers, inputs) -> dict:
    if not inputs or model.clf.model is None:
        return {}
    s = model.settings
    x = np.stack([i[0] for i in inputs]).astype(np.float32)
    t = np.array([i[1] for i in inputs])
    out = {}
    for m in [m for m in model.methods if m in SANITY_METHODS]:
        options = {"max_n": s.max_n} if m == "faster-scorecam" else {}
        # sanity_check randomises this very model in place, so one explainer serves every step.
        explainer = make_explainer(m, model.clf.model, layer=s.layer, seed=s.seed, batch_size=s.batch_size,
                                   **options)

        def explain_fn(_model, images, targets, explainer=explainer):  # the explainer holds the model
            return explainer.heatmaps(images, targets)[0]

        out[m] = xm.sanity_check(model.clf.model, x, explain_fn, t, seed=s.seed, max_steps=6).to_dict()
    return out


# ----------------------------------------------------------------------------- explain
@dataclass
class _Collected:
    records: list = field(default_factory=list)
    csv_rows: list = field(default_factory=list)
    entries: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    per_method: dict = field(default_factory=dict)
    pairs: dict = field(default_factory=dict)
    sanity_inputs: list = field(default_factory=list)


def _explain_one(model: ModelExplainers, item: ImageItem, target, folder: str, output_dir: str, acc: _Collected):
    clf, s = model.clf, model.settings
    x, original, info = model.load(item)
    proba, predicted, tgt, exps, measures, curves = model.explain(x, target, _load_mask(item, clf))
    on_original = {m: heatmap_to_original(e.heatmap, info, 1024) for m, e in exps.items()}
    figure = comparison_figure(os.path.join(folder, "xai_comparison.png"), original, list(exps.values()),
                               clf.class_names, predicted, float(proba[predicted]), item.true_label,
                               heatmaps=list(on_original.values()), metrics=measures)
    if s.metrics and curves:
        curves_figure(os.path.join(folder, "faithfulness_curves.png"), curves)
    agree = xm.agreement({m: e.heatmap for m, e in exps.items()}) if s.metrics else {}
    for pair, values in agree.items():
        acc.pairs.setdefault(pair, []).append(values)
    method_json = {}
    for m, e in exps.items():
        acc.per_method.setdefault(m, []).append(measures[m])
        method_json[m] = {"predicted": clf.class_names[predicted], "target": clf.class_names[e.target],
                          **e.to_dict(), **measures[m]}
        if s.metrics:
            method_json[m]["deletion_curve"] = curves[m]["deletion"].scores.tolist()
            method_json[m]["insertion_curve"] = curves[m]["insertion"].scores.tolist()
        acc.csv_rows.append({"image": display_path(item.path), "method": m, "predicted": clf.class_names[predicted],
                             "target": clf.class_names[e.target], "true_label": item.true_label or "",
                             "probability": round(e.probability, 6),
                             **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in measures[m].items()}})
    rel_figure = os.path.relpath(figure, output_dir)
    acc.records.append({
        "path": display_path(item.path), "true_label": item.true_label, "mask": item.mask_path,
        "predicted": clf.class_names[predicted], "confidence": float(proba[predicted]),
        "probabilities": {c: float(p) for c, p in zip(clf.class_names, proba)},
        "target": clf.class_names[tgt], "figure": rel_figure, "methods": method_json, "agreement": agree})
    acc.entries.append(ReportEntry(item.name, clf.class_names[predicted], float(proba[predicted]), original,
                                   on_original, {m: dict(r) for m, r in measures.items()}, item.true_label,
                                   rel_figure))
    title = f"{clf.class_names[predicted]} {proba[predicted]:.0%}" + (
        f" (true {item.true_label})" if item.true_label else "")
    acc.samples.append((original, f"{item.name}\n{title}"))
    if len(acc.sanity_inputs) < 4:
        acc.sanity_inputs.append((x, tgt))


def explain_images(checkpoint: str, items: list[ImageItem], settings: ExplainSettings, output_dir: str,
                   single: bool = False, report: bool | None = None, model: ModelExplainers | None = None) -> dict:
    """Explain ``items`` with every method of ``settings`` and write the outputs (see the module
    docstring) into ``output_dir``; ``single``: one image, figures directly in ``output_dir``.
    Returns the ``explanations.json`` document (``summary``: mean measures per method)."""
    model = model or ModelExplainers(checkpoint, settings)
    if not model.methods:
        raise TfxaiError(f"no method left to run on {checkpoint!r}; use --methods lime")
    target = resolve_target(settings.target, model.clf.class_names)
    acc, start = _Collected(), time.perf_counter()
    for item in _progress(items, settings, "explaining"):
        folder = output_dir if single else os.path.join(output_dir, item.name)
        try:
            _explain_one(model, item, target, folder, output_dir, acc)
        except (ValueError, OSError) as err:
            acc.skipped.append((item.path, str(err)))
            log.warning("skipped %s: %s", display_path(item.path), err)
    if not acc.records:
        raise TfxaiError(f"no readable image among {len(items)} file(s): "
                         + "; ".join(display_path(r) for _, r in acc.skipped[:3]))
    sample_figure(os.path.join(output_dir, "sample_xray.png"), [s[0] for s in acc.samples[:8]],
                  [s[1] for s in acc.samples[:8]])
    s = settings
    result = {
        "checkpoint": checkpoint, "class_names": model.clf.class_names, "image_size": model.clf.image_size,
        "channels": model.clf.channels, "methods": model.methods, "skipped_methods": model.skipped,
        "num_samples": s.num_samples, "seed": s.seed, "steps": s.steps, "deletion_baseline": s.deletion_baseline,
        "insertion_baseline": s.insertion_baseline, "images": acc.records,
        "summary": mean_table({m: rows for m, rows in acc.per_method.items() if rows}),
        "agreement_summary": mean_table(acc.pairs),
        "sanity_check": _sanity(model, acc.sanity_inputs) if s.sanity_check else {},
        "skipped_images": [{"path": display_path(p), "reason": r} for p, r in acc.skipped],
        "seconds_total": time.perf_counter() - start}
    write_json(os.path.join(output_dir, "explanations.json"), result)
    write_csv(os.path.join(output_dir, "metrics.csv"), acc.csv_rows)
    if result["summary"]:
        write_csv(os.path.join(output_dir, "metrics_summary.csv"),
                  [{"method": m, **row} for m, row in result["summary"].items()])
    if report if report is not None else not single:
        write_report(os.path.join(output_dir, "report.html"), acc.entries, result["summary"],
                     title=f"tfxai explanations: {os.path.basename(checkpoint)}")
    return result


# ----------------------------------------------------------------------------- compare
def _relabel(exp, side: str):
    return replace(exp, method=f"{side}: {METHOD_TITLES.get(exp.method, exp.method)}")


def _common_methods(a: ModelExplainers, b: ModelExplainers, settings: ExplainSettings) -> tuple[list, list]:
    common = [m for m in settings.methods if m in a.methods and m in b.methods]
    dropped = [m for m in settings.methods if m not in common]
    if not common:
        raise TfxaiError("no method can explain both models; use --methods lime for a .tflite file")
    for side in (a, b):
        for m in list(side.explainers):
            if m not in common:
                del side.explainers[m]
    if list(a.clf.class_names) != list(b.clf.class_names):
        log.warning("class names differ: %s vs %s; comparing by class index", a.clf.class_names, b.clf.class_names)
    return common, dropped


def _compare_one(a, b, item, target, common, folder, names, settings) -> tuple[dict, list[dict], dict]:
    xa, original, info_a = a.load(item)
    xb, _, info_b = b.load(item)
    pa, pred_a, tgt, exps_a, meas_a, _ = a.explain(xa, target)
    # Both models explain the same class: model A's prediction unless a target is given.
    pb, pred_b, _, exps_b, meas_b, _ = b.explain(xb, tgt)
    moved, rows = {}, []
    for m in common:
        ha, hb = exps_a[m].heatmap, exps_b[m].heatmap
        if hb.shape != ha.shape:
            hb = cv2.resize(hb, (ha.shape[1], ha.shape[0]), interpolation=cv2.INTER_LINEAR)
        moved[m] = xm.compare_explanations(ha, hb, meas_a[m] if settings.metrics else None,
                                           meas_b[m] if settings.metrics else None)
        rows.append({"image": display_path(item.path), "method": m, "predicted_a": a.clf.class_names[pred_a],
                     "predicted_b": b.clf.class_names[pred_b], "target": a.clf.class_names[tgt],
                     **{f"{k}_a": round(float(v), 6) for k, v in meas_a[m].items()},
                     **{f"{k}_b": round(float(v), 6) for k, v in meas_b[m].items()},
                     **{k: round(float(v), 6) for k, v in moved[m].items()}})
    explanations = [exps_a[m] for m in common] + [exps_b[m] for m in common]
    heatmaps = ([heatmap_to_original(exps_a[m].heatmap, info_a, 1024) for m in common]
                + [heatmap_to_original(exps_b[m].heatmap, info_b, 1024) for m in common])
    sides = ["A"] * len(common) + ["B"] * len(common)
    comparison_figure(os.path.join(folder, "xai_comparison.png"), original,
                      [_relabel(e, side) for e, side in zip(explanations, sides)], a.clf.class_names, pred_a,
                      float(pa[pred_a]), item.true_label, heatmaps=heatmaps,
                      title=(f"A {names[0]}: {a.clf.class_names[pred_a]} {pa[pred_a]:.1%} | "
                             f"B {names[1]}: {b.clf.class_names[pred_b]} {pb[pred_b]:.1%}"))
    record = {"path": display_path(item.path), "true_label": item.true_label,
              "predicted_a": a.clf.class_names[pred_a], "predicted_b": b.clf.class_names[pred_b],
              "probabilities_a": pa.tolist(), "probabilities_b": pb.tolist(), "target": a.clf.class_names[tgt],
              "a": {m: {**exps_a[m].to_dict(), **meas_a[m]} for m in common},
              "b": {m: {**exps_b[m].to_dict(), **meas_b[m]} for m in common}, "moved": moved}
    return record, rows, moved


def compare_models(path_a: str, path_b: str, items: list[ImageItem], settings: ExplainSettings,
                   output_dir: str, single: bool = False) -> dict:
    """Explain ``items`` with models A and B and write ``comparison.json``/``.csv`` and one
    figure per image; returns the JSON document (``summary``: mean change per method,
    ``prediction_agreement``: share of images where A and B decide the same)."""
    a, b = ModelExplainers(path_a, settings), ModelExplainers(path_b, settings)
    common, dropped = _common_methods(a, b, settings)
    target = resolve_target(settings.target, a.clf.class_names)
    names = (os.path.basename(path_a), os.path.basename(path_b))
    records, rows, skipped, same = [], [], [], []
    per_method: dict[str, list[dict]] = {m: [] for m in common}
    for item in _progress(items, settings, "comparing"):
        folder = output_dir if single else os.path.join(output_dir, item.name)
        try:
            record, item_rows, moved = _compare_one(a, b, item, target, common, folder, names, settings)
        except (ValueError, OSError) as err:
            skipped.append((item.path, str(err)))
            log.warning("skipped %s: %s", display_path(item.path), err)
            continue
        records.append(record)
        rows += item_rows
        same.append(record["predicted_a"] == record["predicted_b"])
        for m, shift in moved.items():
            per_method[m].append(shift)
    if not records:
        raise TfxaiError(f"no readable image among {len(items)} file(s)")
    result = {"a": path_a, "b": path_b, "methods": common, "skipped_methods": dropped,
              "num_samples": settings.num_samples, "seed": settings.seed,
              "prediction_agreement": float(np.mean(same)),
              "summary": mean_table({m: r for m, r in per_method.items() if r}), "images": records,
              "skipped_images": [{"path": display_path(p), "reason": r} for p, r in skipped]}
    write_json(os.path.join(output_dir, "comparison.json"), result)
    write_csv(os.path.join(output_dir, "comparison.csv"), rows)
    return result
