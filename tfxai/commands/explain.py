"""``tfxai explain``: Grad-CAM, Grad-CAM++, Score-CAM and LIME side by side, with faithfulness.

``tfxai explain --checkpoint M (--image X | --data-dir D) --output-dir O`` writes per image
``xai_comparison.png``, and for the run ``sample_xray.png``, ``explanations.json`` (per image and
method: predicted class, probability, seconds, deletion/insertion areas, localisation when lesion
masks are known, agreement between methods), ``metrics.csv``, and for a folder ``report.html``.
``--compare A B`` explains the same images with two models (Keras or .tflite) and reports how far
the explanations moved; CAM methods need Keras models, LIME works with both.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import time
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, TfxaiError

log = logging.getLogger(__name__)

DEFAULT_METHODS = "gradcam,gradcam++,scorecam,lime"
SANITY_METHODS = ("gradcam", "gradcam++", "faster-scorecam", "smoothgrad")


def add_arguments(p: argparse.ArgumentParser) -> None:
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", metavar="M", help="a .keras model (or .tflite: LIME only)")
    model.add_argument("--compare", nargs=2, metavar=("A", "B"),
                       help="explain with two models (e.g. Keras vs pruned .tflite) and report "
                            "how far the explanations moved")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", metavar="X", help="one X-ray file (JPEG/PNG/DICOM)")
    source.add_argument("--data-dir", metavar="D",
                        help="a folder of X-rays, searched recursively; class folders "
                             "(NORMAL/, PNEUMONIA/) give the true label")
    p.add_argument("--output-dir", required=True, metavar="O")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma-separated, from gradcam, gradcam++, scorecam, faster-scorecam, "
                        f"smoothgrad, lime (default {DEFAULT_METHODS})")
    p.add_argument("--num-samples", type=int, default=1000, help="LIME perturbations per image")
    p.add_argument("--n-segments", type=int, default=100, help="LIME SLIC superpixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-images", type=int, default=16,
                   help="folder: explain at most this many images, taken evenly across classes")
    p.add_argument("--target", help="class to explain (name or index; default: the prediction)")
    p.add_argument("--layer", help="conv layer for the CAM methods (default: found automatically)")
    p.add_argument("--batch-size", type=int, default=64, help="images per model call")
    p.add_argument("--steps", type=int, default=50, help="deletion/insertion curve steps")
    p.add_argument("--deletion-baseline", choices=("zero", "blur", "mean"), default="zero",
                   help="what deleted pixels become in the deletion curve (RISE: zero)")
    p.add_argument("--insertion-baseline", choices=("zero", "blur", "mean"), default="blur",
                   help="the image the insertion curve starts from (RISE: blur)")
    p.add_argument("--max-n", type=int, default=10, help="channels used by faster-scorecam")
    p.add_argument("--metrics", action=argparse.BooleanOptionalAction, default=True,
                   help="deletion/insertion areas, localisation and agreement")
    p.add_argument("--sanity-check", action=argparse.BooleanOptionalAction, default=False,
                   help="cascading weight randomisation (Adebayo et al.) on up to 4 images for "
                        f"the selected methods among {', '.join(SANITY_METHODS)}")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                   help="write report.html (default: for --data-dir)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)


# ----------------------------------------------------------------------------- inputs
@dataclass
class ImageItem:
    path: str
    name: str
    true_label: str | None = None
    mask_path: str | None = None


def parse_methods(text: str) -> list[str]:
    from ..explain import METHODS

    methods = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise TfxaiError(f"--methods {text!r}: unknown method(s) {bad}; choose from "
                         f"{', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def _true_label(path: str, root: str, class_names: list[str]) -> str | None:
    lower = {c.lower(): c for c in class_names}
    folder = os.path.dirname(os.path.abspath(path))
    stop = os.path.dirname(os.path.abspath(root))
    while folder.startswith(stop) and folder != stop:
        name = os.path.basename(folder).lower()
        if name in lower:
            return lower[name]
        folder = os.path.dirname(folder)
    return None


def _mask_for(path: str, levels: int = 3) -> str | None:
    """A lesion mask stored as tfxai's synthetic sets do: ``<ancestor>/masks/<path relative to
    ancestor>``, for the image's folder and up to ``levels`` folders above it."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    for _ in range(levels + 1):
        candidate = os.path.join(folder, "masks", os.path.relpath(path, folder))
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


