"""Benchmark tfxai's explanations: speed per method and how far each can be trusted.

1. Speed on one 224x224 X-ray with MobileNetV2 (random weights: the cost does not depend on them):
   seconds per image for every method; Grad-CAM for a batch of 32 in one pass; LIME at
   ``--num-samples`` against the usual way of calling the lime package
   (``LimeImageExplainer.explain_instance`` with its default ``batch_size=10`` and
   ``model.predict``) and against the bare cost of the same number of batched forward passes,
   all measured here, in this process.
2. Faithfulness (deletion/insertion areas), localisation (pointing game, energy in the lesion
   mask), agreement between methods and the cascading-randomisation sanity check, per method,
   on synthetic X-rays (a small CNN trained here for a minute) next to a random heatmap.
3. The same faithfulness measures on real X-rays at native resolution from
   ``../shared/data/chest_xray_original`` when present, with ``--checkpoint`` or a small CNN
   fitted here on part of ``chest_xray_224/train`` (patient-grouped; a demo model, not a result).

``python scripts/benchmark_xai.py --quick`` takes about 5-10 minutes on 2 CPU cores; the full run
uses more images. Numbers are printed and written to ``--output`` (JSON).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ALL_METHODS = ("gradcam", "gradcam++", "scorecam", "faster-scorecam", "smoothgrad", "lime")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False,
                   help="fewer images and epochs (about 5-10 minutes on 2 cores)")
    p.add_argument("--num-samples", type=int, default=1000, help="LIME perturbations")
    p.add_argument("--batch-size", type=int, default=64, help="LIME / forward-pass batch size")
    p.add_argument("--image-size", type=int, default=224, help="speed benchmark input size")
    p.add_argument("--speed-model", default="mobilenet_v2", help="registry model for the speed part")
    p.add_argument("--full-scorecam-speed", action=argparse.BooleanOptionalAction, default=True,
                   help="time full Score-CAM (one forward pass per channel: 1280 for MobileNetV2)")
    p.add_argument("--data-root", default=str(SHARED_DATA),
                   help="folder with chest_xray_original/ and chest_xray_224/ (real X-rays)")
    p.add_argument("--checkpoint", help="a trained .keras model for the real X-rays")
    p.add_argument("--parts", default="speed,synthetic,real",
                   help="comma-separated subset of speed, synthetic, real")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="write all numbers to this JSON file")
    return p


def _clock(fn, repeat: int = 1):
    """(best seconds over ``repeat`` calls, last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


# ----------------------------------------------------------------------------- 1. speed
def _speed_image(size: int, data_root: str) -> tuple[np.ndarray, str]:
    from tfxai.data import load_image
    from tfxai.synthetic import make_synthetic_xrays

    folder = Path(data_root) / "chest_xray_original" / "val" / "PNEUMONIA"
    if folder.is_dir():
        path = sorted(folder.iterdir())[0]
        x, _, _ = load_image(str(path), size, 1, "pad")
        return x.astype(np.float32), f"real X-ray {path.name}"
    return make_synthetic_xrays(1, size, 1.0, 0).images[0][..., None].astype(np.float32), "synthetic"


def speed(args) -> dict:
    from lime import lime_image

    from tfxai._keras import keras
    from tfxai.explain import make_explainer
    from tfxai.explain.lime import keras_predict_fn
    from tfxai.classifier import probabilities
    from tfxai.models import build_model

    size = args.image_size
    keras.utils.set_random_seed(args.seed)
    model = build_model(args.speed_model, (size, size, 1), 2)
    image, source = _speed_image(size, args.data_root)
    print(f"\n== speed: {args.speed_model} at {size}x{size} px, {source}, "
          f"{os.cpu_count()} CPU core(s)")
    out = {"model": args.speed_model, "image_size": size, "image": source, "methods": {}}

    predict = keras_predict_fn(model, args.batch_size)
    predict(np.repeat(image[None], args.batch_size, 0))  # trace the compiled forward pass once
    n = args.num_samples
    batch = np.repeat(image[None], n, 0)
    bare, _ = _clock(lambda: predict(batch), 2)
    out["bare_forward_seconds"] = bare
    print(f"{n} batched forward passes (batch {args.batch_size}, compiled): {bare:.2f} s")

    methods = [m for m in ALL_METHODS if m != "scorecam" or args.full_scorecam_speed]
    for m in methods:
        explainer = make_explainer(m, model, predict_fn=predict, num_samples=n, seed=args.seed,
                                   batch_size=args.batch_size)
        if m not in ("lime", "scorecam"):
            # Warm-up (tracing, tf-keras-vis set-up). LIME's forward pass is already traced;
            # full Score-CAM is timed cold (its ~1 s of set-up is small next to its run).
            explainer.explain(image[None], [1])
        secs, _ = _clock(lambda e=explainer: e.explain(image[None], [1]), 1)
        out["methods"][m] = {"seconds_per_image": secs}
        print(f"{m:>16}: {secs:7.2f} s per image")
    gradcam = make_explainer("gradcam", model)
    batch32 = np.repeat(image[None], 32, 0)
    gradcam.heatmaps(batch32)
    secs32, _ = _clock(lambda: gradcam.heatmaps(batch32), 2)
    out["gradcam_batch32_seconds"] = secs32
    print(f"Grad-CAM, batch of 32 in one pass: {secs32:.2f} s ({secs32 / 32:.3f} s per image)")

    # The usual way: lime's own explain_instance on the grey image (converted to RGB by lime),
    # quickshift segmentation, batch_size=10, Keras model.predict on each batch.
    def usual():
        explainer = lime_image.LimeImageExplainer(random_state=args.seed)

        def classifier_fn(rgb):
            return probabilities(model.predict(rgb[..., :1].astype(np.float32), verbose=0))

        return explainer.explain_instance(image[..., 0].astype(np.double), classifier_fn,
                                          top_labels=2, hide_color=0, num_samples=n,
                                          random_seed=args.seed)

    model.predict(batch[:10], verbose=0)
    usual_secs, _ = _clock(usual, 1)
    ours = out["methods"]["lime"]["seconds_per_image"]
    out["lime"] = {"num_samples": n, "ours_seconds": ours, "usual_seconds": usual_secs,
                   "bare_forward_seconds": bare, "ours_over_bare": ours / bare,
                   "usual_over_ours": usual_secs / ours}
    print(f"LIME at {n} samples: ours {ours:.2f} s, usual way {usual_secs:.2f} s "
          f"({usual_secs / ours:.2f}x slower), bare forward passes {bare:.2f} s "
          f"(ours = {ours / bare:.2f}x bare)")
    return out


# ----------------------------------------------------------------------------- 2./3. trust
def trust_table(model, images: np.ndarray, targets: np.ndarray, masks, methods, args,
                label: str, sanity: bool = True) -> dict:
    """Per method: mean deletion/insertion areas, pointing game and energy in mask (where masks
    are given), seconds; plus a random-heatmap row, agreement and the sanity check."""
    from tfxai.explain import make_explainer
    from tfxai.explain import quality as xm
    from tfxai.explain.lime import keras_predict_fn

    predict = keras_predict_fn(model, args.batch_size)
    steps = 25 if args.quick else 50
    rows, heatmaps = {}, {}
    references = ["random (smooth)"] + (["lesion mask (oracle)"] if masks is not None else [])
    for m in [*methods, *references]:
        if m == "random (smooth)":
            heat = np.stack([xm.random_heatmap(images.shape[1:3], seed=args.seed + i)
                             for i in range(len(images))])
            secs = 0.0
        elif m == "lesion mask (oracle)":
            heat, secs = np.asarray(masks, np.float32), 0.0
        else:
            explainer = make_explainer(m, model, predict_fn=predict, num_samples=args.num_samples,
                                       seed=args.seed, batch_size=args.batch_size, n_segments=100
                                       ) if m == "lime" else make_explainer(m, model, seed=args.seed)
            start = time.perf_counter()
            exps = explainer.explain(images, targets)
            secs = (time.perf_counter() - start) / len(images)
            heat = np.stack([e.heatmap for e in exps])
        heatmaps[m] = heat
        dele, ins, point, energy = [], [], [], []
        for i, (img, h, t) in enumerate(zip(images, heat, targets)):
            f = xm.faithfulness(predict, img, h, int(t), steps, seed=args.seed)
            dele.append(f["deletion"].auc)
            ins.append(f["insertion"].auc)
            if masks is not None and masks[i].any():
                point.append(xm.pointing_game(h, masks[i]))
                energy.append(xm.energy_in_mask(h, masks[i]))
        rows[m] = {"deletion_auc": float(np.mean(dele)), "insertion_auc": float(np.mean(ins)),
                   "seconds": secs}
        if point:
            rows[m].update(pointing_game=float(np.mean(point)), energy_in_mask=float(np.mean(energy)))
    if masks is not None:
        rows["mask_area"] = {"energy_in_mask": float(np.mean([mk.mean() for mk in masks if mk.any()]))}
    agree = {}
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            pairs = [xm.agreement({a: ha, b: hb})[f"{a}|{b}"]
                     for ha, hb in zip(heatmaps[a], heatmaps[b])]
            agree[f"{a}|{b}"] = {k: float(np.mean([p[k] for p in pairs])) for k in pairs[0]}
    sanity_out = {}
    if sanity:
        sub, tsub = images[:4], targets[:4]
        for m in methods:
            # The model is randomised in place: one explainer per method serves every step.
            if m == "lime":
                lime = make_explainer("lime", model, num_samples=min(args.num_samples, 500),
                                      seed=args.seed, batch_size=args.batch_size)

                def fn(net, x, t, e=lime):
                    return np.stack([r.heatmap for r in e.explain(x, t)])
            else:
                def fn(net, x, t, e=make_explainer(m, model, seed=args.seed)):
                    return e.heatmaps(x, t)[0]
            res = xm.sanity_check(model, sub, fn, tsub, seed=args.seed, max_steps=5)
            sanity_out[m] = res.to_dict()
    _print_rows(f"{label}: mean over {len(images)} image(s) (deletion: lower is better; "
                f"insertion, pointing, energy: higher is better)", rows)
    _print_rows(f"{label}: agreement between methods", agree)
    if sanity_out:
        print(f"{label}: sanity check, Spearman to the trained model's heatmaps as layers are "
              f"randomised from the output down (should fall towards 0):")
        for m, res in sanity_out.items():
            print(f"  {m:>16}: " + " -> ".join(f"{r:.2f}" for r in res["spearman"]))
    return {"methods": rows, "agreement": agree, "sanity_check": sanity_out,
            "n_images": int(len(images))}


def _print_rows(title: str, rows: dict) -> None:
    cols = list(dict.fromkeys(k for r in rows.values() for k in r))
    print(f"\n{title}")
    print(" " * 26 + "".join(f"{c:>16}" for c in cols))
    for name, r in rows.items():
        print(f"{name:>26}" + "".join(f"{r[c]:16.3f}" if c in r else " " * 16 for c in cols))


def _recalibrate_batchnorm(model, x: np.ndarray) -> None:
    """Set every BatchNorm layer's moving statistics to those of ``x`` (one training-mode pass
    with momentum 0). A short run leaves the moving averages (momentum 0.99) far from the data,
    and inference-mode predictions then collapse to one class."""
    from tfxai._keras import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    try:
        model(x, training=True)
    finally:
        for layer, momentum in zip(bns, saved):
            layer.momentum = momentum


def _fit_best(model, x, y, x_val, y_val, epochs: int, class_weight=None) -> float:
    """Fit epoch by epoch, recalibrate BatchNorm statistics, keep the weights of the best
    validation accuracy; returns that accuracy."""
    best, best_weights = -1.0, None
    sample = x[np.random.default_rng(0).permutation(len(x))[:512]]
    for _ in range(epochs):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, class_weight=class_weight)
        _recalibrate_batchnorm(model, sample)
        acc = float(((model.predict(x_val, verbose=0)[:, 0] > 0.5) == y_val).mean())
        if acc > best:
            best, best_weights = acc, model.get_weights()
    model.set_weights(best_weights)
    return best


