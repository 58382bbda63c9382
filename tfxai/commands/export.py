"""``tfxai export``: TFLite float32 / dynamic / float16 / int8, SavedModel (and ONNX), measured.

Example::

    tfxai export --checkpoint runs/train/best_model.keras --quantization all \\
        --data-dir chest_xray --output-dir runs/export

Every ``.tflite`` gets ``<name>.json`` and ``labels.txt`` beside it (what ``tfxai predict`` and an
Android app need); int8 calibrates on training images from ``--data-dir`` and every file is
measured on its validation images (accuracy, agreement with Keras, largest probability
difference, LiteRT latency, size raw and gzipped).
"""
from __future__ import annotations

import argparse
import csv
import os

from ..errors import DataError, TfxaiError

REPORT_COLUMNS = ("format", "quantization", "path", "size_bytes", "gzip_bytes", "accuracy", "agreement",
                  "max_prob_diff", "latency_ms", "input_dtype", "n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trained Keras model (.keras)")
    parser.add_argument("--quantization", default="all",
                        help="comma list of float32, dynamic, float16, int8, or 'all' (default)")
    parser.add_argument("--data-dir", help="dataset the model was trained on: training images calibrate "
                        "int8, validation images measure every file (needed for int8)")
    parser.add_argument("--output-dir", default=os.path.join("runs", "export"))
    parser.add_argument("--name", default="model", help="file stem: <name>_<quantization>.tflite")
    parser.add_argument("--saved-model", action=argparse.BooleanOptionalAction, default=True,
                        help="also write a TensorFlow SavedModel")
    parser.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True,
                        help="also write ONNX when tf2onnx is installed (skipped with a note otherwise)")
    parser.add_argument("--calibration-images", type=int, default=200)
    parser.add_argument("--pqat-epochs", type=int, default=0,
                        help="also fine-tune a copy with sparsity-preserving quantization-aware training "
                        "for this many epochs on the training images of --data-dir and export it as "
                        "<name>_int8_pqat.tflite (for pruned models; 0 = off)")
    parser.add_argument("--pqat-learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32, help="quantization-aware training batch")
    parser.add_argument("--eval-images", type=int, default=1000, help="validation images measured, 0 = all")
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)


def _pqat_row(model, data, val, config, args) -> dict:
    """Sparsity-preserving quantization-aware fine-tuning of a copy of ``model``, exported to int8
    and measured against the original Keras model (row "int8_pqat")."""
    from .. import export
    from ..qat import quantize_aware
    from ..train import fit_arrays

    if args.pqat_epochs < 0:
        raise TfxaiError(f"--pqat-epochs must be >= 0, got {args.pqat_epochs}")
    qat_model = quantize_aware(model, preserve_sparsity=True, calibration_images=data.train.images, seed=args.seed)
    print(f"quantization-aware training (sparsity kept) for {args.pqat_epochs} epoch(s) on "
          f"{len(data.train)} training images")
    fit_arrays(qat_model, data.train.images, data.train.labels, len(data.class_names), epochs=args.pqat_epochs,
               learning_rate=args.pqat_learning_rate, batch_size=args.batch_size, seed=args.seed,
               verbose=2 if args.progress else 0)
    reference = export.keras_classifier(model, config, args.checkpoint).predict_proba(val.images)
    return export.export_measured(qat_model, os.path.join(args.output_dir, f"{args.name}_int8_pqat.tflite"), "int8",
                                  representative_images=data.train.images, eval_images=val.images,
                                  eval_labels=val.labels, reference_proba=reference, config=config,
                                  latency_runs=args.latency_runs, seed=args.seed, label="int8_pqat")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import export
    from ..io import load_model, read_run_config, write_atomic, write_json

    try:
        quantizations = export.parse_quantizations(args.quantization)
    except ValueError as err:
        raise TfxaiError(str(err)) from None
    model = load_model(args.checkpoint)
    cfg = read_run_config(args.checkpoint)
    size, channels = int(model.input_shape[1]), int(model.input_shape[3])
    units = int(model.output_shape[-1])
    num_classes = 2 if units == 1 else units
    names = cfg.get("class_names") or [f"class{i}" for i in range(num_classes)]
    config = export.model_config(names, size, channels, cfg.get("resize_mode", "pad"),
                                 float(cfg.get("threshold", 0.5)),
                                 cfg.get("normalization") or "inside the model; feed raw pixels in [0, 255]",
                                 source_model=os.path.abspath(args.checkpoint))
    os.makedirs(args.output_dir, exist_ok=True)
    if args.data_dir:
        from ..data import load_splits

        data = load_splits(args.data_dir, size, channels, config["resize_mode"], seed=args.seed,
                           progress=args.progress)
        if not cfg.get("class_names"):
            config["class_names"] = list(data.class_names)  # no run_config.json: trust the folders
        elif [c.lower() for c in data.class_names] != [c.lower() for c in names]:
            raise DataError(f"{args.data_dir!r} has classes {data.class_names}, but the model was "
                            f"trained on {names}")
        val = data.val
        if args.eval_images and len(val) > args.eval_images:
            val = val.subset(np.sort(np.random.default_rng(args.seed).permutation(len(val))[:args.eval_images]))
        rows = export.export_and_measure(
            model, args.output_dir, quantizations, representative_images=data.train.images,
            eval_images=val.images, eval_labels=val.labels, config=config, name=args.name,
            latency_runs=args.latency_runs, seed=args.seed)
        if args.pqat_epochs:
            rows.append(_pqat_row(model, data, val, config, args))
        print(f"measured on {len(val)} validation images of {args.data_dir}"
              f"{' (carved from train)' if data.val_from_train else ''}")
    else:
        if "int8" in quantizations or args.pqat_epochs:
            raise DataError("int8 quantization calibrates (and --pqat-epochs trains) on training images: "
                            "pass --data-dir")
        rows = []
        for q in quantizations:
            path = os.path.join(args.output_dir, f"{args.name}_{q}.tflite")
            export.export_tflite(model, path, q, None, config, seed=args.seed)
            raw, gz = export.file_sizes(path)
            rows.append({"format": "tflite", "quantization": q, "path": path, "size_bytes": raw,
                         "gzip_bytes": gz, "input_dtype": export.load_tflite_classifier(path).input_dtype.name})
        print("no --data-dir: sizes only (no accuracy, agreement or latency)")
    if args.saved_model:
        folder = export.export_saved_model(model, os.path.join(args.output_dir, f"{args.name}_saved_model"))
        raw, gz = export.file_sizes(folder)
        rows.append({"format": "saved", "quantization": "float32", "path": folder, "size_bytes": raw,
                     "gzip_bytes": gz, "input_dtype": "float32"})
    if args.onnx:
        path = export.export_onnx(model, os.path.join(args.output_dir, f"{args.name}.onnx"))
        if path is None:
            print("ONNX skipped: tf2onnx is not installed (pip install tf2onnx)")
        else:
            raw, gz = export.file_sizes(path)
            rows.append({"format": "onnx", "quantization": "float32", "path": path, "size_bytes": raw,
                         "gzip_bytes": gz, "input_dtype": "float32"})
    table = export.format_table(rows)
    print(table)

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    write_atomic(os.path.join(args.output_dir, "export_report.csv"), write_csv)
    write_json(os.path.join(args.output_dir, "export_report.json"), {"rows": rows, "config": config})
    write_json(os.path.join(args.output_dir, "run_config.json"),
               {**config, "command": "export", "arguments": vars(args)})
    print(f"wrote {len(rows)} file(s) and export_report.csv/.json to {args.output_dir}")
    return 0
