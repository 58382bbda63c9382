"""What an ensemble costs against one of its members, measured in one process.

    python scripts/benchmark_ensemble.py --ensemble runs/cv/ensemble.keras \
        --images chest_xray/train/NORMAL --n 200

For the ensemble (tfxai.ensemble: K members as one model) and one member (``--member``, default the
first member recorded in the ensemble's facts): parameters; the ``.keras`` file, raw and gzipped;
TFLite float32 and int8 files (converted here; int8 calibrated on the ``--images``); and median
latencies of one image: Keras (the compiled call every tfxai command uses), Grad-CAM, and LiteRT
float32 / int8 with 1 and 2 threads. Latencies are taken in ``--rounds`` rounds that visit every
variant in turn, so that load from other jobs on a shared CPU falls on all of them alike; each
round times ``--runs`` calls. Prints a Markdown table with each ensemble number and its ratio to the
member's.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def _images(args, clf) -> np.ndarray:
    """``--n`` images of ``--images`` decoded as the model takes them, or seeded random ones."""
    from tfxai.data import list_images, load_image

    if not args.images:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (args.n, clf.image_size, clf.image_size, clf.channels), dtype=np.uint8)
    paths = list_images(args.images)[:args.n]
    return np.stack([load_image(p, clf.image_size, clf.channels, clf.resize_mode)[0] for p in paths])


def _variants(clf, images: np.ndarray, folder: str, name: str) -> dict:
    """{variant: (callable on one image, size facts)} for one model."""
    from ai_edge_litert.interpreter import Interpreter

    from tfxai._keras import compiled_call
    from tfxai.compress.measure import file_sizes, keras_sizes
    from tfxai.compress.tflite import Calibration, convert_tflite
    from tfxai.explain.gradcam import GradCAM

    out = {}
    # Saved again without optimizer state (a training run's checkpoint keeps Adam's moments; an ensemble has none).
    keras_raw, keras_gz = keras_sizes(clf.model, folder, name, clf.facts)
    forward = compiled_call(clf.model)
    cam = GradCAM(clf.model, batch_size=1)
    sizes = {"params": clf.model.count_params(), "keras_kb": keras_raw / 1024, "keras_gzip_kb": keras_gz / 1024}
    out["Keras"] = lambda x: forward(x.astype(np.float32)).numpy()
    out["Grad-CAM"] = lambda x: cam.heatmaps(x.astype(np.float32), targets=1)
    for q in ("float32", "int8"):
        path = os.path.join(folder, f"{name}_{q}.tflite")
        with open(path, "wb") as f:
            f.write(convert_tflite(clf.model, q, Calibration(images, min(200, len(images)))))
        sizes[f"tflite_{q}_kb"] = file_sizes(path)[0] / 1024
        for threads in (1, 2):
            it = Interpreter(model_path=path, num_threads=threads)
            it.allocate_tensors()
            (inp,), (outp,) = it.get_input_details(), it.get_output_details()

            def run(x, it=it, inp=inp, outp=outp):
                it.set_tensor(inp["index"], x.astype(inp["dtype"]))
                it.invoke()
                return it.get_tensor(outp["index"])
            out[f"LiteRT {q}, {threads} thread{'s' if threads > 1 else ''}"] = run
    return {"calls": out, "sizes": sizes}


def _latencies(models: dict, images: np.ndarray, rounds: int, runs: int) -> dict:
    """{(model, variant): median ms of one image}, rounds visiting every (model, variant) in turn."""
    times = {(m, v): [] for m, d in models.items() for v in d["calls"]}
    for fn_key in times:  # warm-up
        for i in range(3):
            models[fn_key[0]]["calls"][fn_key[1]](images[i % len(images)][None])
    for r in range(rounds):
        for (m, v), values in times.items():
            fn = models[m]["calls"][v]
            for i in range(runs):
                x = images[(r * runs + i) % len(images)][None]
                t0 = time.perf_counter()
                fn(x)
                values.append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1000) for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ensemble", required=True, help="an ensemble.keras (tfxai train --folds, tfxai ensemble)")
    p.add_argument("--member", help="one member's .keras (default: the first member recorded in the ensemble)")
    p.add_argument("--images", help="a folder of X-rays (calibration and inputs; default: seeded random images)")
    p.add_argument("--n", type=int, default=200, help="images used")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--runs", type=int, default=20, help="timed calls per variant and round")
    args = p.parse_args(argv)
    from tfxai.classifier import load_classifier

    ensemble = load_classifier(args.ensemble)
    members = (ensemble.facts.get("ensemble") or {}).get("members") or []
    member_path = args.member or (members[0]["path"] if members else None)
    if not member_path or not os.path.exists(member_path):
        print(f"error: give --member (the ensemble records {member_path!r}, which does not exist here)", file=sys.stderr)
        return 2
    member = load_classifier(member_path)
    images = _images(args, ensemble)
    with tempfile.TemporaryDirectory(prefix="tfxai-ensemble-bench-") as tmp:
        models = {"member": _variants(member, images, tmp, "member"), "ensemble": _variants(ensemble, images, tmp, "ensemble")}
        ms = _latencies(models, images, args.rounds, args.runs)
    k = len(members) or "?"
    print(f"ensemble of {k} members ({args.ensemble}) against one member ({member_path}); "
          f"{len(images)} images, {args.rounds} rounds x {args.runs} calls per latency\n")
    print("| what | one member | ensemble | ensemble / member |\n|---|---|---|---|")
    for key in models["member"]["sizes"]:
        a, b = models["member"]["sizes"][key], models["ensemble"]["sizes"][key]
        fmt = "{:,.0f}" if key == "params" else "{:.1f}"
        print(f"| {key.replace('_kb', ' KB').replace('_', ' ')} | {fmt.format(a)} | {fmt.format(b)} | {b / a:.2f} |")
    for variant in models["member"]["calls"]:
        a, b = ms[("member", variant)], ms[("ensemble", variant)]
        print(f"| {variant}, ms / image | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
