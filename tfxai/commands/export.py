"""``tfxai export``: TFLite float32 / dynamic / float16 / int8, SavedModel (and ONNX), measured.

Example::

    tfxai export --checkpoint runs/train/best_model.keras --quantization all \\
        --data-dir chest_xray --output-dir runs/export

Every ``.tflite`` gets ``<name>.json`` and ``labels.txt`` beside it (what ``tfxai predict`` and an
Android app need); int8 calibrates on training images from ``--data-dir`` and every file is
measured on its validation images (accuracy, agreement with Keras, largest probability
difference, LiteRT latency, size raw and gzipped).

``--target android`` writes ``<name>_android_<quantization>.tflite`` instead: RGB input, one score
per class and embedded TFLite metadata, for MediaPipe's ``ImageClassifier``
(:mod:`tfxai.compress.android`).

``--target web`` writes ``--output-dir`` as one static, offline-first web app that runs the model
and Grad-CAM in the browser (:mod:`tfxai.compress.web`)::

    tfxai export --checkpoint runs/train/best_model.keras --target web --output-dir app
"""
from __future__ import annotations

import argparse
import os
from dataclasses import replace

import numpy as np

from ..compress.mediapipe_env import venv_python
from ..errors import DataError, TfxaiError
from ..io.atomic import write_csv, write_json
from ..io.output_folder import OutputFolder
from ..model_card import CARD_JSON, CARD_MARKDOWN, read_model_card, write_card_files
from . import _args

REPORT_COLUMNS = ("format", "quantization", "path", "size_bytes", "gzip_bytes", "accuracy", "agreement",
                  "max_prob_diff", "latency_ms", "input_dtype", "n", "mediapipe_agreement",
                  "mediapipe_max_score_diff")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _args.add_checkpoint(parser, help="trained Keras model (.keras)")
    parser.add_argument("--quantization", default=None,
                        help="comma list of float32, dynamic, float16, int8, or 'all' (default; --target web: "
                             "float32, the only one it writes)")
    parser.add_argument("--data-dir", help="dataset the model was trained on: training images calibrate "
                        "int8, validation images measure every file (needed for int8)")
    _args.add_output_dir(parser, "where the files go (default runs/export; --target web: the app folder itself, "
                                 "default runs/web_app, replaced as a whole); files another command wrote "
                                 "there are never replaced")
    parser.add_argument("--name", default="model", type=_args.file_stem, help="file stem: <name>_<quantization>.tflite")
    parser.add_argument("--saved-model", action=argparse.BooleanOptionalAction, default=True,
                        help="also write a TensorFlow SavedModel")
    parser.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True,
                        help="also write ONNX when tf2onnx is installed (skipped with a note otherwise)")
    parser.add_argument("--calibration-images", type=_args.int_range(1, 100000), default=200,
                        help="training images that calibrate int8 (plus an all-black and an all-white image)")
    parser.add_argument("--pqat-epochs", type=_args.NON_NEGATIVE, default=0,
                        help="also fine-tune a copy with sparsity-preserving quantization-aware training "
                        "for this many epochs on the training images of --data-dir and export it as "
                        "<name>_int8_pqat.tflite (for pruned models; 0 = off)")
    parser.add_argument("--pqat-learning-rate", type=_args.float_range(0.0, 1.0, low_open=True), default=1e-4)
    parser.add_argument("--batch-size", type=_args.int_range(1, 4096), default=32,
                        help="quantization-aware training batch")
    parser.add_argument("--eval-images", type=_args.NON_NEGATIVE, default=1000,
                        help="validation images measured, 0 = all")
    parser.add_argument("--latency-runs", type=_args.POSITIVE, default=50)
    _args.add_threshold(parser)
    _args.add_seed(parser)
    _args.add_progress(parser)
    android = parser.add_argument_group("--target android (MediaPipe ImageClassifier) and --target web (see the README)")
    android.add_argument("--target", choices=("default", "android", "web"), default="default",
                         help="default: the files above; android: RGB input, one score per class, "
                         "embedded TFLite metadata (needs the MediaPipe venv from `make install`); web: an "
                         "offline web app running the model and Grad-CAM in the browser (needs the runtime "
                         "from `make install`; see the README, 'On a phone, offline')")
    android.add_argument("--gradcam-layer", help="--target web: the layer Grad-CAM explains (default: the last "
                         "convolutional block, as tfxai explain finds it)")
    android.add_argument("--model-name", help="metadata name (default: from the checkpoint)")
    android.add_argument("--author", default="unspecified (set with tfxai export --author)")
    android.add_argument("--license", default="unspecified (set with tfxai export --license)")
    android.add_argument("--mediapipe-check", type=_args.NON_NEGATIVE, default=20,
                         help="validation images also classified by MediaPipe's ImageClassifier (0 = off)")