def collect_images(args, class_names: list[str]) -> list[ImageItem]:
    """The images to explain: --image, or up to --max-images from --data-dir (round-robin over
    true labels, so a folder sorted NORMAL-first still yields both classes)."""
    from ..data import IMAGE_EXTENSIONS

    if args.image:
        if not os.path.isfile(args.image):
            raise DataError(f"--image {args.image!r} is not a file; expected a JPEG/PNG/DICOM X-ray")
        root = os.path.dirname(os.path.abspath(args.image))
        return [ImageItem(args.image, os.path.splitext(os.path.basename(args.image))[0],
                          _true_label(args.image, root, class_names), _mask_for(args.image))]
    root = args.data_dir
    if not os.path.isdir(root):
        raise DataError(f"--data-dir {root!r} is not a folder of X-ray images")
    if args.max_images < 1:
        raise TfxaiError(f"--max-images must be >= 1, got {args.max_images}")
    found = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d.lower() != "masks" and not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    if not found:
        raise DataError(f"--data-dir {root!r} holds no image files "
                        f"(expected {', '.join(IMAGE_EXTENSIONS)})")
    groups: dict[str | None, list[str]] = {}
    for path in found:
        groups.setdefault(_true_label(path, root, class_names), []).append(path)
    chosen = []
    queues = [list(g) for g in groups.values()]
    while len(chosen) < args.max_images and any(queues):
        for q in queues:
            if q and len(chosen) < args.max_images:
                chosen.append(q.pop(0))
    names, items = set(), []
    for path in chosen:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(os.path.basename(path))[0])
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}_{k}", k + 1
        names.add(name)
        items.append(ImageItem(path, name, _true_label(path, root, class_names),
                               _mask_for(path)))
    return items


def _resolve_target(text: str | None, class_names: list[str]) -> int | None:
    if text is None:
        return None
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    lower = [c.lower() for c in class_names]
    if text.lower() in lower:
        return lower.index(text.lower())
    raise TfxaiError(f"--target {text!r} is not a class of this model ({class_names}) "
                     f"nor an index below {len(class_names)}")


def _load_mask(item: ImageItem, clf) -> np.ndarray | None:
    if item.mask_path is None:
        return None
    from ..data import load_image

    try:
        mask, _, _ = load_image(item.mask_path, clf.image_size, 1, clf.resize_mode)
    except ValueError as err:
        log.warning("ignoring unreadable mask %s: %s", item.mask_path, err)
        return None
    return mask[..., 0] > 127


