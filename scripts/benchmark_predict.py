"""Benchmark ``tfxai predict`` on a folder against the bare batched model in the same process.

    python scripts/benchmark_predict.py --checkpoint runs/mnv2/best_model.keras \
        --images ../shared/data/chest_xray_224/train/NORMAL --n 234

In one process, on the same ``--n`` images (sorted, the first N of the folder):

1. baseline: the images decoded and resized once, then ``model.predict`` and
   ``Classifier.predict_proba`` in batches of ``--batch-size`` (no decoding, no files);
2. ``predict_files`` without overlays (what ``tfxai predict --no-gradcam`` runs: decoding in
   threads, batched probabilities and the OOD guard), in batches of ``--batch-size`` and, for
   reference, one image per model call (the behaviour before batching);
3. ``predict_files`` with a Grad-CAM overlay PNG per image (batched Grad-CAM), likewise.

Each is run ``--repeats`` times after a warm-up and the best rate is kept (the machine is shared).
Prints a Markdown table with images/s and the ratio to the bare batched ``predict_proba`` rate
(the baseline of issue 11), plus decoding alone (the same threads, no model) for where the time goes.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a .keras model trained by tfxai")
    p.add_argument("--images", required=True, help="a folder of images (searched recursively)")
    p.add_argument("--n", type=int, default=234, help="how many images (the first N, sorted)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2, help="timed runs per row; the best is kept")
    return p.parse_args(argv)


def _best_rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up: graph tracing and file cache
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_images / best


def main(argv=None) -> int:
    args = _parse(argv)
    from tfxai.classifier import load_classifier
    from tfxai.data import list_images, load_image
    from tfxai.predict import decoded_batches, predict_files

    clf = load_classifier(args.checkpoint)
    paths = sorted(list_images(args.images))[: args.n]
    if not paths:
        raise SystemExit(f"no images in {args.images!r}")
    n, b = len(paths), args.batch_size
    x = np.stack([load_image(p, clf.image_size, clf.channels, clf.resize_mode)[0] for p in paths])
    tmp = tempfile.mkdtemp(prefix="tfxai_bench_predict_")

    def with_overlays(batch):
        def run():
            shutil.rmtree(tmp, ignore_errors=True)
            predict_files(clf, paths, overlay_dir=tmp, batch_size=batch, progress=False)
        return run

    rows = [
        ("bare `model.predict` on decoded images", b,
         lambda: clf.model.predict(x.astype(np.float32), batch_size=b, verbose=0)),
        ("bare `Classifier.predict_proba` on decoded images", b, lambda: clf.predict_proba(x, batch_size=b)),
        ("decoding and resizing the files alone (threads, no model)", b,
         lambda: [None for _ in decoded_batches(clf, paths, b, [], originals=False)]),
        ("`predict_files`, no overlays (`tfxai predict --no-gradcam`)", b,
         lambda: predict_files(clf, paths, gradcam=False, batch_size=b, progress=False)),
        ("`predict_files`, no overlays, one image per model call", 1,
         lambda: predict_files(clf, paths, gradcam=False, batch_size=1, progress=False)),
        ("`predict_files` with Grad-CAM overlays (`tfxai predict`)", b, with_overlays(b)),
        ("`predict_files` with Grad-CAM overlays, one image per model call", 1, with_overlays(1)),
    ]
    results = []
    try:
        for name, batch, fn in rows:
            rate = _best_rate(fn, n, args.repeats)
            results.append((name, batch, rate))
            print(f"{name}: {rate:.1f} img/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = results[1][2]
    print(f"\n{n} images from {args.images}, {clf.image_size} px, {os.cpu_count()} CPU(s), best of {args.repeats}\n")
    print("| what | images per model call | images/s | vs bare batched `predict_proba` |")
    print("|---|---|---|---|")
    for name, batch, rate in results:
        print(f"| {name} | {batch} | {rate:.1f} | {rate / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