def _pqat_row(model, data, evalset, calibration, facts: dict, args) -> dict:
    """Sparsity-preserving quantization-aware fine-tuning of a copy of ``model``, exported to int8
    and measured against the original Keras model (row "int8_pqat")."""
    from ..classifier import keras_classifier
    from ..compress.qat import quantize_aware
    from ..compress.tflite import export_measured
    from ..training.loop import FitSettings, fit_arrays

    qat_model = quantize_aware(model, preserve_sparsity=True, calibration_images=data.train.images, seed=args.seed)
    print(f"quantization-aware training (sparsity kept) for {args.pqat_epochs} epoch(s) on "
          f"{len(data.train)} training images")
    settings = FitSettings(args.pqat_epochs, args.pqat_learning_rate, args.batch_size, seed=args.seed)
    fit_arrays(qat_model, data.train.images, data.train.labels, len(data.class_names), settings,
               verbose=2 if args.progress else 0)
    reference = keras_classifier(model, facts, args.checkpoint).predict_proba(evalset.images)
    return export_measured(qat_model, os.path.join(args.output_dir, f"{args.name}_int8_pqat.tflite"), "int8",
                           calibration, replace(evalset, reference=reference), facts, label="int8_pqat")


EXPORT_REPORT = ("export_report.csv", "export_report.json", "export_config.json")


def _facts(clf, checkpoint: str) -> dict:
    """The deployed model's facts: the checkpoint's own (with how its threshold was chosen, which
    ``--tta`` needs to choose it again), plus where it came from."""
    from ..classifier import model_facts
    from ..training.decision import Policy

    policy = Policy.from_facts(clf.facts)
    return model_facts(clf.class_names, clf.image_size, clf.channels, clf.resize_mode, clf.threshold,
                       clf.facts.get("preprocessing", ""), clf.temperature,
                       source_model=os.path.abspath(checkpoint),
                       **({"threshold_policy": policy.to_dict()} if policy else {}))


def _card(checkpoint: str, args) -> dict | None:
    """The checkpoint's model card (None for a model trained before cards), with the licence
    given to --license."""
    card = read_model_card(checkpoint)
    if card is None:
        print(f"{checkpoint} has no model card (trained before tfxai wrote them): the export carries none")
    elif args.target == "android" and not args.license.startswith("unspecified"):
        card = {**card, "model_details": {**card["model_details"], "licence": args.license}}
    return card


def _stem(args, q: str) -> str:
    return f"{args.name}_android_{q}" if args.target == "android" else f"{args.name}_{q}"


def _card_files(args, card: dict | None) -> bool:
    """Whether the export writes model_card.json/.md: for a model with a card, unless the output
    folder is the model's own (its training run already holds the card, and it is train's file)."""
    here = os.path.dirname(os.path.abspath(args.checkpoint))
    return card is not None and os.path.abspath(args.output_dir) != here


def _planned(args, quantizations, card: dict | None) -> list[str]:
    from ..classifier import LABELS_NAME

    names = [f"{_stem(args, q)}{ext}" for q in quantizations for ext in (".tflite", ".json")] + [LABELS_NAME]
    if _card_files(args, card):
        names += [CARD_JSON, CARD_MARKDOWN]
    if args.data_dir:
        names.append(f"{args.name}.keras")
    if args.pqat_epochs:
        names += [f"{args.name}_int8_pqat.tflite", f"{args.name}_int8_pqat.json"]
    if args.saved_model and args.target == "default":
        names.append(f"{args.name}_saved_model")
    if args.onnx and args.target == "default":
        names.append(f"{args.name}.onnx")
    return names + list(EXPORT_REPORT)


