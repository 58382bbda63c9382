"""Benchmark training on real chest X-rays: every model type, one CPU-sized recipe each.

    python scripts/benchmark_train.py --data-dir ../shared/data/chest_xray_224 --output-dir /tmp/bench

For each model: validation ROC-AUC, accuracy, sensitivity, specificity (threshold 0.5 and the
Youden threshold), training images/second and seconds per epoch, on a validation split carved
from train and grouped by patient (say so when you quote it: it flatters; the official test split
is held back). Then the input pipeline's cost: training images/second of the same model fed from
the cached, augmenting tf.data pipeline against in-memory tensors, measured in this process.
Results go to ``<output-dir>/benchmark_train.json`` and a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

RECIPES = {
    # model: (image size, epochs, batch, lr, model options); sized for a 2-core CPU.
    "custom_cnn": (112, 20, 32, 1e-3, {"width": 32, "depth": 4}),
    "mobilenet_v2": (128, 20, 32, 1e-3, {"alpha": 0.5}),
    "resnet18": (64, 10, 32, 1e-3, {"width": 32}),
}
QUICK = {k: (64, 2, 32, 1e-3, v[4]) for k, v in RECIPES.items()}


def pipeline_cost(splits, model_type, image_size, options, batch_size=32, steps=40, seed=0) -> dict:
    """Images/second of one model fitted from the tf.data pipeline (augmenting) vs in-memory tensors."""
    from tfxai import data as data_lib
    from tfxai._keras import tf
    from tfxai.models import build_model
    from tfxai.training import compile_model

    imgs, labels = splits.train.images, splits.train.labels
    n = steps * batch_size
    idx = np.arange(n) % len(imgs)
    model = build_model(model_type, imgs.shape[1:], 2, **options)
    compile_model(model, 2, 1e-3)
    tensors_x = tf.constant(imgs[idx].astype(np.float32))
    tensors_y = tf.constant(data_lib.encode_labels(labels[idx], 2))
    results = {}
    for name, make in (
        ("in_memory_tensors", lambda: tf.data.Dataset.from_tensor_slices((tensors_x, tensors_y)).batch(batch_size)),
        ("pipeline_no_augment", lambda: data_lib.make_dataset(imgs[idx], labels[idx], 2, batch_size, training=True,
                                                              augment=data_lib.NO_AUGMENT, seed=seed)),
        ("pipeline_augment", lambda: data_lib.make_dataset(imgs[idx], labels[idx], 2, batch_size, training=True,
                                                           seed=seed)),
    ):
        ds = make()
        model.fit(ds.take(3), epochs=1, verbose=0)  # warm-up: trace and compile
        t = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0)
        results[name] = n / (time.perf_counter() - t)
    base = results["in_memory_tensors"]
    return {k: {"images_per_second": v, "ratio_to_in_memory": v / base} for k, v in results.items()}


def score_run(model_type, size, options, run_dir, splits) -> dict:
    """The benchmark row of one run folder: validation metrics of its best model, speed from history.csv."""
    from tfxai.classifier import load_classifier
    from tfxai.metrics import classification_metrics, threshold_youden
    from tfxai.training import read_history

    clf = load_classifier(os.path.join(run_dir, "best_model.keras"))
    proba = clf.predict_proba(splits.val.images)
    m = classification_metrics(splits.val.labels, proba, 0.5)
    youden = threshold_youden(splits.val.labels, proba[:, 1])
    at_youden = classification_metrics(splits.val.labels, proba, youden)
    history = read_history(os.path.join(run_dir, "history.csv"))
    secs = [s for s in history.get("seconds", []) if np.isfinite(s)]
    ips = [s for s in history.get("images_per_second", []) if np.isfinite(s)]
    return {
        "model": model_type, "image_size": size, "epochs_run": len(history.get("epoch", [])),
        "options": options, "val_roc_auc": m["roc_auc"], "val_accuracy": m["accuracy"],
        "val_sensitivity": m["sensitivity"], "val_specificity": m["specificity"],
        "youden_threshold": youden, "val_accuracy_youden": at_youden["accuracy"],
        "val_sensitivity_youden": at_youden["sensitivity"], "val_specificity_youden": at_youden["specificity"],
        "train_images_per_second": float(np.median(ips)) if ips else None,
        "seconds_per_epoch": float(np.median(secs)) if secs else None,
        "total_train_seconds": float(np.sum(secs)) if secs else None,
        "params": int(clf.model.count_params()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "chest_xray_224"))
    p.add_argument("--output-dir", default=os.path.join("saved_models", "benchmark"))
    p.add_argument("--models", default="custom_cnn,mobilenet_v2,resnet18")
    p.add_argument("--quick", action="store_true", help="2 epochs at 64 px: checks the script, not the models")
    p.add_argument("--epochs", type=int, help="override every recipe's epochs")
    p.add_argument("--label-smoothing", type=float, default=0.05)
    p.add_argument("--skip-pipeline", action="store_true")
    p.add_argument("--pipeline-only", action="store_true", help="only the input-pipeline measurement")
    p.add_argument("--pipeline-steps", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", action="store_true",
                   help="score run folders that already hold best_model.keras instead of training again")
    args = p.parse_args(argv)

    from tfxai import data as data_lib
    from tfxai.training import TrainConfig, train

    if not os.path.isdir(args.data_dir):
        print(f"error: {args.data_dir} does not exist (expected the Kermany train folder)", file=sys.stderr)
        return 2
    recipes = QUICK if args.quick else RECIPES
    rows, loaded = [], {}
    if args.pipeline_only:
        size, _, batch, _, options = recipes["custom_cnn"]
        res = pipeline_cost(data_lib.load_splits(args.data_dir, size, progress=False), "custom_cnn", size, options,
                            batch, steps=args.pipeline_steps)
        print(json.dumps(res, indent=1))
        return 0
    for model_type in args.models.split(","):
        size, epochs, batch, lr, options = recipes[model_type]
        epochs = args.epochs or epochs
        if size not in loaded:
            loaded[size] = data_lib.load_splits(args.data_dir, size, seed=args.seed, progress=False)
        splits = loaded[size]
        cfg = TrainConfig(args.data_dir, model_type, os.path.join(args.output_dir, model_type), epochs=epochs,
                          batch_size=batch, image_size=size, learning_rate=lr, seed=args.seed, model_options=options,
                          label_smoothing=args.label_smoothing, patience=5, overwrite=True, verbose=2,
                          deterministic=False)
        run_dir = os.path.join(args.output_dir, model_type)
        if args.reuse and os.path.exists(os.path.join(run_dir, "best_model.keras")):
            print(f"scoring the existing run in {run_dir} (--reuse)")
        else:
            train(cfg, splits=splits)
        rows.append(score_run(model_type, size, options, run_dir, splits))
        print(json.dumps(rows[-1], indent=1))
    out = {"data_dir": args.data_dir, "validation": "carved from train, stratified, grouped by patient (15%)",
           "train_counts": next(iter(loaded.values())).train.counts(),
           "val_counts": next(iter(loaded.values())).val.counts(), "results": rows,
           "command": " ".join(sys.argv)}
    if not args.skip_pipeline:
        size, _, batch, _, options = recipes["custom_cnn"]
        out["pipeline"] = pipeline_cost(loaded.get(size) or data_lib.load_splits(args.data_dir, size, progress=False),
                                        "custom_cnn", size, options, batch, steps=args.pipeline_steps)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "benchmark_train.json"), "w") as f:
        json.dump(out, f, indent=2)

    print("\n| model | image px | epochs | val ROC-AUC | val acc | sens | spec | acc / sens / spec @Youden | train img/s | s/epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['image_size']} | {r['epochs_run']} | {r['val_roc_auc']:.4f} | {r['val_accuracy']:.3f} | "
              f"{r['val_sensitivity']:.3f} | {r['val_specificity']:.3f} | {r['val_accuracy_youden']:.3f} / "
              f"{r['val_sensitivity_youden']:.3f} / {r['val_specificity_youden']:.3f} | "
              f"{r['train_images_per_second']:.0f} | {r['seconds_per_epoch']:.0f} |")
    if "pipeline" in out:
        print("\ninput pipeline (custom_cnn, same process): " + "; ".join(
            f"{k} {v['images_per_second']:.0f} img/s ({v['ratio_to_in_memory']:.2f}x)" for k, v in out["pipeline"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
