"""``tfxai demo``: the whole workflow on built-in synthetic X-rays, offline, in a few minutes."""
from __future__ import annotations

import argparse
import os
import shlex
import time

from ..explain.inputs import collect_images
from ..explain.settings import ExplainSettings
from ..io.output_folder import OutputFolder
from ..metrics import format_metrics
from ..synthetic import write_synthetic_dataset
from ..training.config import TrainConfig
from . import _args


def add_arguments(p: argparse.ArgumentParser) -> None:
    _args.add_output_dir(p, "where the data, model and reports go", default="demo_output")
    p.add_argument("--image-size", type=_args.int_range(32, 256), default=64)
    p.add_argument("--train-images", type=_args.int_range(40, 20000), default=800)
    p.add_argument("--epochs", type=_args.POSITIVE, default=20)
    _args.add_seed(p)
    p.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True,
                   help="also compare Grad-CAM, Grad-CAM++, Score-CAM and LIME on two test images")
    _args.add_progress(p)


def run(args) -> int:
    t0 = time.perf_counter()
    out = os.path.abspath(args.output_dir)
    folder = OutputFolder(out, "demo")
    with folder.lock():  # another command writing here stops this one before any work
        folder.claim(["data", "model", "evaluation", "predictions", "explanations"])
        return _demo(args, out, t0)


def _demo(args, out: str, t0: float) -> int:
    from ..classifier import load_classifier
    from ..evaluation import EvalOptions, evaluate, load_eval_images
    from ..explain.run import explain_images
    from ..predict import predict_files
    from ..training.loop import train

    data_dir = os.path.join(out, "data")
    n_eval = max(40, args.train_images // 5)
    print(f"1/4 generating synthetic chest X-rays ({args.image_size} px) in {data_dir}")
    write_synthetic_dataset(data_dir, {"train": args.train_images, "val": n_eval, "test": n_eval},
                            image_size=args.image_size, seed=args.seed)

    print("2/4 training custom_cnn")
    config = TrainConfig(data_dir=data_dir, model_type="custom_cnn", output_dir=os.path.join(out, "model"),
                         epochs=args.epochs, image_size=args.image_size, batch_size=32, seed=args.seed,
                         model_options={"width": 16, "depth": 3}, patience=6, overwrite=True,
                         cache_dir=None, verbose=None if args.progress else 0)
    result = train(config)
    print(format_metrics(result.val_metrics, prefix="   validation: "))

    print("3/4 evaluating on the synthetic test split")
    clf = load_classifier(result.model_path)
    test = load_eval_images(clf, data_dir, "test", progress=False)
    report = evaluate(clf, test.images, test.labels, os.path.join(out, "evaluation"), test.paths,
                      EvalOptions(title="synthetic test split"))
    print(format_metrics(report["metrics"], prefix="   test: "))

    print("4/4 predicting with Grad-CAM overlays" + (" and comparing explanation methods" if args.explain else ""))
    sample = [p for p in test.paths if "PNEUMONIA" in p][:2] + [p for p in test.paths if "NORMAL" in p][:1]
    preds, _ = predict_files(clf, sample, overlay_dir=os.path.join(out, "predictions"))
    for p in preds:
        print(f"   {os.path.basename(p.path)}: {p.label} ({p.confidence:.1%}) -> {p.overlay_path}")
    if args.explain:
        settings = ExplainSettings(num_samples=300, seed=args.seed, progress=args.progress)
        explain_images(result.model_path, collect_images(clf.class_names, image=sample[0]), settings,
                       os.path.join(out, "explanations"), single=True)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s. Everything is in {out}:")
    print(f"  model        {result.model_path} (+ run_config.json, training_curves.png, history.csv)")
    print(f"  evaluation   {out}/evaluation (metrics.json, roc_curve.png, confusion_matrix.png, reliability_diagram.png)")
    print(f"  overlays     {out}/predictions")
    if args.explain:
        print(f"  explanations {out}/explanations (xai_comparison.png, explanations.json)")
    print("Synthetic cartoons: these numbers say the pipeline works, nothing about real X-rays.")
    print(f"\nTo try the model in your browser (drop the images of {data_dir}/test on the page):")
    print(f"  tfxai serve --checkpoint {shlex.quote(result.model_path)}")
    return 0
