"""Small datasets shaped like the real one, for tests that need its file names (patients with several
films, acquisition batches), written from tfxai's synthetic X-rays."""
from __future__ import annotations

import os

import cv2
import numpy as np

from tfxai.synthetic import make_synthetic_xrays


def write_kermany_like(root, size=32, seed=0):
    """train/NORMAL: IM- patients (some with two films) and NORMAL2- patients; train/PNEUMONIA: personN."""
    rng = np.random.default_rng(seed)
    normals = make_synthetic_xrays(60, size, pneumonia_fraction=0.0, seed=seed).images
    sick = make_synthetic_xrays(60, size, pneumonia_fraction=1.0, seed=seed + 1).images
    names = {"NORMAL": [], "PNEUMONIA": []}
    for i in range(24):  # 24 IM- patients, every third with a second film: 32 images
        names["NORMAL"].append(f"IM-{100 + i:04d}-0001.png")
        if i % 3 == 0:
            names["NORMAL"].append(f"IM-{100 + i:04d}-0002.png")
    names["NORMAL"] += [f"NORMAL2-IM-{500 + i:04d}-0001.png" for i in range(28)]
    for i in range(40):  # 40 pneumonia patients, half with two films: 60 images
        kind = "bacteria" if i % 2 else "virus"
        names["PNEUMONIA"].append(f"person{i + 1}_{kind}_{2 * i}.png")
        if i % 2 == 0:
            names["PNEUMONIA"].append(f"person{i + 1}_{kind}_{2 * i + 1}.png")
    for cls, imgs in (("NORMAL", normals), ("PNEUMONIA", sick)):
        folder = os.path.join(root, "train", cls)
        os.makedirs(folder, exist_ok=True)
        order = rng.permutation(len(imgs))
        for name, k in zip(names[cls], order):
            cv2.imwrite(os.path.join(folder, name), imgs[k])
    return root