def synthetic(args) -> dict:
    from tfxai._keras import keras
    from tfxai.models import build_model
    from tfxai.synthetic import make_synthetic_xrays

    size = 64
    keras.utils.set_random_seed(args.seed)
    train = make_synthetic_xrays(1200 if args.quick else 2400, size, seed=args.seed)
    val = make_synthetic_xrays(100, size, seed=args.seed + 98)
    test = make_synthetic_xrays(60, size, seed=args.seed + 99)
    model = build_model("custom_cnn", (size, size, 1), width=16, depth=3, dropout=0.1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    start = time.perf_counter()
    val_acc = _fit_best(model, train.images[..., None].astype(np.float32),
                        train.labels.astype(np.float32), val.images[..., None].astype(np.float32),
                        val.labels, epochs=10 if args.quick else 15)
    proba = model.predict(test.images[..., None].astype(np.float32), verbose=0)[:, 0]
    acc = float(((proba > 0.5) == test.labels).mean())
    print(f"\n== synthetic X-rays: custom_cnn {size} px trained in {time.perf_counter() - start:.0f} s "
          f"(best epoch by validation accuracy {val_acc:.1%}), test accuracy {acc:.1%} on "
          f"{len(test.labels)} images")
    pos = np.flatnonzero(test.labels == 1)[: 8 if args.quick else 20]
    x = test.images[pos][..., None].astype(np.float32)
    out = trust_table(model, x, np.ones(len(pos), np.int64), test.masks[pos], list(ALL_METHODS),
                      args, "synthetic pneumonia images, explaining PNEUMONIA")
    out["test_accuracy"] = acc
    return out


def _quick_real_model(args, root: Path):
    """A small CNN fitted on part of chest_xray_224/train (patient-grouped split)."""
    from tfxai._keras import keras
    from tfxai.data import class_weights, grouped_split, load_folder_split, patient_id
    from tfxai.models import build_model

    size = 128
    data = load_folder_split(str(root / "chest_xray_224"), "train", size, 1, "squash",
                             progress=False)
    train_idx, val_idx = grouped_split(data.labels, [patient_id(p) for p in data.paths], 0.15,
                                       args.seed)
    rng = np.random.default_rng(args.seed)
    train_idx = rng.permutation(train_idx)[: 1000 if args.quick else 3000]
    val_idx = val_idx[:400]
    keras.utils.set_random_seed(args.seed)
    model = build_model("custom_cnn", (size, size, 1), width=16, depth=4, dropout=0.2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    start = time.perf_counter()
    acc = _fit_best(model, data.images[train_idx].astype(np.float32),
                    data.labels[train_idx].astype(np.float32),
                    data.images[val_idx].astype(np.float32), data.labels[val_idx],
                    epochs=4 if args.quick else 8,
                    class_weight=class_weights(data.labels[train_idx], 2))
    print(f"\n== real X-rays: custom_cnn {size} px fitted in {time.perf_counter() - start:.0f} s on "
          f"{len(train_idx)} chest_xray_224/train images; best-epoch accuracy {acc:.1%} on "
          f"{len(val_idx)} patient-grouped validation images (selected on them: optimistic; a "
          f"demo model for the explanation measures, not a result)")
    return model, {"image_size": size, "val_accuracy": acc, "trained_on": int(len(train_idx))}


def real(args) -> dict | None:
    from tfxai.data import load_image
    from tfxai.classifier import load_classifier

    root = Path(args.data_root)
    originals = root / "chest_xray_original"
    if not originals.is_dir():
        print(f"\n== real X-rays: {originals} not found, skipped")
        return None
    if args.checkpoint:
        clf = load_classifier(args.checkpoint)
        model, info = clf.model, {"checkpoint": args.checkpoint}
        size, channels, mode = clf.image_size, clf.channels, clf.resize_mode
    else:
        model, info = _quick_real_model(args, root)
        size, channels, mode = info["image_size"], 1, "squash"
    paths = sorted(p for p in originals.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    pneumonia = [p for p in paths if p.parent.name.upper() == "PNEUMONIA"]
    normal = [p for p in paths if p.parent.name.upper() == "NORMAL"]
    k = 4 if args.quick else 12
    chosen = pneumonia[:k] + normal[:k]
    x = np.stack([load_image(str(p), size, channels, mode)[0] for p in chosen]).astype(np.float32)
    labels = np.array([1] * len(pneumonia[:k]) + [0] * len(normal[:k]))
    methods = [m for m in ALL_METHODS if m != "scorecam"] if args.quick else list(ALL_METHODS)
    print(f"explaining {len(chosen)} native-resolution X-rays (resized to {size} px, "
          f"{mode}) for their true class")
    out = trust_table(model, x, labels, None, methods, args,
                      "real X-rays (chest_xray_original), explaining the true class",
                      sanity=not args.quick)
    out.update(info)
    out["images"] = [str(p.relative_to(root)) for p in chosen]
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"speed", "synthetic", "real"}
    if unknown:
        print(f"benchmark_xai: unknown part(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    import tfxai._keras  # noqa: F401  (Keras 2 before anything imports TensorFlow)

    start = time.perf_counter()
    results = {"args": vars(args), "cpu_count": os.cpu_count()}
    if "speed" in parts:
        results["speed"] = speed(args)
    if "synthetic" in parts:
        results["synthetic"] = synthetic(args)
    if "real" in parts:
        results["real"] = real(args)
    results["seconds_total"] = time.perf_counter() - start
    print(f"\nbenchmark finished in {results['seconds_total'] / 60:.1f} min")
    if args.output:
        from tfxai.io.atomic import write_json

        write_json(args.output, results)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
