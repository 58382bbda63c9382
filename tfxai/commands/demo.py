"""``tfxai demo``: the whole workflow on built-in synthetic X-rays, offline, in a few minutes."""
from __future__ import annotations

import argparse
import os
import time

from ..train import TrainConfig, format_metrics, train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", default="demo_output", help="where the data, model and reports go")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--train-images", type=int, default=800)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True,
                   help="also compare Grad-CAM, Grad-CAM++, Score-CAM and LIME on two test images")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from ..evaluate import evaluate, load_eval_images
    from ..io import load_classifier
    from ..predict import predict_files
    from ..synthetic import write_synthetic_dataset

    t0 = time.perf_counter()
    out = os.path.abspath(args.output_dir)
    data_dir = os.path.join(out, "data")
    n_eval = max(40, args.train_images // 5)
    print(f"1/4 generating synthetic chest X-rays ({args.image_size} px) in {data_dir}")
    write_synthetic_dataset(data_dir, {"train": args.train_images, "val": n_eval, "test": n_eval},
                            image_size=args.image_size, seed=args.seed)

    print("2/4 training custom_cnn")
    config = TrainConfig(data_dir=data_dir, model_type="custom_cnn", output_dir=os.path.join(out, "model"),
                         epochs=args.epochs, image_size=args.image_size, batch_size=32, seed=args.seed,
                         model_options={"width": 16, "depth": 3}, patience=6, overwrite=True,
                         cache_dir=None, verbose=0 if args.quiet else None)
    result = train(config)
    print(format_metrics(result.val_metrics, prefix="   validation: "))

    print("3/4 evaluating on the synthetic test split")
    clf = load_classifier(result.model_path)
    test = load_eval_images(clf, data_dir, "test", progress=False)
    report = evaluate(clf, test.images, test.labels, os.path.join(out, "evaluation"), test.paths,
                      title="synthetic test split")
    print(format_metrics(report["metrics"], prefix="   test: "))

    print("4/4 predicting with Grad-CAM overlays" + (" and comparing explanation methods" if args.explain else ""))
    sample = [p for p in test.paths if "PNEUMONIA" in p][:2] + [p for p in test.paths if "NORMAL" in p][:1]
    preds, _ = predict_files(clf, sample, overlay_dir=os.path.join(out, "predictions"))
    for p in preds:
        print(f"   {os.path.basename(p.path)}: {p.label} ({p.confidence:.1%}) -> {p.overlay_path}")
    if args.explain:
        from ..cli import main

        main(["explain", "--checkpoint", result.model_path, "--image", sample[0],
              "--output-dir", os.path.join(out, "explanations"), "--num-samples", "300",
              "--seed", str(args.seed)])
    print(f"\ndone in {time.perf_counter() - t0:.0f} s. Everything is in {out}:")
    print(f"  model        {result.model_path} (+ run_config.json, training_curves.png, history.csv)")
    print(f"  evaluation   {out}/evaluation (metrics.json, roc_curve.png, confusion_matrix.png, reliability_diagram.png)")
    print(f"  overlays     {out}/predictions")
    if args.explain:
        print(f"  explanations {out}/explanations (xai_comparison.png, explanations.json)")
    print("Synthetic cartoons: these numbers say the pipeline works, nothing about real X-rays.")
    return 0
