"""How well the out-of-distribution guard separates chest X-rays from things that are not.

    python scripts/benchmark_ood.py --checkpoint runs/model/best_model.keras \
        --data-dir ../shared/data/chest_xray_224 --original-dir ../shared/data/chest_xray_original

In-distribution: the model's own validation images (re-created from ``--data-dir`` with its seed
and fraction). Out of distribution: CIFAR-10 photos (``--cifar10-archive``), synthetic non-X-rays
(noise, gradients, stripes, shapes, text, textures: ``tfxai.synthetic.make_non_xrays``), the
validation X-rays inverted (255 - x), and original-resolution X-rays rotated by 90 degrees; and, in
distribution, the original-resolution X-rays as they are (native shape, the model's resize). For each
set: ROC-AUC of the guard's score (validation = 0, the set = 1) and the share flagged at the
threshold stored with the model; plus the share of validation images flagged (false alarms).
ROC-AUC is given for the guard's two parts (model features; model-free 16x16 thumbnails) and for
both together (the larger of each distance divided by its threshold). ``--fit-pixels`` fits the
thumbnail part on the model's own training images when the stored guard predates it.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a .keras model trained by tfxai (carrying its guard)")
    p.add_argument("--data-dir", required=True, help="the dataset the model was trained on")
    p.add_argument("--original-dir", help="original-resolution chest X-rays (any folder; rotated 90 degrees)")
    p.add_argument("--cifar10-archive", help="CIFAR-10 train .tar.gz (default: ../shared/data/cifar10/...)")
    p.add_argument("--n", type=int, default=500, help="images per out-of-distribution set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fit-pixels", action="store_true",
                   help="fit the thumbnail part on the model's training images (guards stored before it existed)")
    p.add_argument("--output", help="write the results as JSON here")
    return p.parse_args(argv)


def _cifar(archive, n, clf, seed):
    from tfxai.compress.experiment import prepare_cifar10
    from tfxai.data import list_images, load_image

    paths = list_images(os.path.join(prepare_cifar10(archive), "train"))
    pick = np.random.default_rng(seed).choice(len(paths), min(n, len(paths)), replace=False)
    return np.stack([load_image(paths[i], clf.image_size, clf.channels, clf.resize_mode)[0] for i in pick])


def _films(folder, clf, rotate: bool = False):
    """Every film under ``folder`` prepared as `tfxai predict` prepares it (the model's resize
    mode), optionally rotated by 90 degrees first."""
    from tfxai.data import decode_image, list_images, resize_image

    out = []
    for path in list_images(folder):
        img = decode_image(path, clf.channels)
        img = np.ascontiguousarray(np.rot90(img)) if rotate else img
        out.append(resize_image(img, clf.image_size, clf.resize_mode)[0])
    return np.stack(out)


def main(argv=None) -> int:
    args = _parse(argv)
    from sklearn.metrics import roc_auc_score

    from tfxai.classifier import load_classifier
    from tfxai.evaluation import load_eval_images
    from tfxai.io.atomic import write_json
    from tfxai.synthetic import make_non_xrays

    clf = load_classifier(args.checkpoint)
    if clf.ood is None:
        print(f"{args.checkpoint} carries no out-of-distribution guard (trained before tfxai 0.2)")
        return 2
    val = load_eval_images(clf, args.data_dir, "val", progress=False)
    sets = {
        "CIFAR-10 photos": _cifar(args.cifar10_archive, args.n, clf, args.seed),
        "synthetic non-X-rays": make_non_xrays(args.n, clf.image_size, args.seed)[..., None].repeat(clf.channels, -1),
        "inverted X-rays": 255 - val.images[: args.n],
    }
    if args.original_dir:
        sets["X-rays rotated 90 degrees"] = _films(args.original_dir, clf, rotate=True)
    if args.fit_pixels:
        train = load_eval_images(clf, args.data_dir, "train", progress=False)
        pick = np.sort(np.random.default_rng(args.seed).permutation(len(train))[:3000])  # as training does
        clf.ood.fit_pixels(train.images[pick], val.images)
    guard = clf.ood

    def columns(results):
        feat = np.array([r.score for r in results])
        pix = np.array([r.pixel_score for r in results])
        both = np.maximum(feat / guard.threshold, pix / guard.pixels.threshold) if guard.pixels else feat
        return {"features": feat, "thumbnails": pix, "combined": both}, np.array([r.flag for r in results])

    inside, in_flags = columns(clf.check_ood(val.images))
    rows = [{"set": "validation X-rays (in distribution)", "n": len(val), "roc_auc": None,
             "flagged": float(in_flags.mean())}]
    if args.original_dir:  # real films at native resolution and shape: in distribution, should not be flagged
        _, flags = columns(clf.check_ood(_films(args.original_dir, clf)))
        rows.append({"set": f"native-resolution films as files (in distribution; resize {clf.resize_mode})",
                     "n": len(flags), "roc_auc": None, "flagged": float(flags.mean())})
    for name, images in sets.items():
        scores, flags = columns(clf.check_ood(images))
        y = np.r_[np.zeros(len(val)), np.ones(len(images))]
        aucs = {k: (float(roc_auc_score(y, np.r_[inside[k], v])) if np.isfinite(v).all() else None)
                for k, v in scores.items()}
        rows.append({"set": name, "n": len(images), "roc_auc": aucs, "flagged": float(flags.mean())})
    print(f"{args.checkpoint}: feature threshold {guard.threshold:.2f} ({len(guard.variances)} principal "
          f"components)" + (f", thumbnail threshold {guard.pixels.threshold:.2f}" if guard.pixels else
                            ", no thumbnail part (--fit-pixels adds it)"))
    print("| images | n | ROC-AUC vs validation: features / thumbnails / both | flagged at the stored thresholds |")
    print("|---|---|---|---|")
    for r in rows:
        auc = "-" if r["roc_auc"] is None else " / ".join(
            "-" if v is None else f"{v:.3f}" for v in r["roc_auc"].values())
        print(f"| {r['set']} | {r['n']} | {auc} | {r['flagged']:.1%} |")
    if args.output:
        write_json(args.output, {"checkpoint": args.checkpoint, "threshold": guard.threshold,
                                 "thumbnail_threshold": guard.pixels.threshold if guard.pixels else None,
                                 "fit_pixels": args.fit_pixels, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