def _measured_rows(model, clf, facts, quantizations, args) -> list[dict]:
    from ..compress.android import android_metadata, export_and_measure_android
    from ..compress.measure import EvalSet
    from ..compress.tflite import Calibration, export_and_measure
    from ..data import load_splits

    data = load_splits(args.data_dir, clf.image_size, clf.channels, clf.resize_mode, seed=args.seed,
                       progress=args.progress)
    if [c.lower() for c in data.class_names] != [c.lower() for c in clf.class_names]:
        raise DataError(f"{args.data_dir!r} has classes {data.class_names}, but the model was trained on "
                        f"{clf.class_names}")
    val = data.val
    if args.eval_images and len(val) > args.eval_images:
        val = val.subset(np.sort(np.random.default_rng(args.seed).permutation(len(val))[:args.eval_images]))
    calibration = Calibration(data.train.images, args.calibration_images, args.seed)
    evalset = EvalSet(val.images, val.labels, latency_runs=args.latency_runs)
    if args.target == "android":
        meta = android_metadata(model, facts, args.checkpoint, args.model_name, args.author, args.license)
        rows = export_and_measure_android(model, args.output_dir, quantizations, calibration, evalset, facts,
                                          meta, args.name, args.mediapipe_check)
    else:
        rows = export_and_measure(model, args.output_dir, quantizations, calibration, evalset, facts, args.name)
    if args.pqat_epochs:
        rows.append(_pqat_row(model, data, evalset, calibration, facts, args))
    print(f"measured on {len(val)} validation images of {args.data_dir}"
          f"{' (carved from train)' if data.val_from_train else ''}")
    return rows


def _size_rows(model, facts, quantizations, args) -> list[dict]:
    from ..classifier import load_classifier
    from ..compress.android import android_metadata, export_android
    from ..compress.measure import file_sizes
    from ..compress.tflite import export_tflite

    rows = []
    for q in quantizations:
        path = os.path.join(args.output_dir, f"{_stem(args, q)}.tflite")
        if args.target == "android":
            meta = android_metadata(model, facts, args.checkpoint, args.model_name, args.author, args.license)
            export_android(model, path, q, facts, meta)
        else:
            export_tflite(model, path, q, None, facts)
        raw, gz = file_sizes(path)
        rows.append({"format": "android" if args.target == "android" else "tflite", "quantization": q,
                     "path": path, "size_bytes": raw, "gzip_bytes": gz,
                     "input_dtype": load_classifier(path).input_dtype.name})
    print("no --data-dir: sizes only (no accuracy, agreement or latency)")
    return rows


def _other_formats(model, args, card: dict | None) -> list[dict]:
    from ..compress.measure import file_sizes
    from ..compress.tflite import export_onnx, export_saved_model

    rows = []
    if args.target != "default":
        return rows
    if args.saved_model:
        folder = export_saved_model(model, os.path.join(args.output_dir, f"{args.name}_saved_model"), card)
        raw, gz = file_sizes(folder)
        rows.append({"format": "saved", "quantization": "float32", "path": folder, "size_bytes": raw,
                     "gzip_bytes": gz, "input_dtype": "float32"})
    if args.onnx:
        path = export_onnx(model, os.path.join(args.output_dir, f"{args.name}.onnx"))
        if path is None:
            print("ONNX skipped: tf2onnx is not installed (pip install tf2onnx)")
        else:
            raw, gz = file_sizes(path)
            rows.append({"format": "onnx", "quantization": "float32", "path": path, "size_bytes": raw,
                         "gzip_bytes": gz, "input_dtype": "float32"})
    return rows