# ----------------------------------------------------------------------------- explaining
class _ModelExplainers:
    """A classifier, its batched predict function and one explainer per usable method."""

    def __init__(self, path: str, methods: list[str], args):
        from ..explain import CAM_METHODS, make_explainer
        from ..explain.lime import keras_predict_fn
        from ..io import load_classifier

        self.clf = load_classifier(path)
        keras_model = self.clf.model if self.clf.kind == "keras" else None
        self.skipped = [m for m in methods if m in CAM_METHODS and keras_model is None]
        self.methods = [m for m in methods if m not in self.skipped]
        if keras_model is not None:
            self.predict_fn = keras_predict_fn(keras_model, args.batch_size)
        else:
            self.predict_fn = lambda x: self.clf.predict_proba(x, batch_size=args.batch_size)
        self.explainers = {}
        for m in self.methods:
            options = {}
            if m == "lime":
                options = {"n_segments": args.n_segments}
            elif m == "faster-scorecam":
                options = {"max_n": args.max_n}
            self.explainers[m] = make_explainer(
                m, keras_model, predict_fn=self.predict_fn if m == "lime" else None,
                layer=args.layer, num_samples=args.num_samples, seed=args.seed,
                batch_size=args.batch_size, **options)

    def load(self, item: ImageItem):
        from ..data import load_image

        return load_image(item.path, self.clf.image_size, self.clf.channels, self.clf.resize_mode)

    def explain(self, x: np.ndarray, target: int | None, args, mask: np.ndarray | None = None):
        """(probabilities (K,), predicted, target, {method: Explanation}, {method: measures},
        {method: faithfulness curves})."""
        from ..explain import metrics as xm

        proba = np.asarray(self.predict_fn(x[None].astype(np.float32)))[0]
        predicted = int(self.clf.decide(proba[None])[0])
        target = predicted if target is None else target
        explanations, measures, curves = {}, {}, {}
        for m, explainer in self.explainers.items():
            exp = explainer.explain(x[None].astype(np.float32), [target])[0]
            explanations[m] = exp
            row = {"seconds": exp.seconds}
            if args.metrics:
                faith = xm.faithfulness(self.predict_fn, x, exp.heatmap, target, args.steps,
                                        args.deletion_baseline, args.insertion_baseline,
                                        seed=args.seed)
                curves[m] = faith
                row.update(deletion_auc=faith["deletion"].auc, insertion_auc=faith["insertion"].auc)
                if mask is not None and mask.any():
                    row.update(pointing_game=xm.pointing_game(exp.heatmap, mask),
                               energy_in_mask=xm.energy_in_mask(exp.heatmap, mask))
            measures[m] = row
        return proba, predicted, target, explanations, measures, curves


