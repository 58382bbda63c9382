"""Speed and size on this machine: each Keras float model against its TFLite variants.

    python scripts/benchmark_export.py --models runs/prune/models/dense.keras,runs/prune/models/iterative_80.keras \
        --dataset cifar10 --output-dir runs/benchmark_export
    python scripts/benchmark_export.py --architecture mobilenet_v2 --alpha 1.0 --image-sizes 224 \
        --data-dir chest_xray --output-dir runs/benchmark_export_224

``--architecture`` measures freshly built (untrained) registry models at the given sizes: size and
latency do not depend on training, accuracy and agreement do (so they are not printed for them);
calibration still uses real training images.

For every model and every variant (Keras float, TFLite float32 / dynamic / float16 / int8), in one
process: the median latency per image (batch of one, after warm-up, ``--latency-runs`` timed runs),
the file size raw and gzipped, accuracy and agreement with Keras on the same validation images,
and the ratios against the Keras model and against TFLite float32. A benchmark, not a test:
numbers depend on the CPU and on what else runs on it.

``--sparse`` measures sparse inference instead (``tfxai.compress.sparse``): TFLite float32, float32
converted with ``EXPERIMENTAL_SPARSITY``, int8 and sparse int8, each under LiteRT with 1 and 2 threads::

    python scripts/benchmark_export.py --sparse --architecture mobilenet_v2 --padding symmetric \
        --zero-1x1 0.8 --image-sizes 224 --data-dir chest_xray
    python scripts/benchmark_export.py --sparse --models runs/prune_latency/models/dense.keras,\
runs/prune_latency/models/iterative_80.keras --data-dir chest_xray
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--models", help="comma list of .keras files")
    what.add_argument("--architecture", help="a registry model built untrained (size and latency only)")
    p.add_argument("--alpha", type=float, default=1.0, help="--architecture mobilenet_v2 width")
    p.add_argument("--image-sizes", default="224", help="--architecture: comma list of input sizes")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3), help="--architecture input channels")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-dir", help="class-folder dataset (calibration: train, measuring: val)")
    src.add_argument("--dataset", choices=("cifar10",))
    p.add_argument("--cifar10-archive")
    p.add_argument("--quantization", default="all")
    p.add_argument("--eval-images", type=int, default=1000)
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--resize-mode", default="pad")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default=os.path.join("runs", "benchmark_export"))
    p.add_argument("--sparse", action="store_true", help="sparse-inference benchmark: float32, sparse "
                   "float32, int8, sparse int8 at each --threads")
    p.add_argument("--threads", default="1,2", help="--sparse: LiteRT thread counts")
    p.add_argument("--padding", default="same", help="--architecture mobilenet_v2: same | symmetric")
    p.add_argument("--zero-1x1", type=float, default=0.0,
                   help="--architecture: zero this share of the smallest weights of every 1x1 conv "
                   "(the zeros of a pruned model, for timing)")
    return p.parse_args(argv)


def _num(value) -> str:
    return f"{value:6.3f}" if isinstance(value, (int, float)) else "     -"


def _models(args):
    """(name, Keras model, trained) triples: the --models files, or --architecture built
    (untrained) at each size."""
    if args.models:
        from tfxai.io.model_files import load_model

        for path in [m.strip() for m in args.models.split(",") if m.strip()]:
            yield path, load_model(path), True
        return
    from tfxai.model_specs import get_spec
    from tfxai.models import build_model

    spec_options = get_spec(args.architecture).options
    options = {"alpha": args.alpha} if "alpha" in spec_options else {}
    if args.padding != "same":
        options["padding"] = args.padding
    for size in [int(t) for t in args.image_sizes.split(",") if t.strip()]:
        model = build_model(args.architecture, (size, size, args.channels), 2, **options)
        if args.zero_1x1:
            from tfxai.compress.sparse import zero_smallest_1x1

            zero_smallest_1x1(model, args.zero_1x1)
        yield f"{args.architecture}_{size}px_untrained", model, False


def _sparse_rows(args, name, model, trained, data, val, facts) -> list[dict]:
    from tfxai.classifier import keras_classifier
    from tfxai.compress import sparse
    from tfxai.compress.tflite import Calibration

    threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    reference = keras_classifier(model, facts).predict_proba(val.images) if trained else None
    files = sparse.sparse_variants(model, Calibration(data.train.images, seed=args.seed))
    rows = sparse.measure_sparse_inference(files, os.path.join(args.output_dir, name), val.images,
                                           val.labels if trained else None, reference,
                                           float(facts["threshold"]), threads, args.latency_runs)
    print(f"\n{name}: 1x1 conv sparsity {sparse.sparsity_1x1(model):.3f}; XNNPack sparse check: "
          f"{sparse.xnnpack_sparse_problem(model) or 'structure supported'}; latency = median of "
          f"{args.latency_runs} single-image runs after warm-up ({os.cpu_count()} CPU cores)"
          + (f"; accuracy on {len(val)} validation images" if trained else ""))
    print(sparse.format_sparse_table(rows))
    return rows


def main(argv=None) -> int:
    args = _parse(argv)
    from tfxai.classifier import model_facts
    from tfxai.compress.experiment import prepare_cifar10
    from tfxai.compress.measure import EvalSet
    from tfxai.compress.tflite import Calibration, export_and_measure, parse_quantizations
    from tfxai.data import load_splits
    from tfxai.io.atomic import write_json
    from tfxai.io.model_files import read_model_facts

    quantizations = parse_quantizations(args.quantization)
    data_dir = prepare_cifar10(args.cifar10_archive) if args.dataset else args.data_dir
    results = {}
    splits = {}
    for path, model, trained in _models(args):
        size, channels = int(model.input_shape[1]), int(model.input_shape[3])
        if (size, channels) not in splits:
            splits[(size, channels)] = load_splits(data_dir, size, channels, args.resize_mode, seed=args.seed,
                                                   progress=False)
        data = splits[(size, channels)]
        val = data.val
        if args.eval_images and len(val) > args.eval_images:
            val = val.subset(np.sort(np.random.default_rng(args.seed).permutation(len(val))[:args.eval_images]))
        stored = (read_model_facts(path) or {}) if trained else {}
        facts = model_facts(data.class_names, size, channels, args.resize_mode,
                            float(stored.get("threshold", 0.5)), source_model=path)
        name = os.path.splitext(os.path.basename(path))[0]
        if args.sparse:
            results[path] = _sparse_rows(args, name, model, trained, data, val, facts)
            continue
        rows = export_and_measure(model, os.path.join(args.output_dir, name), quantizations,
                                  Calibration(data.train.images, seed=args.seed),
                                  EvalSet(val.images, val.labels, latency_runs=args.latency_runs), facts, name)
        if not trained:  # what an untrained model's labels agree on means nothing
            for r in rows:
                r["accuracy"] = r["agreement"] = r["max_prob_diff"] = None
        keras_row = rows[0]
        float_row = next((r for r in rows if r["quantization"] == "float32" and r["format"] == "tflite"), None)
        print(f"\n{path}: {len(val)} validation images of {data_dir}; latency = median of "
              f"{args.latency_runs} single-image runs after warm-up ({os.cpu_count()} CPU cores)")
        print(f"{'variant':15s} {'size KB':>9s} {'gzip KB':>9s} {'x smaller':>9s} {'x vs f32':>9s} {'gz x f32':>9s} "
              f"{'ms/img':>8s} {'x faster':>8s} {'x vs f32':>8s} {'acc':>6s} {'agree':>6s}")
        for r in rows:
            r["size_ratio_vs_keras"] = keras_row["size_bytes"] / r["size_bytes"]
            r["speedup_vs_keras"] = keras_row["latency_ms"] / r["latency_ms"]
            r["size_ratio_vs_tflite_float32"] = float_row["size_bytes"] / r["size_bytes"] if float_row else None
            r["speedup_vs_tflite_float32"] = float_row["latency_ms"] / r["latency_ms"] if float_row else None
            r["gzip_ratio_vs_tflite_float32"] = float_row["gzip_bytes"] / r["gzip_bytes"] if float_row else None
            label = f"{r['format']} {r['quantization']}"
            print(f"{label:15s} {r['size_bytes'] / 1024:9.1f} {r['gzip_bytes'] / 1024:9.1f} "
                  f"{r['size_ratio_vs_keras']:9.2f} {r['size_ratio_vs_tflite_float32'] or 0:9.2f} "
                  f"{r['gzip_ratio_vs_tflite_float32'] or 0:9.2f} "
                  f"{r['latency_ms']:8.3f} {r['speedup_vs_keras']:8.2f} {r['speedup_vs_tflite_float32'] or 0:8.2f} "
                  f"{_num(r.get('accuracy'))} {_num(r.get('agreement'))}")
        results[path] = rows
    write_json(os.path.join(args.output_dir, "benchmark_export.json"), results)
    print(f"\nwrote {os.path.join(args.output_dir, 'benchmark_export.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