def _run_web(args: argparse.Namespace) -> int:
    from ..classifier import load_classifier
    from ..compress.web import download_sizes, export_web, find_runtime

    if args.quantization not in (None, "float32"):
        raise TfxaiError(f"--quantization {args.quantization!r}: --target web writes one float32 file (scores and "
                         f"Grad-CAM); leave --quantization out")
    if args.pqat_epochs or args.data_dir:
        raise TfxaiError("--target web exports the model as it is: drop --data-dir and --pqat-epochs")
    if not args.checkpoint.endswith(".keras"):
        raise TfxaiError(f"--checkpoint {args.checkpoint!r}: --target web takes the trained .keras model "
                         f"(Grad-CAM needs its layers)")
    find_runtime()  # one clear line before loading anything when `make install` was not run
    clf = load_classifier(args.checkpoint, args.threshold, args.class_names)
    out = export_web(args.checkpoint, args.output_dir, args.gradcam_layer, clf=clf)
    sizes = download_sizes(out.folder)
    mb = 1e6
    print(f"wrote the web app to {args.output_dir}: {len(out.facts['files']) + 2} files, model "
          f"{out.facts['files']['model.tflite']['bytes'] / mb:.2f} MB with Grad-CAM of layer {out.layer!r} inside; "
          f"a browser downloads {sizes['simd']['raw'] / mb:.1f} MB ({sizes['simd']['gzip'] / mb:.1f} MB gzipped) once")
    print(f"try it here: tfxai serve --web {args.output_dir}   (then open http://127.0.0.1:8000/)")
    print("on a phone: see 'On a phone, offline' in the README (https or localhost is needed for offline use)")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..classifier import load_classifier
    from ..compress.tflite import parse_quantizations

    if args.output_dir is None:
        args.output_dir = os.path.join("runs", "web_app" if args.target == "web" else "export")
    if args.target == "web":
        return _run_web(args)
    args.quantization = args.quantization or "all"
    try:
        quantizations = parse_quantizations(args.quantization)
    except ValueError as err:
        raise TfxaiError(f"--quantization: {err}") from None
    if not args.data_dir and ("int8" in quantizations or args.pqat_epochs):
        raise DataError("int8 quantization calibrates (and --pqat-epochs trains) on training images: "
                        "pass --data-dir")
    if args.checkpoint.endswith(".tflite"):
        raise TfxaiError(f"--checkpoint {args.checkpoint!r} is already a TFLite file; export takes the "
                         f"trained .keras model")
    clf = load_classifier(args.checkpoint, args.threshold, args.class_names)
    if args.target == "android":
        if args.pqat_epochs:
            raise TfxaiError("--pqat-epochs exports the default target only; drop it with --target android")
        venv_python()  # the metadata writer's venv: one clear line before any work when it is missing
    card = _card(args.checkpoint, args)
    folder = OutputFolder(args.output_dir, "export", [args.checkpoint, args.data_dir])
    with folder.lock():  # another command writing here stops this one before any work
        folder.claim(_planned(args, quantizations, card))
        return _export(args, clf, quantizations, card)


def _export(args, clf, quantizations, card: dict | None) -> int:
    from ..compress.measure import export_table

    facts = _facts(clf, args.checkpoint)
    # The card travels with the facts into every file: .tflite sidecars, the Android file's
    # metadata, the .keras copy; the reports below keep the facts alone.
    carried = {**facts, "model_card": card} if card is not None else facts
    model = clf.model
    rows = (_measured_rows(model, clf, carried, quantizations, args) if args.data_dir
            else _size_rows(model, carried, quantizations, args))
    rows += _other_formats(model, args, card)
    if _card_files(args, card):
        write_card_files(args.output_dir, card)
    print(export_table(rows))
    write_csv(os.path.join(args.output_dir, "export_report.csv"), rows, REPORT_COLUMNS)
    write_json(os.path.join(args.output_dir, "export_report.json"), {"rows": rows, "config": facts})
    write_json(os.path.join(args.output_dir, "export_config.json"),
               {**facts, "command": "export", "arguments": vars(args)})
    print(f"wrote {len(rows)} file(s) and export_report.csv/.json to {args.output_dir}")
    return 0