def _mean_table(rows: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for key, items in rows.items():
        keys = list(dict.fromkeys(k for r in items for k in r))
        out[key] = {k: float(np.mean([float(r[k]) for r in items if k in r])) for k in keys}
        out[key]["n"] = len(items)
    return out


def _print_table(title: str, table: dict[str, dict]) -> None:
    if not table:
        return
    cols = list(dict.fromkeys(k for row in table.values() for k in row))
    width = max(12, max(len(k) for k in table) + 2)
    print(title)
    print("".ljust(width) + "".join(c.rjust(max(10, len(c) + 2)) for c in cols))
    for key, row in table.items():
        cells = []
        for c in cols:
            v = row.get(c, "")
            text = f"{v:.3f}" if isinstance(v, float) else str(v)
            cells.append(text.rjust(max(10, len(c) + 2)))
        print(key.ljust(width) + "".join(cells))


def _write_csv(path: str, rows: list[dict]) -> None:
    from ..io import write_atomic

    fields = list(dict.fromkeys(k for r in rows for k in r))

    def writer(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)

    write_atomic(path, writer)


def _progress(items, args, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="image", disable=not args.progress)


def _check_args(args) -> list[str]:
    methods = parse_methods(args.methods)
    for name in ("num_samples", "batch_size", "steps", "max_n", "n_segments"):
        if getattr(args, name) < 1:
            raise TfxaiError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_samples < 10:
        raise TfxaiError(f"--num-samples must be >= 10, got {args.num_samples}")
    if args.steps < 2:
        raise TfxaiError(f"--steps must be >= 2, got {args.steps}")
    return methods


def run(args) -> int:
    methods = _check_args(args)
    os.makedirs(args.output_dir, exist_ok=True)
    if args.compare:
        return _run_compare(args, methods)
    return _run_explain(args, methods)


def _run_explain(args, methods: list[str]) -> int:
    from ..data import heatmap_to_original
    from ..explain import metrics as xm
    from ..explain.figures import comparison_figure, curves_figure, sample_figure
    from ..explain.report import ReportEntry, write_report
    from ..io import write_json

    model = _ModelExplainers(args.checkpoint, methods, args)
    clf = model.clf
    if model.skipped:
        print(f"skipping {', '.join(model.skipped)}: CAM methods need a Keras model, "
              f"{args.checkpoint} is {clf.kind}")
    if not model.methods:
        raise TfxaiError(f"no method left to run on {args.checkpoint!r}; use --methods lime")
    target = _resolve_target(args.target, clf.class_names)
    items = collect_images(args, clf.class_names)
    single = bool(args.image)
    records, csv_rows, entries, samples, skipped = [], [], [], [], []
    per_method: dict[str, list[dict]] = {m: [] for m in model.methods}
    pairs: dict[str, list[dict]] = {}
    sanity_inputs = []
    start = time.perf_counter()
    for item in _progress(items, args, "explaining"):
        try:
            x, original, info = model.load(item)
        except (ValueError, OSError) as err:
            skipped.append((item.path, str(err)))
            log.warning("skipped %s: %s", item.path, err)
            continue
        mask = _load_mask(item, clf)
        proba, predicted, tgt, exps, measures, curves = model.explain(x, target, args, mask)
        folder = args.output_dir if single else os.path.join(args.output_dir, item.name)
        on_original = {m: heatmap_to_original(e.heatmap, info) for m, e in exps.items()}
        figure = comparison_figure(os.path.join(folder, "xai_comparison.png"), original,
                                   list(exps.values()), clf.class_names, predicted,
                                   float(proba[predicted]), item.true_label,
                                   heatmaps=list(on_original.values()), metrics=measures)
        if args.metrics and curves:
            curves_figure(os.path.join(folder, "faithfulness_curves.png"), curves)
        agree = xm.agreement({m: e.heatmap for m, e in exps.items()}) if args.metrics else {}
        for pair, values in agree.items():
            pairs.setdefault(pair, []).append(values)
        method_json = {}
        for m, e in exps.items():
            per_method[m].append(measures[m])
            method_json[m] = {"predicted": clf.class_names[predicted],
                              "target": clf.class_names[e.target],
                              **e.to_dict(), **measures[m]}
            if args.metrics:
                method_json[m]["deletion_curve"] = curves[m]["deletion"].scores.tolist()
                method_json[m]["insertion_curve"] = curves[m]["insertion"].scores.tolist()
            csv_rows.append({"image": item.path, "method": m,
                             "predicted": clf.class_names[predicted],
                             "target": clf.class_names[e.target],
                             "true_label": item.true_label or "",
                             "probability": round(e.probability, 6), **{
                                 k: (round(v, 6) if isinstance(v, float) else v)
                                 for k, v in measures[m].items()}})
        records.append({
            "path": item.path, "true_label": item.true_label, "mask": item.mask_path,
            "predicted": clf.class_names[predicted], "confidence": float(proba[predicted]),
            "probabilities": {c: float(p) for c, p in zip(clf.class_names, proba)},
            "target": clf.class_names[tgt], "figure": os.path.relpath(figure, args.output_dir),
            "methods": method_json, "agreement": agree})
        entries.append(ReportEntry(item.name, clf.class_names[predicted], float(proba[predicted]),
                                   original, on_original,
                                   {m: {k: v for k, v in r.items()} for m, r in measures.items()},
                                   item.true_label, os.path.relpath(figure, args.output_dir)))
        title = f"{clf.class_names[predicted]} {proba[predicted]:.0%}"
        if item.true_label:
            title += f" (true {item.true_label})"
        samples.append((original, f"{item.name}\n{title}"))
        if len(sanity_inputs) < 4:
            sanity_inputs.append((x, tgt))
    if not records:
        raise TfxaiError(f"no readable image among {len(items)} file(s): "
                         + "; ".join(r for _, r in skipped[:3]))
    sample_figure(os.path.join(args.output_dir, "sample_xray.png"),
                  [s[0] for s in samples[:8]], [s[1] for s in samples[:8]])
    summary = _mean_table({m: rows for m, rows in per_method.items() if rows})
    agreement_summary = _mean_table(pairs)
    sanity = _sanity(model, sanity_inputs, args) if args.sanity_check else {}
    result = {
        "checkpoint": args.checkpoint, "class_names": clf.class_names,
        "image_size": clf.image_size, "channels": clf.channels, "methods": model.methods,
        "skipped_methods": model.skipped, "num_samples": args.num_samples, "seed": args.seed,
        "steps": args.steps, "deletion_baseline": args.deletion_baseline,
        "insertion_baseline": args.insertion_baseline, "images": records, "summary": summary,
        "agreement_summary": agreement_summary, "sanity_check": sanity,
        "skipped_images": [{"path": p, "reason": r} for p, r in skipped],
        "seconds_total": time.perf_counter() - start}
    json_path = os.path.join(args.output_dir, "explanations.json")
    write_json(json_path, result)
    _write_csv(os.path.join(args.output_dir, "metrics.csv"), csv_rows)
    if summary:
        _write_csv(os.path.join(args.output_dir, "metrics_summary.csv"),
                   [{"method": m, **row} for m, row in summary.items()])
    _print_table(f"per method, mean over {len(records)} image(s):", summary)
    _print_table("agreement between methods (mean):", agreement_summary)
    for m, res in sanity.items():
        curve = ", ".join(f"{r:.2f}" for r in res["spearman"])
        print(f"sanity check {m}: Spearman to the trained model's heatmaps as layers are "
              f"randomised from the top: {curve}")
    if args.report if args.report is not None else not single:
        write_report(os.path.join(args.output_dir, "report.html"), entries, summary,
                     title=f"tfxai explanations: {os.path.basename(args.checkpoint)}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s): " + "; ".join(r for _, r in skipped[:5]))
    print(f"wrote {json_path}" + ("" if single else f" and {len(records)} figures") +
          f" in {args.output_dir}")
    return 0


def _sanity(model: _ModelExplainers, inputs, args) -> dict:
    from ..explain import make_explainer
    from ..explain.metrics import sanity_check

    if not inputs or model.clf.model is None:
        return {}
    x = np.stack([i[0] for i in inputs]).astype(np.float32)
    t = np.array([i[1] for i in inputs])
    out = {}
    for m in [m for m in model.methods if m in SANITY_METHODS]:
        options = {"max_n": args.max_n} if m == "faster-scorecam" else {}
        # sanity_check randomises this very model in place, so one explainer serves every step.
        explainer = make_explainer(m, model.clf.model, layer=args.layer, seed=args.seed, **options)

        def explain_fn(net, images, targets, explainer=explainer):
            return explainer.heatmaps(images, targets)[0]

        out[m] = sanity_check(model.clf.model, x, explain_fn, t, seed=args.seed,
                              max_steps=6).to_dict()
    return out


# ----------------------------------------------------------------------------- --compare
def _run_compare(args, methods: list[str]) -> int:
    import cv2

    from ..explain.figures import comparison_figure
    from ..explain.metrics import compare_explanations
    from ..io import write_json

    path_a, path_b = args.compare
    a = _ModelExplainers(path_a, methods, args)
    b = _ModelExplainers(path_b, methods, args)
    common = [m for m in methods if m in a.methods and m in b.methods]
    dropped = [m for m in methods if m not in common]
    if dropped:
        print(f"skipping {', '.join(dropped)} in the comparison: CAM methods need Keras models "
              f"on both sides ({path_a}: {a.clf.kind}, {path_b}: {b.clf.kind})")
    if not common:
        raise TfxaiError("no method can explain both models; use --methods lime for a .tflite file")
    for side in (a, b):
        for m in list(side.explainers):
            if m not in common:
                del side.explainers[m]
    if list(a.clf.class_names) != list(b.clf.class_names):
        log.warning("class names differ: %s vs %s; comparing by class index",
                    a.clf.class_names, b.clf.class_names)
    target = _resolve_target(args.target, a.clf.class_names)
    items = collect_images(args, a.clf.class_names)
    single = bool(args.image)
    records, rows, skipped = [], [], []
    per_method: dict[str, list[dict]] = {m: [] for m in common}
    same_prediction = []
    for item in _progress(items, args, "comparing"):
        try:
            xa, original, info_a = a.load(item)
            xb, _, info_b = b.load(item)
        except (ValueError, OSError) as err:
            skipped.append((item.path, str(err)))
            continue
        pa, pred_a, tgt, exps_a, meas_a, _ = a.explain(xa, target, args)
        # Both models explain the same class: model A's prediction unless --target says otherwise.
        pb, pred_b, _, exps_b, meas_b, _ = b.explain(xb, tgt, args)
        same_prediction.append(pred_a == pred_b)
        moved = {}
        for m in common:
            ha, hb = exps_a[m].heatmap, exps_b[m].heatmap
            if hb.shape != ha.shape:
                hb = cv2.resize(hb, (ha.shape[1], ha.shape[0]), interpolation=cv2.INTER_LINEAR)
            shift = compare_explanations(ha, hb, meas_a[m] if args.metrics else None,
                                         meas_b[m] if args.metrics else None)
            moved[m] = shift
            per_method[m].append(shift)
            rows.append({"image": item.path, "method": m, "predicted_a": a.clf.class_names[pred_a],
                         "predicted_b": b.clf.class_names[pred_b],
                         "target": a.clf.class_names[tgt],
                         **{f"{k}_a": round(float(v), 6) for k, v in meas_a[m].items()},
                         **{f"{k}_b": round(float(v), 6) for k, v in meas_b[m].items()},
                         **{k: round(float(v), 6) for k, v in shift.items()}})
        from ..data import heatmap_to_original

        folder = args.output_dir if single else os.path.join(args.output_dir, item.name)
        explanations = [exps_a[m] for m in common] + [exps_b[m] for m in common]
        heatmaps = ([heatmap_to_original(exps_a[m].heatmap, info_a) for m in common]
                    + [heatmap_to_original(exps_b[m].heatmap, info_b) for m in common])
        sides = ["A"] * len(common) + ["B"] * len(common)
        comparison_figure(
            os.path.join(folder, "xai_comparison.png"), original,
            [_relabel(e, side) for e, side in zip(explanations, sides)],
            a.clf.class_names, pred_a, float(pa[pred_a]), item.true_label, heatmaps=heatmaps,
            title=(f"A {os.path.basename(path_a)}: {a.clf.class_names[pred_a]} {pa[pred_a]:.1%} | "
                   f"B {os.path.basename(path_b)}: {b.clf.class_names[pred_b]} {pb[pred_b]:.1%}"))
        records.append({"path": item.path, "true_label": item.true_label,
                        "predicted_a": a.clf.class_names[pred_a],
                        "predicted_b": b.clf.class_names[pred_b],
                        "probabilities_a": pa.tolist(), "probabilities_b": pb.tolist(),
                        "target": a.clf.class_names[tgt],
                        "a": {m: {**exps_a[m].to_dict(), **meas_a[m]} for m in common},
                        "b": {m: {**exps_b[m].to_dict(), **meas_b[m]} for m in common},
                        "moved": moved})
    if not records:
        raise TfxaiError(f"no readable image among {len(items)} file(s)")
    summary = _mean_table({m: r for m, r in per_method.items() if r})
    result = {"a": path_a, "b": path_b, "methods": common, "skipped_methods": dropped,
              "num_samples": args.num_samples, "seed": args.seed,
              "prediction_agreement": float(np.mean(same_prediction)),
              "summary": summary, "images": records,
              "skipped_images": [{"path": p, "reason": r} for p, r in skipped]}
    json_path = os.path.join(args.output_dir, "comparison.json")
    write_json(json_path, result)
    _write_csv(os.path.join(args.output_dir, "comparison.csv"), rows)
    print(f"A = {path_a}\nB = {path_b}\npredictions agree on "
          f"{np.mean(same_prediction):.0%} of {len(records)} image(s)")
    _print_table("how far the explanations moved from A to B (mean; spearman/top_iou 1 = "
                 "unchanged, delta = B - A):", summary)
    print(f"wrote {json_path} in {args.output_dir}")
    return 0


def _relabel(exp, side: str):
    from dataclasses import replace

    from ..explain import METHOD_TITLES

    return replace(exp, method=f"{side}: {METHOD_TITLES.get(exp.method, exp.method)}")
