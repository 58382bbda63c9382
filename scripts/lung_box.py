"""Where the lungs sit in a folder of chest X-rays: the box a fixed lung-field focus may keep.

    python scripts/lung_box.py --data-dir ../shared/data/chest_xray_224 --n 300

For ``--n`` random training images per class (``<data-dir>/train/<class>/*``, resized to 224 px as
squares), the bounding box of :func:`tfxai.explain.lungs.lung_mask` (films where no plausible lungs
are found, and the prior is used, are left out); prints the 2nd, 50th and 98th percentiles of its
top, bottom, left and right edges as shares of the side. tfxai.preprocessing.FOCUS_BOX was chosen
from this on the Kermany training copies.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="dataset root with train/<class>/ folders")
    p.add_argument("--n", type=int, default=300, help="images per class")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import cv2

    from tfxai.data import find_split_dir, scan_class_folders
    from tfxai.explain.lungs import lung_mask

    train = find_split_dir(args.data_dir, "train")
    if train is None:
        print(f"error: {args.data_dir} has no train/ folder", file=sys.stderr)
        return 2
    paths, labels, _ = scan_class_folders(train)
    rng = np.random.default_rng(args.seed)
    chosen = [paths[i] for c in np.unique(labels)
              for i in rng.choice(np.flatnonzero(labels == c), min(args.n, int((labels == c).sum())), replace=False)]
    boxes, fallbacks = [], 0
    for path in chosen:
        img = cv2.resize(cv2.imread(path, cv2.IMREAD_GRAYSCALE), (224, 224), interpolation=cv2.INTER_AREA)
        mask, fallback = lung_mask(img, return_fallback=True)
        fallbacks += fallback
        if not fallback:
            ys, xs = np.nonzero(mask)
            boxes.append((ys.min() / 224, (ys.max() + 1) / 224, xs.min() / 224, (xs.max() + 1) / 224))
    b = np.array(boxes)
    print(f"{len(chosen)} images of {os.path.normpath(args.data_dir)}, {fallbacks} without plausible lungs (left out)")
    for j, edge in enumerate(("top", "bottom", "left", "right")):
        lo, mid, hi = np.percentile(b[:, j], [2, 50, 98])
        print(f"{edge:6s} 2nd / 50th / 98th percentile: {lo:.3f} / {mid:.3f} / {hi:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
